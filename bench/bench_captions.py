"""Captions in bulk (issue 16, item 7): import, find and replace, download, through the real views.

    .venv/bin/python bench/bench_captions.py [--repeat 7]

In-process, through Django's test client, on a throwaway database (SQLite, or PostgreSQL when
DATABASE_URL is set). A draft dataset of 50 photos (rows only: pixels play no part in captions).
For each action: the median wall time at 2 and at 50 photos; the import is of a CSV at the row
limit (DATASET_CAPTIONS_IMPORT_MAX_ROWS rows, captions of 700 characters), and its reference,
measured in the same run, is the standard library's csv.reader parsing the same bytes (the floor
any import has to pay). Goal: the import within 10x its reference. The query counts (the same at
2 and 50 photos) are asserted by tests/training/test_caption_bulk.py
(test_replacing_and_importing_cost_the_same_queries_for_2_and_50_photos): as in bench_pages.py,
CaptureQueriesContext sees no queries in this in-process setup.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import django_setup, table  # noqa: E402


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    django_setup()
    import csv
    import io

    from django.conf import settings
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.db import connection
    from django.test import Client
    from django.test.utils import override_settings, setup_test_environment
    from django.urls import reverse

    setup_test_environment()
    connection.creation.create_test_db(verbosity=0)
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    # As Django's TestCase does: one connection for the run, so the counts are of our queries.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    with override_settings(DEBUG=False, RATELIMIT_ENABLE=False, AXES_ENABLED=False):
        from fluxsite.accounts.services import user_email_confirm, user_sign_up
        from training.models import DatasetImage
        from training.services import training_create

        signed_up = user_sign_up(email="bench@example.com", password="bench-pass-123")
        assert signed_up is not None
        user = user_email_confirm(user=signed_up).user
        assert user is not None
        job = training_create(owner=user, name="Bench", trigger_word="ohwx_bench", subject_kind="subject")
        client = Client()
        client.force_login(user)
        rows_max = settings.DATASET_CAPTIONS_IMPORT_MAX_ROWS
        base = reverse("training:dataset", args=[job.pk])
        results: dict[int, dict[str, float]] = {}
        for count in (2, 50):
            DatasetImage.objects.filter(dataset=job.dataset).delete()
            DatasetImage.objects.bulk_create(
                [
                    DatasetImage(
                        dataset=job.dataset,
                        file_name=f"b/{i}.jpg",
                        thumbnail_name=f"b/{i}_t.jpg",
                        original_name=f"p{i}.jpg",
                        width=1024,
                        height=1024,
                        original_width=1024,
                        original_height=1024,
                        byte_size=1,
                        pixel_sha256=f"{i:064x}",
                        dhash=f"{i:016x}",
                        caption="a cat " * 20,
                        caption_source="person",
                        position=i,
                    )
                    for i in range(count)
                ]
            )
            body = (
                "file,caption\n" + "".join(f"p{i % count},{'a bird ' * 100}\n" for i in range(rows_max))
            ).encode()

            def run_import(body: bytes = body) -> None:
                upload = SimpleUploadedFile("c.csv", body)
                response = client.post(
                    f"{base}captions/import/", {"file": upload}, headers={"HX-Request": "true"}
                )
                assert response.status_code == 200, response.content[:300]

            def run_preview() -> None:
                response = client.post(
                    f"{base}captions/replace/",
                    {"find": "bird", "replace": "owl"},
                    headers={"HX-Request": "true"},
                )
                assert response.status_code == 200

            def run_apply() -> None:
                # bird -> owl and back, so every run changes every caption.
                for find, replace in (("bird", "owl"), ("owl", "bird")):
                    response = client.post(
                        f"{base}captions/replace/",
                        {"find": find, "replace": replace, "apply": "1"},
                        headers={"HX-Request": "true"},
                    )
                    assert response.status_code == 200

            def run_export(fmt: str) -> None:
                assert client.get(f"{base}captions/download/?format={fmt}").status_code == 200

            actions: dict[str, Callable[[], None]] = {
                f"import CSV ({rows_max} rows)": run_import,
                "replace preview": run_preview,
                "replace apply (x2)": run_apply,
                "download ZIP": lambda: run_export("zip"),
                "download CSV": lambda: run_export("csv"),
            }
            results[count] = {}
            for label, fn in actions.items():
                fn()  # warm
                results[count][label] = _median_ms(fn, args.repeat)
            if count == 50:
                reference = _median_ms(
                    lambda body=body: list(csv.reader(io.StringIO(body.decode()))), args.repeat
                )
                body_kb = len(body) // 1024

    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    rows = [[label, f"{results[2][label]:.1f}", f"{results[50][label]:.1f}"] for label in results[2]]
    table(f"Captions in bulk on {engine} (median ms)", ["action", "2 photos", "50 photos"], rows)
    failures = []
    import_label = next(label for label in results[50] if label.startswith("import"))
    ratio = results[50][import_label] / reference
    print(
        f"\nimport of {body_kb} KB at 50 photos: {ratio:.1f}x csv.reader on the same bytes "
        f"({reference:.1f} ms); goal 10x"
    )
    if ratio > 10:
        failures.append(f"import is {ratio:.1f}x its reference")
    print("\n" + ("MISSED: " + "; ".join(failures) if failures else "all goals met"))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
