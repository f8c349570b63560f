"""Captioning 50 photos in the sandbox: the configured concurrency against one at a time, and the
dataset page's latency meanwhile.

    .venv/bin/python bench/bench_captioning.py [--count 50] [--concurrency 4] [--seconds 1]

Starts Django's threaded WSGI server (the app and the Replicate stand-in in one process) on a
throwaway database, makes a dataset of `count` photos, and captions them twice through the real
service, SDK, HTTP, webhooks and pump: once with CAPTION_CONCURRENCY=1 (the reference), once with
`concurrency`. Each sandbox prediction takes `seconds` (SANDBOX_PREDICTION_SECONDS). A logged-in
client fetches the dataset page every 100 ms: its p50 while idle is the reference for its p50
during the batch. Tasks run synchronously inside the server's threads (django-q2's sync mode), as
the webhook and the pump would in a worker.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import django_setup, serve_in_thread, table  # noqa: E402


def probe(base: str, path: str, cookies: dict, stop: threading.Event, out: list[float]) -> None:
    import httpx

    with httpx.Client(base_url=base, cookies=cookies, timeout=30) as client:
        while not stop.is_set():
            start = time.perf_counter()
            response = client.get(path)
            assert response.status_code == 200, response.status_code
            out.append(time.perf_counter() - start)
            stop.wait(0.1)


def p50_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=1)
    args = parser.parse_args()
    django_setup()

    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django_q.conf import Conf
    from PIL import Image

    setup_test_environment()
    connection.creation.create_test_db(verbosity=0)
    settings.ALLOWED_HOSTS = ["*"]
    Conf.SYNC = True
    try:
        from billing.services import credits_grant
        from fluxsite.accounts.services import user_sign_up
        from fluxsite.integrations import storage
        from training.models import CaptionBatch, DatasetImage
        from training.services import caption_batch_start, training_create

        base, server = serve_in_thread()
        settings.SANDBOX_MODE = True
        settings.SITE_URL = base
        settings.REPLICATE_BASE_URL = f"{base}/sandbox/replicate"
        settings.SANDBOX_PREDICTION_SECONDS = args.seconds

        user = user_sign_up(email="bench@example.com", password="bench-password-123")
        assert user is not None
        credits_grant(user=user, amount=100_000, reference="bench:credits")
        session = Client()
        session.force_login(user)
        cookies = {"sessionid": session.cookies["sessionid"].value}

        def dataset_of(name: str):
            job = training_create(owner=user, name=name, trigger_word="ohwx_bench", subject_kind="subject")
            for i in range(args.count):
                out = io.BytesIO()
                Image.new("RGB", (512, 640), (i * 5 % 256, 90, 255 - i * 5 % 256)).save(out, "JPEG")
                data = out.getvalue()
                stored = storage.file_save(
                    alias=storage.PRIVATE, name=f"bench/{job.pk}/{i}.jpg", content=io.BytesIO(data)
                )
                DatasetImage.objects.create(
                    dataset=job.dataset,
                    file_name=stored,
                    thumbnail_name=stored,
                    original_name=f"{i}.jpg",
                    width=512,
                    height=640,
                    original_width=512,
                    original_height=640,
                    byte_size=len(data),
                    pixel_sha256=f"{job.pk:032x}{i:032x}",
                    dhash="0" * 16,
                    position=i,
                )
            return job

        def run(concurrency: int, job) -> tuple[float, int]:
            settings.CAPTION_CONCURRENCY = concurrency
            settings.CAPTION_MAX_PHOTOS_PER_BATCH = max(args.count, settings.CAPTION_MAX_PHOTOS_PER_BATCH)
            start = time.perf_counter()
            batch = caption_batch_start(
                user=user,
                dataset=job.dataset,
                photos="all",
                mode="replace",
                style="natural",
                trigger_placement="start",
            )
            while CaptionBatch.objects.filter(pk=batch.pk, status="running").exists():
                time.sleep(0.1)
            elapsed = time.perf_counter() - start
            done = batch.tasks.filter(status="done").count()
            return elapsed, done

        serial_job, parallel_job = dataset_of("Serial"), dataset_of("Parallel")
        page = f"/trainings/{parallel_job.pk}/dataset/"

        idle: list[float] = []
        stop = threading.Event()
        prober = threading.Thread(target=probe, args=(base, page, cookies, stop, idle))
        prober.start()
        time.sleep(3)
        stop.set()
        prober.join()

        print(f"Captioning {args.count} photos one at a time…", flush=True)
        serial, serial_done = run(1, serial_job)
        print(f"Captioning {args.count} photos, {args.concurrency} at a time…", flush=True)
        busy: list[float] = []
        stop = threading.Event()
        prober = threading.Thread(target=probe, args=(base, page, cookies, stop, busy))
        prober.start()
        parallel, parallel_done = run(args.concurrency, parallel_job)
        stop.set()
        prober.join()
        server.shutdown()

        table(
            f"Captioning {args.count} photos in the sandbox ({args.seconds} s per prediction), real "
            "service, SDK, HTTP and webhooks",
            ["concurrency", "captioned", "wall time", "per photo", "vs one at a time"],
            [
                [
                    "1 (reference)",
                    f"{serial_done}/{args.count}",
                    f"{serial:.1f} s",
                    f"{serial / args.count * 1000:.0f} ms",
                    "1.0x",
                ],
                [
                    str(args.concurrency),
                    f"{parallel_done}/{args.count}",
                    f"{parallel:.1f} s",
                    f"{parallel / args.count * 1000:.0f} ms",
                    f"{serial / parallel:.1f}x faster",
                ],
            ],
        )
        table(
            "Latency of the dataset page (GET, logged in, its photos and the batch progress)",
            ["when", "samples", "p50", "max", "p50 vs idle"],
            [
                [
                    "idle (reference)",
                    str(len(idle)),
                    f"{p50_ms(idle):.1f} ms",
                    f"{max(idle) * 1000:.1f} ms",
                    "1.0x",
                ],
                [
                    "during the batch",
                    str(len(busy)),
                    f"{p50_ms(busy):.1f} ms",
                    f"{max(busy) * 1000:.1f} ms",
                    f"{p50_ms(busy) / p50_ms(idle):.1f}x",
                ],
            ],
        )
    finally:
        connection.creation.destroy_test_db(settings.DATABASES["default"]["NAME"], verbosity=0)


if __name__ == "__main__":
    main()
