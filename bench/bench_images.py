"""Per-image preparation speed and memory, as ratios against references measured in the same run.

    .venv/bin/python bench/bench_images.py

Ours: training.imaging.image_prepare_budgeted, what an upload runs: image_prepare (draft, full
decode, checks, sRGB, resize, orientation, JPEG q95, thumbnail, hashes, quality warnings) in a
child process limited by the operating system (memory, CPU time, wall time). In-process: the same
image_prepare without the child, to show what the budget costs. Reference: draft + exif_transpose
+ thumbnail + save. Naive: open -> convert -> thumbnail -> save. Memory: peak RSS added by one
24 MP image, measured in a fresh subprocess.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, django_setup, peak_rss_mb, peak_rss_reset, phone_jpeg, rss_mb, table, timed, verdict  # noqa: E402

LONG_SIDE = 1024
SIZES = {"12 MP": (4032, 3024), "24 MP": (6000, 4000)}


def reference(data: bytes) -> bytes:
    from PIL import Image, ImageOps

    im: Image.Image = Image.open(io.BytesIO(data))
    im.draft("RGB", (LONG_SIDE, LONG_SIDE))
    im = ImageOps.exif_transpose(im)
    im.thumbnail((LONG_SIDE, LONG_SIDE))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=95)
    return out.getvalue()


def naive(data: bytes) -> bytes:
    from PIL import Image

    im = Image.open(io.BytesIO(data)).convert("RGB")
    im.thumbnail((LONG_SIDE, LONG_SIDE))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=95)
    return out.getvalue()


LIMITS = None


def _limits():
    global LIMITS
    if LIMITS is None:
        from training.imaging import ImageLimits

        LIMITS = ImageLimits(long_side=LONG_SIDE)
    return LIMITS


def ours(data: bytes):
    from training.imaging import image_prepare_budgeted

    return image_prepare_budgeted(data, limits=_limits())


def in_process(data: bytes):
    from training.imaging import image_prepare

    return image_prepare(data, limits=_limits())


def memory_child(path: str, which: str) -> None:
    """Run in a subprocess: peak RSS before and after preparing one image."""

    from PIL import Image  # noqa: F401  (import cost is not the image's)

    import training.imaging  # noqa: F401

    data = Path(path).read_bytes()
    peak_rss_reset()
    before = rss_mb()
    {"ours": in_process, "naive": naive, "reference": reference}[which](data)
    added = peak_rss_mb() - before
    if which == "ours":
        # The budgeted path decodes in a child: its peak is the child's (ru_maxrss is in KB).
        child_mb = ours(data).decode_peak_mb  # the child reports its own peak (it is the fork server's child)
        print(json.dumps({"added_mb": added, "child_peak_mb": child_mb, "file_mb": len(data) / 2**20}))
        return
    print(json.dumps({"added_mb": added, "file_mb": len(data) / 2**20}))


def main() -> None:
    django_setup()
    results = []
    photos = {}
    for label, (w, h) in SIZES.items():
        photos[label] = data = phone_jpeg(w, h, seed=len(label))
        ours(data)  # warm up (starts the fork server once, as the first upload of a web worker does)
        t_ours, t_in = timed(lambda d=data: ours(d), 7), timed(lambda d=data: in_process(d), 7)
        t_ref, t_naive = timed(lambda d=data: reference(d), 7), timed(lambda d=data: naive(d), 7)
        results.append((label, len(data), t_ours, t_in, t_ref, t_naive))

    rows = []
    for label, size, t_ours, t_in, t_ref, t_naive in results:
        rows.append(
            [
                label,
                f"{size / 2**20:.1f} MB",
                f"{t_ours * 1000:.0f} ms",
                f"{t_in * 1000:.0f} ms",
                f"{t_ref * 1000:.0f} ms",
                f"{t_naive * 1000:.0f} ms",
                f"{t_ours / t_in:.2f}x",
                f"{t_ours / t_ref:.2f}x ({verdict(t_ours / t_ref <= 1.2)}, target <= 1.2x)",
                f"{t_naive / t_ours:.2f}x faster ({verdict(t_naive / t_ours >= 2)}, target >= 2x)",
            ]
        )
    table(
        "Preparing one phone photo (median of 7)",
        [
            "image",
            "file",
            "ours (budget)",
            "in-process",
            "reference",
            "naive",
            "budget / in-process",
            "ours / reference",
            "naive / ours",
        ],
        rows,
    )

    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".jpg") as handle:
        handle.write(photos["24 MP"])
        handle.flush()
        mem_rows = []
        for which in ("ours", "reference", "naive"):
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", handle.name, which],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            added = result["added_mb"]
            target = f" ({verdict(added < 80)}, target < 80 MB)" if which == "ours" else ""
            child = (
                f"; decode child's whole peak RSS {result['child_peak_mb']:.0f} MB"
                if "child_peak_mb" in result
                else ""
            )
            mem_rows.append([which, f"{added:.0f} MB{target}{child}"])
    table(
        "Peak memory added by one 24 MP JPEG (VmHWM in a fresh process)",
        ["pipeline", "added peak RSS"],
        mem_rows,
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--memory-child":
        django_setup()
        memory_child(sys.argv[2], sys.argv[3])
    else:
        main()
