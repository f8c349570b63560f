"""Issue 17, Performance: a training's sample grid run concurrently vs one at a time, and the model
page's queries with a 4 × 4 grid.

    .venv/bin/python bench/bench_sample_grid.py [--prompts 4] [--strengths 4] [--seconds 2] [--concurrency 4]

In-process, on a throwaway SQLite database, against the Replicate stand-in served by the app itself
on a free 127.0.0.1 port from a thread: the real Replicate SDK over HTTP, each prediction taking
`--seconds` as a real one takes its GPU time (Prefer: wait, then polled). The same grid (prompts ×
strengths, one seed) is made twice through training.services.sample_grid_start, once with
SAMPLE_GRID_CONCURRENCY=1 (sequential) and once with `--concurrency`; reported: both wall times and
their ratio (goal: at least half the ideal speed-up, min(concurrency, images) / 2). Then the model
page's queries with a 1 × 1 and a 4 × 4 grid kept on the model (goal: the same number).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import confirmed_user, django_setup, serve_in_thread, table, verdict  # noqa: E402


def _user():
    return confirmed_user("bench-grid@example.com")


def _trained_model(user, label: str, prompts: list[str]):
    """A succeeded training with its model on a trained version registered at the stand-in."""
    from models_app.models import LoraModel
    from sandbox.replicate import schemas
    from sandbox.replicate.models import SandboxModel, SandboxVersion, VersionKind
    from training.models import Dataset, TrainingJob

    remote, _ = SandboxModel.objects.get_or_create(owner="fluxsite", name=f"bench-{label}")
    version_id = hashlib.sha256(f"bench-grid:{label}".encode()).hexdigest()
    SandboxVersion.objects.create(
        model=remote,
        version_id=version_id,
        kind=VersionKind.LORA,
        openapi_schema=schemas.openapi_schema(schemas.TRAINED_VERSION, training=False),
    )
    job = TrainingJob.objects.create(
        owner=user,
        name=f"Bench {label}",
        trigger_word="BENCHX",
        status=TrainingJob.Status.SUCCEEDED,
        params={"steps": 1000, "sample_prompts": prompts},
    )
    Dataset.objects.create(training=job)
    model = LoraModel.objects.create(
        owner=user,
        name=f"Bench {label}",
        slug=f"bench-{label}",
        trigger_word="BENCHX",
        weights_file_name="weights/bench/lora.safetensors",
        weights_size=1,
        weights_sha256="0" * 64,
        status=LoraModel.Status.READY,
        replicate_version=f"fluxsite/bench-{label}:{version_id}",
        training=job,
    )
    return job, model


def _grid_json(prompts: int, strengths: int) -> dict:
    cell = {"status": "succeeded", "file_name": "samples/b/i.webp", "thumbnail_name": "samples/b/t.webp"}
    return {
        "seed": 42,
        "strengths": [round(i * 0.4, 1) for i in range(strengths)],
        "prompts": [f"BENCHX prompt {row}" for row in range(prompts)],
        "cells": [[dict(cell) for _ in range(strengths)] for _ in range(prompts)],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--strengths", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=2, help="each stand-in prediction's run time")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    os.environ.setdefault("DEBUG", "true")  # the stand-in serves only with DEBUG and SANDBOX_MODE on
    os.environ.setdefault("SANDBOX_MODE", "true")
    django_setup()
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections, connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, override_settings, setup_test_environment

    setup_test_environment()
    connection.creation.create_test_db(verbosity=0)
    base, server = serve_in_thread()
    strengths = [0.0, 0.6, 0.8, 1.0, 1.2, 1.4][: args.strengths]
    prompts = [f"BENCHX, sample prompt {i}" for i in range(args.prompts)]
    images = len(prompts) * len(strengths)
    try:
        with override_settings(
            SITE_URL=base,
            REPLICATE_BASE_URL=f"{base}/sandbox/replicate",
            HF_ENDPOINT=f"{base}/sandbox/hf",
            SANDBOX_PREDICTION_SECONDS=args.seconds,
            SAMPLE_GRID_STRENGTHS=strengths,
            SAMPLE_GRID_PROMPTS=len(prompts),
            RATELIMIT_ENABLE=False,
            AXES_ENABLED=False,
            PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        ):
            from training.models import SampleImage
            from training.services import sample_grid_start

            user = _user()
            walls: dict[int, float] = {}
            for workers in (1, args.concurrency):
                job, _ = _trained_model(user, f"c{workers}", prompts)
                with override_settings(SAMPLE_GRID_CONCURRENCY=workers):
                    start = time.perf_counter()
                    sample_grid_start(job_id=job.pk)
                    walls[workers] = time.perf_counter() - start
                done = SampleImage.objects.filter(job=job, status="succeeded").count()
                if done != images:
                    raise SystemExit(f"only {done} of {images} images were made with concurrency {workers}")

            # The model page, in-process, its connection kept between requests as in a worker.
            request_started.disconnect(close_old_connections)
            request_finished.disconnect(close_old_connections)
            from models_app.models import LoraModel

            _, model = _trained_model(user, "page", prompts)
            client = Client()
            client.force_login(user)
            queries: dict[str, int] = {}
            for label, size in (("1 × 1", (1, 1)), ("4 × 4", (4, 4))):
                LoraModel.objects.filter(pk=model.pk).update(sample_grid=_grid_json(*size))
                client.get(f"/models/{model.pk}/")  # warm
                with CaptureQueriesContext(connection) as captured:
                    response = client.get(f"/models/{model.pk}/")
                assert response.status_code == 200
                queries[label] = len(captured)
    finally:
        server.shutdown()

    ratio = walls[1] / walls[args.concurrency]
    goal = min(args.concurrency, images) / 2
    table(
        f"Sample grid: {len(prompts)} prompts × {len(strengths)} strengths = {images} images, "
        f"{args.seconds} s a prediction",
        ["run", "wall s", "images/s"],
        [
            ["sequential (SAMPLE_GRID_CONCURRENCY=1)", f"{walls[1]:.2f}", f"{images / walls[1]:.2f}"],
            [
                f"concurrent (SAMPLE_GRID_CONCURRENCY={args.concurrency})",
                f"{walls[args.concurrency]:.2f}",
                f"{images / walls[args.concurrency]:.2f}",
            ],
        ],
    )
    print(
        f"\nwall-time ratio sequential/concurrent: {ratio:.2f}x (goal ≥ {goal:.1f}x) {verdict(ratio >= goal)}"
    )
    table("Model page queries", ["grid", "queries"], [[k, str(v)] for k, v in queries.items()])
    same = len(set(queries.values())) == 1
    print(f"\nconstant with the grid's size: {verdict(same)}")
    if ratio < goal or not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
