"""Zipping prepared images: speed against a plain byte copy, and memory against dataset size.

    .venv/bin/python bench/bench_zip.py

Speed: training.dataset_zip.zip_stream_to_storage over 50 prepared 1024-pixel JPEGs, against
shutil copying the same bytes into one file. Memory: peak RSS added while zipping a 50-image set
and a ~200 MB set, each in a fresh subprocess (it must not grow with the dataset).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, django_setup, peak_rss_mb, peak_rss_reset, phone_jpeg, rss_mb, table, timed, verdict  # noqa: E402

# What the upload recorded for each stored image (its CRC-32 and size), as DatasetImage keeps them.
RECORDED: dict[str, tuple[int, int]] = {}


def prepared_set(count: int, unique: int = 50) -> list[str]:
    """Store `count` prepared images in the private storage (bytes repeat after `unique`)."""
    import io
    import zlib

    from fluxsite.integrations import storage
    from training.imaging import ImageLimits, image_prepare

    datas = []
    for i in range(min(count, unique)):
        raw = phone_jpeg(1600, 1200, seed=i, quality=92)
        datas.append(image_prepare(raw, limits=ImageLimits()).jpeg)
    names = []
    for i in range(count):
        data = datas[i % len(datas)]
        names.append(storage.file_save(alias="private", name=f"bench/{i:04d}.jpg", content=io.BytesIO(data)))
        RECORDED[names[-1]] = (zlib.crc32(data), len(data))
    return names


def zip_names(names: list[str], target: str):
    from training.dataset_zip import ZipMember, zip_stream_to_storage

    members = [
        ZipMember(image_name=n, caption="a photo of ohwx_bench", crc32=RECORDED[n][0], size=RECORDED[n][1])
        for n in names
    ]
    return zip_stream_to_storage(alias="private", name=target, members=members)


def copy_names(names: list[str], target: Path) -> None:
    from fluxsite.integrations import storage

    with open(target, "wb") as out:
        for name in names:
            with storage.get_storage("private").open(name, "rb") as source:
                shutil.copyfileobj(source, out, 1024 * 1024)


def memory_child(count: int) -> None:
    names = prepared_set(count)
    peak_rss_reset()
    before = rss_mb()
    result = zip_names(names, f"bench/out-{count}.zip")
    print(json.dumps({"added_mb": peak_rss_mb() - before, "zip_mb": result.size / 2**20}))


def main() -> None:
    media = django_setup()
    names = prepared_set(50)
    from fluxsite.integrations import storage

    total = sum(storage.get_storage("private").size(n) for n in names)
    zip_names(names, "bench/warm.zip")
    t_zip = timed(lambda: zip_names(names, "bench/run.zip"), repeat=5)
    t_copy = timed(lambda: copy_names(names, Path(media) / "copy.bin"), repeat=5)
    ratio = t_zip / t_copy
    table(
        f"Zipping 50 prepared images ({total / 2**20:.1f} MB), median of 5",
        ["zip (ZIP_STORED, streamed)", "shutil copy", "zip / copy", "throughput"],
        [
            [
                f"{t_zip * 1000:.0f} ms",
                f"{t_copy * 1000:.0f} ms",
                f"{ratio:.2f}x ({verdict(ratio <= 1.5)}, target <= 1.5x)",
                f"{total / 2**20 / t_zip:.0f} MB/s",
            ]
        ],
    )

    rows = []
    added = {}
    for count in (50, 700):
        out = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(count)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        info = json.loads(out.stdout.strip().splitlines()[-1])
        added[count] = info["added_mb"]
        rows.append([str(count), f"{info['zip_mb']:.0f} MB", f"{info['added_mb']:.1f} MB"])
    growth = added[700] - added[50]
    rows.append(["growth", "", f"{growth:+.1f} MB ({verdict(growth < 40)}, target < 40 MB)"])
    table(
        "Peak memory added while zipping (VmHWM, fresh process each)",
        ["images", "archive", "added peak RSS"],
        rows,
    )
    shutil.rmtree(media, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-child":
        media = django_setup()
        try:
            memory_child(int(sys.argv[2]))
        finally:
            shutil.rmtree(media, ignore_errors=True)
    else:
        main()
