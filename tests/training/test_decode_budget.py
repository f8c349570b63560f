"""The decode budget's workers (training.imaging): reused while they behave, replaced when they do not,
and each file gets the whole budget however many files its worker decoded before.

The refusals themselves, through the upload view, are in test_upload_hostile.py.
"""

from __future__ import annotations

import functools
import io
import time

import pytest
from PIL import Image

from tests.helpers import run_concurrently
from tests.training import images
from training import imaging
from training.imaging import ImageLimits, ImageRejected, image_prepare_budgeted


def idle_pids() -> list[int]:
    return [worker.process.pid for worker in imaging._idle]


def cpu_seconds_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks (USER_HZ 100)


@functools.cache
def heavy_progressive(repeat: int, size: tuple[int, int] = (4500, 3000)) -> bytes:
    """A progressive JPEG whose last scan is repeated (under the scan cap): each copy is a full pass.

    RLIMIT_CPU counts whole seconds, so a 1 s budget ends somewhere between 1 and 2 s of CPU; at
    4500 x 3000 with 50 scans the file needs about 3.5 s on a quiet machine, well past both (at
    3000 x 2000 it needed about 1.9 s and sometimes slipped under the limit).
    """
    buffer = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(buffer, "JPEG", progressive=True, quality=95)
    data = buffer.getvalue()
    last = data.rindex(b"\xff\xda")
    return data[:last] + data[last:-2] * repeat + data[-2:]


@pytest.fixture(autouse=True)
def fresh_pool():
    for worker in list(imaging._idle):
        worker.close()
    imaging._idle.clear()
    yield


def test_a_worker_is_reused_for_the_next_file():
    limits = ImageLimits()
    image_prepare_budgeted(images.photo(seed=1), limits=limits)
    (first,) = idle_pids()
    result = image_prepare_budgeted(images.photo(seed=2), limits=limits)
    assert idle_pids() == [first]
    assert result.decode_peak_mb and result.decode_peak_mb < limits.memory_bytes / 2**20


def test_a_refusal_by_our_checks_keeps_the_worker():
    limits = ImageLimits()
    image_prepare_budgeted(images.photo(seed=3), limits=limits)
    (first,) = idle_pids()
    with pytest.raises(ImageRejected, match="short side"):
        image_prepare_budgeted(images.photo((300, 100), seed=4), limits=limits)
    assert idle_pids() == [first]


def test_each_file_gets_the_whole_cpu_budget_however_long_the_worker_has_lived():
    """One second of CPU per file; the same worker decodes files until it has used well over that."""
    limits = ImageLimits(cpu_seconds=1)
    photo = images.photo((4000, 3000), seed=5)
    image_prepare_budgeted(photo, limits=limits)
    (pid,) = idle_pids()
    while cpu_seconds_of(pid) < 2.5:
        image_prepare_budgeted(photo, limits=limits)
    assert idle_pids() == [pid]


def test_a_file_over_the_cpu_budget_is_refused_and_its_worker_replaced():
    limits = ImageLimits(cpu_seconds=1)
    image_prepare_budgeted(images.photo(seed=6), limits=limits)
    (first,) = idle_pids()
    data = heavy_progressive(50)
    started = time.monotonic()
    with pytest.raises(ImageRejected, match=r"more than 1 s of processing"):
        image_prepare_budgeted(data, limits=limits)
    # Stopped by its CPU budget (the message above says so), well before its wall-time limit; on a
    # loaded machine 1-2 s of CPU can take several seconds of wall time, so no tighter bound here.
    assert time.monotonic() - started < limits.wall_seconds
    assert idle_pids() == []
    image_prepare_budgeted(images.photo(seed=7), limits=limits)
    assert idle_pids() and idle_pids() != [first]


def test_the_same_file_under_a_larger_budget_is_kept():
    """At the limit and past it: the file refused above decodes when the budget allows it."""
    data = heavy_progressive(50)
    prepared = image_prepare_budgeted(data, limits=ImageLimits(cpu_seconds=20, wall_seconds=60))
    assert prepared.width == 1024


def test_a_file_over_the_memory_budget_replaces_its_worker():
    limits = ImageLimits(memory_bytes=300 * 2**20)
    image_prepare_budgeted(images.photo(seed=8), limits=limits)
    buffer = io.BytesIO()
    Image.new("RGBA", (6000, 6000), (200, 100, 50, 255)).save(buffer, "PNG", compress_level=1)
    with pytest.raises(ImageRejected, match="more than 300 MB of memory"):
        image_prepare_budgeted(buffer.getvalue(), limits=limits)
    assert idle_pids() == []


def test_decodes_at_once_get_a_worker_each():
    limits = ImageLimits()
    photos = [images.photo(seed=10 + i) for i in range(4)]
    results = run_concurrently(lambda i: image_prepare_budgeted(photos[i], limits=limits), 4)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len({r.pixel_sha256 for r in results}) == 4
    assert 1 <= len(idle_pids()) <= imaging.MAX_IDLE_WORKERS
