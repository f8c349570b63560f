"""Per-image preparation speed and memory, as ratios against references measured in the same run.

    .venv/bin/python bench/bench_images.py

Ours: training.imaging.image_prepare (draft, full decode, checks, RGB, resize, orientation,
JPEG q95, thumbnail, hashes, quality warnings). Reference: draft + exif_transpose + thumbnail +
save. Naive: open -> convert -> thumbnail -> save. Memory: peak RSS added by one 24 MP image,
measured in a fresh subprocess.
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

    im = Image.open(io.BytesIO(data))
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


def ours(data: bytes):
    from training.imaging import image_prepare

    return image_prepare(io.BytesIO(data), long_side=LONG_SIDE, max_pixels=40_000_000)


def memory_child(path: str, which: str) -> None:
    """Run in a subprocess: peak RSS before and after preparing one image."""
    from PIL import Image  # noqa: F401  (import cost is not the image's)

    import training.imaging  # noqa: F401

    data = Path(path).read_bytes()
    peak_rss_reset()
    before = rss_mb()
    {"ours": ours, "naive": naive, "reference": reference}[which](data)
    print(json.dumps({"added_mb": peak_rss_mb() - before, "file_mb": len(data) / 2**20}))


def main() -> None:
    django_setup()
    results = []
    photos = {}
    for label, (w, h) in SIZES.items():
        photos[label] = data = phone_jpeg(w, h, seed=len(label))
        ours(data)  # warm up
        t_ours, t_ref, t_naive = timed(lambda d=data: ours(d)), timed(lambda d=data: reference(d)), timed(lambda d=data: naive(d))
        results.append((label, len(data), t_ours, t_ref, t_naive))

    rows = []
    for label, size, t_ours, t_ref, t_naive in results:
        rows.append([
            label, f"{size / 2**20:.1f} MB", f"{t_ours * 1000:.0f} ms", f"{t_ref * 1000:.0f} ms", f"{t_naive * 1000:.0f} ms",
            f"{t_ours / t_ref:.2f}x ({verdict(t_ours / t_ref <= 1.2)}, target <= 1.2x)",
            f"{t_naive / t_ours:.2f}x faster ({verdict(t_naive / t_ours >= 2)}, target >= 2x)",
        ])
    table("Preparing one phone photo (median of 3)",
          ["image", "file", "ours", "reference", "naive", "ours / reference", "naive / ours"], rows)

    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".jpg") as handle:
        handle.write(photos["24 MP"])
        handle.flush()
        mem_rows = []
        for which in ("ours", "reference", "naive"):
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", handle.name, which],
                capture_output=True, text=True, check=True, cwd=ROOT,
            )
            added = json.loads(out.stdout.strip().splitlines()[-1])["added_mb"]
            target = f" ({verdict(added < 80)}, target < 80 MB)" if which == "ours" else ""
            mem_rows.append([which, f"{added:.0f} MB{target}"])
    table("Peak memory added by one 24 MP JPEG (VmHWM in a fresh process)", ["pipeline", "added peak RSS"], mem_rows)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--memory-child":
        django_setup()
        memory_child(sys.argv[2], sys.argv[3])
    else:
        main()
