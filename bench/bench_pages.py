"""Issue 15: every dashboard page at 1, 200 and 1,000 rows of each kind, in one run.

    .venv/bin/python bench/bench_pages.py [--requests 30] [--rows 1,200,1000] [--profile URL-LABEL]

In-process, through Django's test client, on a throwaway database (SQLite, or PostgreSQL when
DATABASE_URL is set), DEBUG off. For each page: p50 wall time, server CPU per request
(time.process_time around the request: the whole Django stack, database client included, the
database server's own work excluded on PostgreSQL) and the number of queries; then the ratios
200/1 and 1000/1 against the goals (queries identical, p50 within 1.5x and 2x, CPU of the training
list and detail under 8 ms). /healthz is measured in the same run as the floor.

`--profile training_list` prints a pyinstrument profile of that page at the largest size
(pyinstrument is in the dev extras, so `make install` brings it; it is never a runtime dependency).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import confirmed_user, django_setup, table  # noqa: E402

GOALS = {"p50_200": 1.5, "p50_1000": 2.0, "cpu_ms": 8.0}


def _user():
    return confirmed_user("bench@example.com")


def _grow(user, state: dict, n: int) -> None:
    """Bulk-create rows until there are `n` of each kind (state keeps what exists)."""
    from billing.models import CreditEntry, Wallet
    from generations.models import GeneratedImage, Generation
    from models_app.models import LoraModel
    from training.models import Dataset, DatasetImage, TrainingEvent, TrainingJob

    have = state.get("n", 0)
    if n <= have:
        return
    todo = range(have, n)
    jobs = TrainingJob.objects.bulk_create(
        [
            TrainingJob(
                owner=user,
                name=f"Training {i}",
                trigger_word=f"ohwx_{i}",
                status=TrainingJob.Status.SUCCEEDED if i else TrainingJob.Status.REPLICATE_TRAINING,
                params={"steps": 1000, "lora_rank": 16},
                loss_history=[[s, 1.0 / (s + 1)] for s in range(0, 1000, 10)],
                logs_tail="x" * 20_000,
                progress_step=420,
                progress_total=1000,
            )
            for i in todo
        ]
    )
    Dataset.objects.bulk_create([Dataset(training=job) for job in jobs])
    if not have:
        state["training"] = jobs[0]
        state["dataset"] = jobs[0].dataset
    job, dataset = state["training"], state["dataset"]
    TrainingEvent.objects.bulk_create(
        [TrainingEvent(job=job, stage="replicate_training", message=f"Step {i} of 1000.") for i in todo]
    )
    DatasetImage.objects.bulk_create(
        [
            DatasetImage(
                dataset=dataset,
                file_name=f"datasets/{dataset.pk}/{i}.jpg",
                thumbnail_name=f"datasets/{dataset.pk}/{i}_t.jpg",
                original_name=f"p{i}.jpg",
                width=1024,
                height=1024,
                original_width=2048,
                original_height=2048,
                byte_size=1000,
                pixel_sha256=f"{i:064x}",
                dhash=f"{i:016x}",
                caption=f"a photo of [trigger] {i}",
                position=i,
            )
            for i in todo
            if i < 50  # a dataset holds at most 50 photos
        ]
    )
    models = LoraModel.objects.bulk_create(
        [
            LoraModel(
                owner=user,
                name=f"Model {i}",
                slug=f"model-{i}",
                trigger_word=f"ohwx_{i}",
                weights_file_name="weights/x/lora.safetensors",
                weights_size=10,
                weights_sha256="0" * 64,
                status=LoraModel.Status.READY,
                replicate_version="fluxsite/lora:" + "a" * 64,
                training=jobs[i - have] if i == 0 else None,
            )
            for i in todo
        ]
    )
    if not have:
        state["model"] = models[0]
    model = state["model"]
    generations = Generation.objects.bulk_create(
        [
            Generation(
                owner=user,
                lora_model=model,
                model_name=model.name,
                prompt=f"a cat {i}",
                effective_prompt=f"ohwx a cat {i}",
                status=Generation.Status.SUCCEEDED,
            )
            for i in todo
        ]
    )
    GeneratedImage.objects.bulk_create(
        [
            GeneratedImage(
                generation=g,
                owner=user,
                index=0,
                file_name=f"g/{g.pk}.webp",
                thumbnail_name=f"g/{g.pk}_t.webp",
                width=1024,
                height=1024,
                byte_size=1000,
            )
            for g in generations
        ]
    )
    wallet = Wallet.objects.get(user=user)
    CreditEntry.objects.bulk_create(
        [
            CreditEntry(
                wallet=wallet,
                kind="billing.credits.adjusted",
                amount=1,
                balance_after=wallet.balance,
                reference=f"b:{i}",
            )
            for i in todo
        ]
    )
    state["n"] = n
    from django.db import connection

    if connection.vendor == "postgresql":
        # As autovacuum would soon after a bulk insert: without statistics the planner takes every
        # table for one row, and the model gallery joined each image to all of the model's
        # generations (25 x 1,000 rows scanned at 1,000 rows: 6 ms on the server, not our code's).
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def _pages(state: dict) -> list[tuple[str, str, dict]]:
    from django.urls import reverse

    t, m = state["training"], state["model"]
    htmx = {"HTTP_HX_REQUEST": "true"}
    last = t.events.order_by("-pk").values_list("pk", flat=True).first() or 0
    return [
        ("healthz", "/healthz", {}),
        ("training_list", reverse("training:list"), {}),
        ("training_detail", reverse("training:detail", args=[t.pk]), {}),
        ("training_live", reverse("training:detail", args=[t.pk]) + f"?since={last}", htmx),
        ("dataset", reverse("training:dataset", args=[t.pk]), {}),
        ("models", reverse("models_app:list"), {}),
        ("model_detail", reverse("models_app:detail", args=[m.pk]), {}),
        ("generate", reverse("generations:generate") + f"?model={m.pk}", {}),
        ("preview", reverse("generations:generate_preview") + f"?model={m.pk}&prompt=a+cat", htmx),
        ("gallery", reverse("generations:gallery"), {}),
        ("model_gallery", reverse("generations:model_gallery", args=[m.pk]), {}),
        ("billing", reverse("billing:overview"), {}),
        ("account", reverse("accounts:account"), {}),
    ]


def _measure(client, url: str, headers: dict, requests: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(3):
        client.get(url, **headers)
    with CaptureQueriesContext(connection) as queries:
        status = client.get(url, **headers).status_code
    # Counted now: the next request clears the connection's query log, which `queries` slices.
    query_count = len(queries)
    walls, cpus = [], []
    for _ in range(requests):
        wall, cpu = time.perf_counter(), time.process_time()
        client.get(url, **headers)
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return {
        "status": status,
        "queries": query_count,
        "p50": statistics.median(walls) * 1000,
        "cpu": statistics.median(cpus) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--rows", default="1,200,1000")
    parser.add_argument("--profile", default="")
    args = parser.parse_args()
    sizes = [int(x) for x in args.rows.split(",")]

    django_setup()
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import override_settings, setup_test_environment

    setup_test_environment()
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    # As Django's TestCase does: the connection stays open between requests (what CONN_MAX_AGE
    # gives a production worker); otherwise every request reconnects and the counts are lost.
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    with override_settings(
        DEBUG=False,
        RATELIMIT_ENABLE=False,
        AXES_ENABLED=False,
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    ):
        # The generate page reads the model's input schema from Replicate: not what is measured.
        from generations import views as generation_views

        generation_views._limits = lambda model: {}  # no schema lookup: the bench measures our pages
        user = _user()
        client = Client()
        client.force_login(user)
        state: dict = {}
        results: dict[int, dict[str, dict]] = {}
        for n in sizes:
            _grow(user, state, n)
            results[n] = {label: _measure(client, url, h, args.requests) for label, url, h in _pages(state)}
        if args.profile:
            _profile(client, state, args.profile)

    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    base, rest = sizes[0], sizes[1:]
    header = (
        ["page"] + [f"{k}@{n}" for n in sizes for k in ("ms", "cpu", "q")] + [f"p50 {n}/{base}" for n in rest]
    )
    rows, failures = [], []
    for label in results[base]:
        row = [label]
        for n in sizes:
            r = results[n][label]
            row += [f"{r['p50']:.1f}", f"{r['cpu']:.1f}", str(r["queries"])]
        for n in rest:
            ratio = results[n][label]["p50"] / results[base][label]["p50"]
            row.append(f"{ratio:.2f}")
            goal = GOALS["p50_200"] if n <= 200 else GOALS["p50_1000"]
            if ratio > goal:
                failures.append(f"{label}: p50 {n}/{base} = {ratio:.2f} > {goal}")
            if results[n][label]["queries"] != results[base][label]["queries"]:
                failures.append(
                    f"{label}: queries {results[base][label]['queries']} -> {results[n][label]['queries']}"
                )
            if results[n][label]["status"] != 200:
                failures.append(f"{label}: status {results[n][label]['status']} at {n}")
        rows.append(row)
    table(
        f"Dashboard pages on {engine} (ms p50 wall, ms CPU, queries), {args.requests} requests each",
        header,
        rows,
    )
    for label in ("training_list", "training_detail"):
        for n in sizes:
            cpu = results[n][label]["cpu"]
            if cpu > GOALS["cpu_ms"]:
                failures.append(f"{label}: {cpu:.1f} ms CPU at {n} > {GOALS['cpu_ms']}")
    healthz = results[sizes[-1]]["healthz"]["cpu"]
    for label in ("training_list", "training_detail"):
        cpu = results[sizes[-1]][label]["cpu"]
        print(
            f"{label}: {1000 / cpu:.0f} requests/s per core in-process at {sizes[-1]} rows vs /healthz {1000 / healthz:.0f}"
        )
    print("\n".join(["", "Against the goals:"] + (failures or ["all met"])))


def _profile(client, state: dict, label: str) -> None:
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("pyinstrument is not importable: no profile")
        return
    url, headers = next((u, h) for name, u, h in _pages(state) if name == label)
    profiler = Profiler(interval=0.0005)
    profiler.start()
    for _ in range(50):
        client.get(url, **headers)
    profiler.stop()
    print(profiler.output_text(unicode=True, color=False, show_all=bool(os.environ.get("PROFILE_ALL"))))


if __name__ == "__main__":
    main()
