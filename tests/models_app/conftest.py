"""Helpers for the models app tests: real safetensors and tar files, and a tiny file server."""

from __future__ import annotations

import io
import json
import struct
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

import pytest

ROOT = "output/flux_train_replicate"
CONFIG = b"job: extension\nconfig:\n  name: flux_train_replicate\n"


def safetensors_bytes(tensors: dict[str, tuple[str, list[int]]] | None = None, fill: int = 7) -> bytes:
    """A well-formed safetensors file: the header, then each tensor's bytes in order."""
    tensors = tensors or {"lora_A.weight": ("BF16", [4, 64]), "lora_B.weight": ("BF16", [64, 4])}
    sizes = {"BF16": 2, "F32": 4, "F16": 2}
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    blobs = []
    for name, (dtype, shape) in tensors.items():
        n = sizes[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        blobs.append(bytes([fill % 256]) * n)
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"".join(blobs)


def tar_bytes(members: list[tuple[str, bytes]], *, links: tuple[tuple[str, str, bytes], ...] = ()) -> bytes:
    """An uncompressed tar; `links` adds (name, target, type) entries (tarfile.SYMTYPE/LNKTYPE)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target, kind in links:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            tar.addfile(info)
    return out.getvalue()


def good_tar(lora: bytes | None = None) -> bytes:
    return tar_bytes(
        [
            (f"{ROOT}/lora.safetensors", lora or safetensors_bytes()),
            (f"{ROOT}/config.yaml", CONFIG),
            (f"{ROOT}/captions/img_001.txt", b"a photo of TOK"),
        ]
    )


class FileServer:
    """Serves `routes` (path -> bytes, or ("redirect", url), or ("nolength", bytes)) over HTTP."""

    def __init__(self, host: str) -> None:
        self.routes: dict[str, Any] = {}
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                route = routes.get(urlparse(self.path).path)
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if isinstance(route, tuple) and route[0] == "redirect":
                    self.send_response(302)
                    self.send_header("Location", route[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if isinstance(route, tuple) and route[0] == "nolength":
                    # No Content-Length: the body ends when the connection closes (HTTP/1.0).
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(route[1])
                    self.close_connection = True
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-tar")
                self.send_header("Content-Length", str(len(route)))
                self.end_headers()
                self.wfile.write(route)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.host = host
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def file_server(settings):
    """A file server on the sandbox's own host name, which sandbox mode allows downloads from."""
    host = urlparse(settings.SITE_URL).hostname or "127.0.0.1"
    server = FileServer("127.0.0.1" if host == "localhost" else host)
    # Serve on the exact host name the sandbox check compares against.
    server.host = host
    yield server
    server.close()
