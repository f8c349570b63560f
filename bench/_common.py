"""Shared bits of the bench scripts: Django setup, photo-like test images, small table printing."""

from __future__ import annotations

import contextlib
import io
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def django_setup(media_root: str | None = None) -> str:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fluxsite.settings")
    media_root = media_root or tempfile.mkdtemp(prefix="fluxsite-bench-")
    os.environ["MEDIA_ROOT"] = media_root
    os.environ.setdefault("FLUXSITE_VAR_DIR", tempfile.mkdtemp(prefix="fluxsite-bench-var-"))
    import django

    django.setup()
    return media_root


def confirmed_user(email: str):
    """A signed-up user whose address is confirmed (so the welcome credits are granted)."""
    from fluxsite.accounts.services import user_email_confirm, user_sign_up

    user = user_sign_up(email=email, password="bench-password-123")
    assert user is not None
    confirmed = user_email_confirm(user=user).user
    assert confirmed is not None
    return confirmed


def phone_jpeg(width: int, height: int, seed: int = 0, orientation: int = 6, quality: int = 90) -> bytes:
    """Noise over gradients: compresses like a photo (a few bytes per pixel), with EXIF orientation."""
    from PIL import Image

    rnd = random.Random(seed)
    size = (width, height)
    gradient = Image.linear_gradient("L").resize(size)
    noise = Image.effect_noise(size, 28 + rnd.randrange(8))
    blocks = Image.new("L", (16, 12))
    blocks.putdata([rnd.randrange(256) for _ in range(16 * 12)])
    blocks = blocks.resize(size, Image.Resampling.BILINEAR)
    im = Image.merge("RGB", (gradient, Image.blend(noise, blocks, 0.5), blocks))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "BenchPhone"
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", quality=quality, exif=exif)
    return buffer.getvalue()


def timed(fn, repeat: int = 3) -> float:
    """Median wall time of `repeat` runs, in seconds."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)))


def peak_rss_reset() -> None:
    """Reset the peak-RSS mark of this process (Linux), so the next reading covers one phase only."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB: VmHWM, which (unlike ru_maxrss) is not inherited
    from the parent across fork+exec and can be reset with peak_rss_reset()."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now, for a server the bench starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(base: str, sql: str) -> None:
    """Run one statement against the server's `postgres` database (creating or dropping a bench's own)."""
    subprocess.run(["psql", f"{base}/postgres", "-q", "-c", sql], check=True, capture_output=True)


def serve_in_thread(app=None):
    """Serve a WSGI app (default: the project's) on a free 127.0.0.1 port from a daemon thread,
    as Django's live server does, without request logs. Returns (base URL, server): call the
    server's shutdown() when done."""
    import threading

    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler, allow_reuse_address=True)
    server.set_app(app or get_wsgi_application())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


def wait_for_healthz(base_url: str, tries: int = 200) -> bool:
    """True once `base_url`/healthz answers 200 (a server process the bench started); False if it
    never does within `tries` attempts a tenth of a second apart."""
    import httpx

    for _ in range(tries):
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            time.sleep(0.1)
    return False
