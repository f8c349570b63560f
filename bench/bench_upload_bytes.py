"""Bytes sent for a dataset upload, resized in the browser and not, in headless Chromium driving
the real dataset page (issue 15, item 4).

    .venv/bin/python bench/bench_upload_bytes.py [--count 50] [--megapixels 12] [--uplink-mbit 0]

Starts Django's threaded WSGI server on a throwaway SQLite database, generates `count` phone-like
JPEGs once (noise over gradients, EXIF orientation 6, distinct pixels), and uploads them all
through the page twice in the same run: once with the resize on (the default target, twice the
training size) and once with it off (DATASET_BROWSER_RESIZE_LONG_SIDE = 0, which the page reads
when it is rendered). The bytes are counted by the server, from each upload request's
Content-Length. Then the stored pictures of the two runs are compared photo by photo.

On loopback the time is mostly the browser's decode and encode and the server's work; with
`--uplink-mbit N` Chromium throttles its uploads to N Mbit/s (DevTools network emulation), so the
time the bytes cost on a real uplink shows too. Rate limits are off: they are not measured here.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import django_setup, serve_in_thread, table, verdict  # noqa: E402
from bench_upload import unique_photos  # noqa: E402

# Playwright's sync API runs an event loop in this thread; the ORM calls here are plain sync code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
CHROMIUM = "/usr/bin/chromium"
TARGET_RATIO = 1 / 5


class ByteCounter:
    """WSGI middleware: the request bodies of uploads, summed per path."""

    def __init__(self, app) -> None:
        self.app = app
        self.by_path: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") == "POST" and path.endswith("/dataset/upload/"):
            with self.lock:
                self.by_path[path] = self.by_path.get(path, 0) + int(environ.get("CONTENT_LENGTH") or 0)
        return self.app(environ, start_response)


def mean_difference(a: bytes, b: bytes) -> float:
    from PIL import Image, ImageChops, ImageStat

    one, two = (Image.open(io.BytesIO(x)).convert("RGB") for x in (a, b))
    return sum(ImageStat.Stat(ImageChops.difference(one, two)).mean) / 3


def upload_through_page(browser, base: str, session: str, job, paths: list[str], uplink_mbit: float) -> dict:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    if uplink_mbit:
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send(
            "Network.emulateNetworkConditions",
            {
                "offline": False,
                "latency": 0,
                "downloadThroughput": -1,
                "uploadThroughput": uplink_mbit * 1_000_000 / 8,
            },
        )
    page.goto(f"{base}/trainings/{job.pk}/dataset/")
    start = time.perf_counter()
    page.set_input_files("#upload-input", paths)
    finished = page.locator(
        '.upload-item:is([data-state="done"], [data-state="refused"], [data-state="failed"])'
    )
    expect(finished).to_have_count(len(paths), timeout=max(120_000, len(paths) * 30_000))
    elapsed = time.perf_counter() - start
    rows = page.locator(".upload-item")
    resized = sum(rows.nth(i).get_attribute("data-resized") == "yes" for i in range(rows.count()))
    note = page.locator("#upload-bytes").text_content() or ""
    context.close()
    return {"seconds": elapsed, "resized": resized, "note": note.strip(), "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--megapixels", type=int, default=12)
    parser.add_argument(
        "--uplink-mbit", type=float, default=0, help="throttle Chromium's uploads (0: loopback)"
    )
    args = parser.parse_args()
    django_setup()
    logging.getLogger("axes").setLevel(logging.WARNING)

    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment
    from playwright.sync_api import sync_playwright

    setup_test_environment()
    connection.creation.create_test_db(verbosity=0)
    settings.ALLOWED_HOSTS = ["*"]
    settings.RATELIMIT_ENABLE = False
    target = settings.DATASET_BROWSER_RESIZE_LONG_SIDE
    try:
        from fluxsite.accounts.services import user_sign_up
        from fluxsite.integrations import storage
        from training.models import DatasetImage
        from training.services import training_create

        user = user_sign_up(email="bench@example.com", password="bench-password-123")
        assert user is not None
        session = Client()
        session.force_login(user)

        counter = ByteCounter(get_wsgi_application())
        base, server = serve_in_thread(counter)

        w = int((args.megapixels * 1_000_000 * 4 / 3) ** 0.5)
        h = w * 3 // 4
        print(f"Generating {args.count} photos of {w}×{h} (EXIF orientation 6)…", flush=True)
        folder = Path(tempfile.mkdtemp(prefix="fluxsite-bench-photos-"))
        paths = []
        for i, data in enumerate(unique_photos(w, h, args.count)):
            path = folder / f"IMG_{i:04d}.jpg"
            path.write_bytes(data)
            paths.append(str(path))
        original_bytes = sum(Path(p).stat().st_size for p in paths)

        runs = {}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
            )
            for mode, long_side in (("resized", target), ("full size", 0)):
                settings.DATASET_BROWSER_RESIZE_LONG_SIDE = long_side  # read when the page is rendered
                job = training_create(
                    owner=user, name=mode, trigger_word="ohwx_bench", subject_kind="subject"
                )
                print(f"Uploading through the page, {mode}…", flush=True)
                run = upload_through_page(
                    browser, base, session.cookies["sessionid"].value, job, paths, args.uplink_mbit
                )
                run["bytes"] = counter.by_path.get(f"/trainings/{job.pk}/dataset/upload/", 0)
                run["images"] = {
                    i.original_name: i for i in DatasetImage.objects.filter(dataset__training=job)
                }
                runs[mode] = run
            browser.close()
        server.shutdown()
        settings.DATASET_BROWSER_RESIZE_LONG_SIDE = target

        read = lambda image: b"".join(storage.file_iter(alias=storage.PRIVATE, name=image.file_name))  # noqa: E731
        resized, full = runs["resized"], runs["full size"]
        common = sorted(set(resized["images"]) & set(full["images"]))
        same_size = sum(
            (resized["images"][n].width, resized["images"][n].height)
            == (full["images"][n].width, full["images"][n].height)
            for n in common
        )
        differences = [mean_difference(read(resized["images"][n]), read(full["images"][n])) for n in common]
        ratio = resized["bytes"] / full["bytes"] if full["bytes"] else float("nan")

        uplink = f"Chromium throttled to {args.uplink_mbit:g} Mbit/s up" if args.uplink_mbit else "loopback"
        table(
            f"{args.count} photos of {w}×{h} ({original_bytes / 2**20:.1f} MB on disk) through the dataset page, "
            f"headless Chromium, {uplink}; resize target {target} px",
            ["upload", "resized in browser", "added", "bytes sent", "time", "per photo", "at 20 Mbit/s"],
            [
                [
                    mode,
                    f"{run['resized']}/{args.count}",
                    f"{len(run['images'])}/{args.count}",
                    f"{run['bytes'] / 2**20:.1f} MB",
                    f"{run['seconds']:.1f} s",
                    f"{run['seconds'] / args.count * 1000:.0f} ms",
                    f"{run['bytes'] * 8 / 20e6:.1f} s",
                ]
                for mode, run in runs.items()
            ],
        )
        table(
            "Measured in this run",
            ["ratio", "value", "goal", ""],
            [
                [
                    "bytes sent, resized / full size",
                    f"{ratio:.3f} (1/{1 / ratio:.1f})",
                    "≤ 1/5",
                    verdict(ratio <= TARGET_RATIO),
                ],
                ["time, resized / full size", f"{resized['seconds'] / full['seconds']:.2f}", "", ""],
                [
                    "stored sizes equal",
                    f"{same_size}/{len(common)}",
                    f"{args.count}/{args.count}",
                    verdict(same_size == len(common) == args.count),
                ],
                [
                    "stored pixels, mean |difference| (0-255)",
                    f"mean {sum(differences) / len(differences):.2f}, max {max(differences):.2f}"
                    if differences
                    else "-",
                    "< 3",
                    verdict(bool(differences) and max(differences) < 3),
                ],
            ],
        )
        print(f"\nThe panel said: {resized['note']!r}")
        for mode, run in runs.items():
            if run["errors"]:
                print(f"Console errors ({mode}): {run['errors'][:5]}")
    finally:
        connection.creation.destroy_test_db(settings.DATABASES["default"]["NAME"], verbosity=0)


if __name__ == "__main__":
    main()
