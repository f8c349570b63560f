"""Zipping prepared images: ours against the standard library's zipfile and a plain byte copy,
and memory against dataset size.

    .venv/bin/python bench/bench_zip.py

Speed: training.dataset_zip.zip_stream_to_storage over 50 prepared 1024-pixel JPEGs, against
`zipfile_stream_to_storage` below (the same contract written with zipfile) and against shutil
copying the same bytes into one file, all in this run. Memory: peak RSS added while zipping a
50-image set and a ~200 MB set, each in a fresh subprocess (it must not grow with the dataset).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from typing import IO, cast

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


def zip_names(names: list[str], target: str, impl: str = "ours"):
    from training.dataset_zip import ZipMember, zip_stream_to_storage

    members = [
        ZipMember(image_name=n, caption="a photo of ohwx_bench", crc32=RECORDED[n][0], size=RECORDED[n][1])
        for n in names
    ]
    write = zip_stream_to_storage if impl == "ours" else zipfile_stream_to_storage
    return write(alias="private", name=target, members=members)


def check_archive(target: str, result) -> None:
    """Both writers must produce a ZIP that reads back and matches its recorded size and CRC-32."""
    import io

    from fluxsite.integrations import storage

    with storage.get_storage("private").open(target, "rb") as handle:
        data = handle.read()
    assert len(data) == result.size and f"{zlib.crc32(data):08x}" == result.crc32, target
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None, target


class _CountingWriter:
    """Write-only, as an S3/R2 multipart upload is: no seek, no tell, so zipfile writes data
    descriptors. Keeps the archive's size and CRC-32 (ZipResult's contract) over every byte."""

    def __init__(self, target) -> None:
        self._target = target
        self.crc32 = 0
        self.size = 0

    def write(self, data) -> int:
        self._target.write(data)
        self.crc32 = zlib.crc32(data, self.crc32)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self._target.flush()


def zipfile_stream_to_storage(*, alias: str, name: str, members):
    """training.dataset_zip.zip_stream_to_storage written with the standard library's zipfile:
    same member names, STORED, streamed into storage, the same ZipResult."""
    from fluxsite.integrations import storage
    from training.dataset_zip import CHUNK, ZipResult

    target = storage.file_open_for_writing(alias=alias, name=name)
    out = _CountingWriter(target)
    try:
        with zipfile.ZipFile(cast(IO[bytes], out), "w", compression=zipfile.ZIP_STORED) as archive:
            for index, member in enumerate(members, start=1):
                stem = f"img_{index:03d}"
                info = zipfile.ZipInfo(f"{stem}.jpg")
                info.external_attr = 0o100644 << 16
                with (
                    storage.get_storage(alias).open(member.image_name, "rb") as source,
                    archive.open(info, "w") as dest,
                ):
                    shutil.copyfileobj(source, dest, CHUNK)
                if member.caption:
                    archive.writestr(f"{stem}.txt", member.caption.encode("utf-8"))
    finally:
        target.close()
    return ZipResult(size=out.size, crc32=f"{out.crc32:08x}")


IMPLEMENTATIONS = {"ours": "zip_stream_to_storage", "zipfile": "zipfile_stream_to_storage"}


def copy_names(names: list[str], target: Path) -> None:
    from fluxsite.integrations import storage

    with open(target, "wb") as out:
        for name in names:
            with storage.get_storage("private").open(name, "rb") as source:
                shutil.copyfileobj(source, out, 1024 * 1024)


def memory_child(count: int, impl: str) -> None:
    names = prepared_set(count)
    peak_rss_reset()
    before = rss_mb()
    result = zip_names(names, f"bench/out-{count}.zip", impl)
    print(json.dumps({"added_mb": peak_rss_mb() - before, "zip_mb": result.size / 2**20}))


def main() -> None:
    media = django_setup()
    names = prepared_set(50)
    from fluxsite.integrations import storage

    total = sum(storage.get_storage("private").size(n) for n in names)
    for impl in IMPLEMENTATIONS:
        check_archive(f"bench/warm-{impl}.zip", zip_names(names, f"bench/warm-{impl}.zip", impl))
    # Interleaved rounds, so a neighbour's load on a shared machine hits both writers alike.
    t_zip, t_zipfile, t_copy = [], [], []
    for _ in range(3):
        t_zip.append(timed(lambda: zip_names(names, "bench/run.zip", "ours"), repeat=5))
        t_zipfile.append(timed(lambda: zip_names(names, "bench/run-zipfile.zip", "zipfile"), repeat=5))
        t_copy.append(timed(lambda: copy_names(names, Path(media) / "copy.bin"), repeat=5))
    ours, std, copy = min(t_zip), min(t_zipfile), min(t_copy)
    table(
        f"Zipping 50 prepared images ({total / 2**20:.1f} MB), best of 3 medians of 5",
        ["writer", "time", "throughput", "/ shutil copy", "/ ours"],
        [
            [
                "ours (training.dataset_zip)",
                f"{ours * 1000:.0f} ms",
                f"{total / 2**20 / ours:.0f} MB/s",
                f"{ours / copy:.2f}x ({verdict(ours / copy <= 1.5)}, target <= 1.5x)",
                "1.00x",
            ],
            [
                "zipfile (standard library)",
                f"{std * 1000:.0f} ms",
                f"{total / 2**20 / std:.0f} MB/s",
                f"{std / copy:.2f}x ({verdict(std / copy <= 1.5)}, target <= 1.5x)",
                f"{std / ours:.2f}x",
            ],
            ["shutil copy", f"{copy * 1000:.0f} ms", f"{total / 2**20 / copy:.0f} MB/s", "1.00x", ""],
        ],
    )

    rows = []
    for impl in IMPLEMENTATIONS:
        added = {}
        for count in (50, 700):
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", str(count), impl],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            )
            info = json.loads(out.stdout.strip().splitlines()[-1])
            added[count] = info["added_mb"]
            rows.append([impl, str(count), f"{info['zip_mb']:.0f} MB", f"{info['added_mb']:.1f} MB"])
        growth = added[700] - added[50]
        rows.append([impl, "growth", "", f"{growth:+.1f} MB ({verdict(growth < 40)}, target < 40 MB)"])
    table(
        "Peak memory added while zipping (VmHWM, fresh process each)",
        ["writer", "images", "archive", "added peak RSS"],
        rows,
    )
    shutil.rmtree(media, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--memory-child":
        media = django_setup()
        try:
            memory_child(int(sys.argv[2]), sys.argv[3])
        finally:
            shutil.rmtree(media, ignore_errors=True)
    else:
        main()
