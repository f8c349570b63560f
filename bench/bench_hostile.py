"""What refusing the hostile corpus costs: the slowest and hungriest files, against a normal photo.

    .venv/bin/python bench/bench_hostile.py

Every file of tests/corpus/ that must be refused goes through image_prepare_budgeted with the
production limits (settings.DATASET_DECODE_*). Printed: the five most expensive refusals by wall
time and by the decode child's peak memory, each as a ratio to preparing one normal 12 MP photo
measured in the same run, and the budget every refusal stayed within.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, django_setup, phone_jpeg, table, timed  # noqa: E402

CORPUS = ROOT / "tests" / "corpus"


def main() -> None:
    django_setup()
    from training.imaging import DecodeFailed, ImageRejected, image_prepare_budgeted
    from training.services import image_limits

    limits = image_limits()
    photo = phone_jpeg(4032, 3024, seed=3)
    image_prepare_budgeted(photo, limits=limits)  # warm the fork server
    normal_s = timed(lambda: image_prepare_budgeted(photo, limits=limits), 5)
    normal_mb = image_prepare_budgeted(photo, limits=limits).decode_peak_mb or 0

    manifest = [
        e
        for e in json.loads((CORPUS / "manifest.json").read_text())
        if e["expect"] != "keep" and e["class"] != "icc-profile"
    ]
    measured = []
    for entry in manifest:
        data = (CORPUS / entry["path"]).read_bytes()
        started = time.perf_counter()
        peak = None
        outcome = "accepted"
        try:
            peak = image_prepare_budgeted(data, limits=limits).decode_peak_mb
        except ImageRejected as exc:
            peak, outcome = exc.peak_mb, str(exc)[:60]
        except DecodeFailed as exc:
            outcome = f"decoder failed: {exc}"[:60]
        measured.append((time.perf_counter() - started, peak or 0.0, entry["path"], outcome))

    def rows(key):
        return [
            [
                path,
                f"{s * 1000:.0f} ms",
                f"{s / normal_s:.1f}x",
                f"{mb:.0f} MB",
                f"{mb / normal_mb:.1f}x",
                outcome,
            ]
            for s, mb, path, outcome in sorted(measured, key=key, reverse=True)[:5]
        ]

    header = ["file", "wall", "vs photo", "peak", "vs photo", "answer"]
    print(
        f"\nA normal 12 MP photo: {normal_s * 1000:.0f} ms, decode child peak {normal_mb:.0f} MB "
        f"(budget: {limits.cpu_seconds} s CPU, {limits.wall_seconds:g} s wall, {limits.memory_bytes >> 20} MB)"
    )
    table(f"Slowest refusals of {len(measured)} hostile files", header, rows(lambda m: m[0]))
    table("Hungriest refusals", header, rows(lambda m: m[1]))
    total = sum(m[0] for m in measured)
    print(
        f"\nAll {len(measured)} refused in {total:.1f} s ({total / len(measured) * 1000:.0f} ms each on average); "
        f"worst wall {max(m[0] for m in measured):.2f} s, worst peak {max(m[1] for m in measured):.0f} MB"
    )


if __name__ == "__main__":
    main()
