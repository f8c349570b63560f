"""The training ZIP, streamed straight into storage.

Members are `img_001.jpg` with an optional `img_001.txt` caption: never a user's file name.
JPEGs do not compress, so members are ZIP_STORED. The archive goes through a write-only
wrapper: zipfile then uses data descriptors instead of seeking back, which lets it stream into
an S3/R2 multipart upload, and the wrapper hashes and counts the bytes as they pass.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from fluxsite.integrations import storage

CHUNK = 1024 * 1024


@dataclass
class ZipMember:
    image_name: str  # in the private storage
    caption: str  # already with [trigger] replaced; empty means no .txt member


@dataclass
class ZipResult:
    size: int
    sha256: str


class _HashingWriter:
    """Write-only: no tell()/seek(), so zipfile streams (data descriptors) instead of seeking."""

    def __init__(self, target: BinaryIO) -> None:
        self._target = target
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._target.write(data)
        self._digest.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        # S3File.flush() would push a partial multipart part; zipfile flushes often, so don't.
        pass

    def finish(self) -> str:
        return self._digest.hexdigest()


def zip_stream_to_storage(*, alias: str, name: str, members: Iterable[ZipMember]) -> ZipResult:
    """Write the archive to storage under `name`, one chunk at a time; returns size and sha256."""
    target = storage.file_open_for_writing(alias=alias, name=name)
    writer = _HashingWriter(target)
    try:
        with zipfile.ZipFile(writer, "w", compression=zipfile.ZIP_STORED) as archive:  # type: ignore[arg-type]
            for index, member in enumerate(members, start=1):
                stem = f"img_{index:03d}"
                with (
                    storage.get_storage(alias).open(member.image_name, "rb") as source,
                    archive.open(f"{stem}.jpg", "w", force_zip64=False) as dest,
                ):
                    shutil.copyfileobj(source, dest, CHUNK)
                if member.caption:
                    archive.writestr(f"{stem}.txt", member.caption.encode("utf-8"))
    finally:
        sha256 = writer.finish()
        target.close()
    return ZipResult(size=writer.size, sha256=sha256)
