"""Helpers for tests that drive the Replicate stand-in: datasets served over HTTP, a webhook receiver."""

from __future__ import annotations

import io
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

from fluxsite.integrations import storage
from tests.helpers import wait_until


def image_bytes(color: tuple[int, int, int] = (200, 120, 40), fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(out, format=fmt)
    return out.getvalue()


def zip_bytes(files: dict[str, bytes | str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def dataset_url(content: bytes, name: str = "datasets/test.zip") -> str:
    """Store a file in the private storage and return the signed URL the trainer will download."""
    stored = storage.file_save(alias=storage.PRIVATE, name=name, content=io.BytesIO(content))
    return storage.signed_url(alias=storage.PRIVATE, name=stored)


def good_dataset() -> bytes:
    return zip_bytes(
        {
            "img_001.jpg": image_bytes((255, 0, 0)),
            "img_001.txt": "a photo of [trigger] in a red room",
            "img_002.png": image_bytes((0, 0, 255), "PNG"),
        }
    )


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    received_at: float


@dataclass
class WebhookReceiver:
    """A tiny HTTP server that records every POST; `statuses` are answered in turn, then 200."""

    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802  (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.deliveries.append(
                        Delivery({k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                    )
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks/replicate"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def snapshot(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def wait_for(self, predicate: Callable[[list[Delivery]], bool], timeout: float = 10.0) -> list[Delivery]:
        snapshot = wait_until(self.snapshot, predicate, timeout=timeout, interval=0.05)
        if not predicate(snapshot):
            raise AssertionError(f"webhooks not received in {timeout}s: {[d.body[:80] for d in snapshot]}")
        return snapshot
