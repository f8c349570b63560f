"""A 50-photo upload through the real view on a threaded server, and a light request meanwhile.

    .venv/bin/python bench/bench_upload.py [--megapixels 12] [--parallel 3]

Starts Django's threaded WSGI server on a throwaway SQLite database, logs a user in, and
uploads 50 phone-like JPEGs one per request, `parallel` at a time (as the browser script
does). A second client hits /healthz every 100 ms: its latency while idle is the reference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import django_setup, phone_jpeg, serve_in_thread, table  # noqa: E402


def probe(base: str, stop: threading.Event, out: list[float]) -> None:
    import httpx

    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            start = time.perf_counter()
            client.get(f"{base}/healthz")
            out.append(time.perf_counter() - start)
            stop.wait(0.1)


def unique_photos(w: int, h: int, count: int) -> list[bytes]:
    """`count` photo-like JPEGs with distinct pixels: one generated base, a different patch on each."""
    import io

    from PIL import Image

    base = Image.open(io.BytesIO(phone_jpeg(w, h, seed=1)))
    base.load()
    exif = base.getexif()
    out = []
    for i in range(count):
        im = base.copy()
        im.paste(
            (i * 5 % 256, 255 - i * 5 % 256, 128),
            (i * 60 % (w - 200), i * 40 % (h - 200), i * 60 % (w - 200) + 200, i * 40 % (h - 200) + 200),
        )
        buffer = io.BytesIO()
        im.save(buffer, "JPEG", quality=90, exif=exif)
        out.append(buffer.getvalue())
    return out


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megapixels", type=int, default=12)
    parser.add_argument("--parallel", type=int, default=3)
    parser.add_argument("--count", type=int, default=50)
    args = parser.parse_args()
    django_setup()

    from concurrent.futures import ThreadPoolExecutor

    import httpx
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()
    connection.creation.create_test_db(verbosity=0)
    settings.ALLOWED_HOSTS = ["*"]
    try:
        from fluxsite.accounts.services import user_sign_up
        from training.services import training_create

        user = user_sign_up(email="bench@example.com", password="bench-password-123")
        assert user is not None  # a fresh throwaway database: the address is new
        job = training_create(owner=user, name="Bench", trigger_word="ohwx_bench", subject_kind="subject")
        session = Client()
        session.force_login(user)

        base, server = serve_in_thread()

        w = int((args.megapixels * 1_000_000 * 4 / 3) ** 0.5)
        h = w * 3 // 4
        print(f"Generating {args.count} photos of {w}×{h}…", flush=True)
        photos = unique_photos(w, h, args.count)
        total_bytes = sum(len(p) for p in photos)

        cookies = {"sessionid": session.cookies["sessionid"].value}
        with httpx.Client(base_url=base, cookies=cookies, timeout=120) as client:
            client.get(f"/trainings/{job.pk}/dataset/")
            token = client.cookies["csrftoken"]

        idle: list[float] = []
        stop = threading.Event()
        t = threading.Thread(target=probe, args=(base, stop, idle))
        t.start()
        time.sleep(1.5)
        stop.set()
        t.join()

        busy: list[float] = []
        stop = threading.Event()
        prober = threading.Thread(target=probe, args=(base, stop, busy))

        def send(i: int) -> bool:
            with httpx.Client(base_url=base, cookies={**cookies, "csrftoken": token}, timeout=120) as c:
                r = c.post(
                    f"/trainings/{job.pk}/dataset/upload/",
                    files={"files": (f"IMG_{i:04d}.jpg", photos[i], "image/jpeg")},
                    headers={"X-CSRFToken": token, "Accept": "application/json"},
                )
                return r.status_code == 200 and r.json()["files"][0]["ok"]

        prober.start()
        start = time.perf_counter()
        with ThreadPoolExecutor(args.parallel) as pool:
            oks = list(pool.map(send, range(args.count)))
        elapsed = time.perf_counter() - start
        stop.set()
        prober.join()
        server.shutdown()

        table(
            f"Uploading {args.count} photos of {args.megapixels} MP ({total_bytes / 2**20:.0f} MB), "
            f"{args.parallel} in parallel, real view over HTTP",
            ["accepted", "total time", "per photo", "throughput"],
            [
                [
                    f"{sum(oks)}/{args.count}",
                    f"{elapsed:.1f} s",
                    f"{elapsed / args.count * 1000:.0f} ms",
                    f"{total_bytes / 2**20 / elapsed:.1f} MB/s",
                ]
            ],
        )
        table(
            "Latency of GET /healthz (light request)",
            ["when", "samples", "p50", "p95", "max", "p50 vs idle"],
            [
                [
                    "idle (reference)",
                    str(len(idle)),
                    f"{pct(idle, 0.5):.1f} ms",
                    f"{pct(idle, 0.95):.1f} ms",
                    f"{max(idle) * 1000:.1f} ms",
                    "1.0x",
                ],
                [
                    "during upload",
                    str(len(busy)),
                    f"{pct(busy, 0.5):.1f} ms",
                    f"{pct(busy, 0.95):.1f} ms",
                    f"{max(busy) * 1000:.1f} ms",
                    f"{statistics.median(busy) / statistics.median(idle):.1f}x",
                ],
            ],
        )
    finally:
        connection.creation.destroy_test_db(settings.DATABASES["default"]["NAME"], verbosity=0)


if __name__ == "__main__":
    main()
