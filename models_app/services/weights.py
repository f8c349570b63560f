"""Fetching a training's weights from Replicate and keeping our own copy.

Replicate removes a run's outputs about an hour after it ends (docs/vendors.md), so the tar is
downloaded at once, checked and stored in the "private" storage before anything else happens.
The URL comes from a vendor's JSON, so it is treated as untrusted: https to the configured
delivery hosts only, no redirect to a private address, the connection made to the addresses that
were checked, an overall deadline, a size cap on the wire and in the tar
(fluxsite.integrations.downloads).
Our Replicate token goes along only to Replicate's own hosts, decided again at every redirect
(replicate_client.download_headers).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import struct
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.template.defaultfilters import filesizeformat

from fluxsite.integrations import storage
from fluxsite.integrations.errors import Category, IntegrationError
from fluxsite.integrations.replicate_files import file_refusal

logger = logging.getLogger(__name__)
SERVICE = "replicate"
LORA_NAME = "lora.safetensors"
CONFIG_NAME = "config.yaml"
CHUNK = 1024 * 1024
# Bytes per element of each safetensors dtype (https://github.com/huggingface/safetensors#format).
DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the reference implementation's own limit


# --- Extraction ----------------------------------------------------------------------------------------
def _safe_member_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name or "\x00" in name:
        raise file_refusal(f"The weights archive holds an unsafe path ({name!r}); refusing it.")
    return path


def _find_members(tar: tarfile.TarFile) -> tuple[tarfile.TarInfo, tarfile.TarInfo | None]:
    lora = config = None
    for member in tar.getmembers():
        path = _safe_member_name(member.name)
        if member.isdir():
            continue
        if not member.isfile():
            # Symlinks, hard links, devices and FIFOs have no place in a weights archive.
            raise file_refusal(
                f"The weights archive holds a link or special file ({member.name!r}); refusing it."
            )
        if path.name == LORA_NAME:
            if lora is not None:
                raise file_refusal("The weights archive holds more than one lora.safetensors.")
            lora = member
        elif path.name == CONFIG_NAME and (
            config is None or len(path.parts) < len(PurePosixPath(config.name).parts)
        ):
            config = member
    if lora is None:
        raise file_refusal("The weights archive holds no lora.safetensors file.")
    return lora, config


def _copy_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, cap: int) -> None:
    if member.size > cap:
        raise file_refusal(
            f"{PurePosixPath(member.name).name} is larger than the {filesizeformat(cap)} limit."
        )
    source = tar.extractfile(member)
    if source is None:
        raise file_refusal(f"{member.name!r} could not be read from the weights archive.")
    written = 0
    with source, open(dest, "wb") as out:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > cap:
                raise file_refusal(
                    f"{PurePosixPath(member.name).name} is larger than the {filesizeformat(cap)} limit."
                )
            out.write(chunk)


ZIP_MAGIC = b"PK\x03\x04"


def _is_zip(path: Path) -> bool:
    """A zip by its first bytes (a tar begins with a member's name, never "PK\\3\\4"); not
    zipfile.is_zipfile, which looks for a directory at the end and so also says yes for a tar
    whose last member is a zip."""
    with open(path, "rb") as handle:
        return handle.read(4) == ZIP_MAGIC


def _extract_from_zip(zip_path: Path, dest_dir: Path, cap: int) -> Path:
    """The Qwen trainer's output: a zip of lora.safetensors, settings.txt and config.yaml
    (sandbox/vendor/replicate/cog/qwen-image-lora-trainer.train.json). Same rules as the tar."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            lora = config = None
            for info in archive.infolist():
                path = _safe_member_name(info.filename)
                if info.is_dir():
                    continue
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise file_refusal(f"The weights archive holds a link ({info.filename!r}); refusing it.")
                if path.name == LORA_NAME:
                    if lora is not None:
                        raise file_refusal("The weights archive holds more than one lora.safetensors.")
                    lora = info
                elif path.name == CONFIG_NAME and (
                    config is None or len(path.parts) < len(PurePosixPath(config.filename).parts)
                ):
                    config = info
            if lora is None:
                raise file_refusal("The weights archive holds no lora.safetensors file.")
            targets: list[tuple[zipfile.ZipInfo, Path, int]] = [(lora, dest_dir / LORA_NAME, cap)]
            if config is not None:
                targets.append((config, dest_dir / CONFIG_NAME, min(cap, 1024 * 1024)))
            for info, dest, limit in targets:
                if info.file_size > limit:
                    raise file_refusal(
                        f"{PurePosixPath(info.filename).name} is larger than the {filesizeformat(limit)} limit."
                    )
                written = 0
                with archive.open(info) as source, open(dest, "wb") as out:
                    while chunk := source.read(CHUNK):
                        written += len(chunk)
                        if written > limit:
                            raise file_refusal(
                                f"{PurePosixPath(info.filename).name} is larger than the "
                                f"{filesizeformat(limit)} limit."
                            )
                        out.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
        raise file_refusal("The weights file is not a readable zip archive.", detail=repr(exc))
    return dest_dir / LORA_NAME


def weights_extract_lora(*, tar_path: Path, dest_dir: Path) -> Path:
    """Extract the archive's lora.safetensors (and config.yaml, when present) into `dest_dir`.

    Returns the path of the checked lora.safetensors; config.yaml, if any, lands next to it.
    Nothing is extracted by the member's own name: we only copy the two files we want, after
    refusing any archive with an absolute or `..` path, a link or a special file. Raises
    IntegrationError(file_error, not retryable) with a message fit for the user.
    """
    cap = int(settings.REPLICATE_WEIGHTS_MAX_BYTES)
    dest_dir.mkdir(parents=True, exist_ok=True)
    if _is_zip(tar_path):  # the Qwen trainer's output (the FLUX trainers' is a tar)
        lora_path = _extract_from_zip(tar_path, dest_dir, cap)
        safetensors_check(path=lora_path)
        return lora_path
    try:
        with tarfile.open(tar_path, mode="r:*") as tar:
            lora_member, config_member = _find_members(tar)
            lora_path = dest_dir / LORA_NAME
            _copy_member(tar, lora_member, lora_path, cap)
            if config_member is not None:
                _copy_member(tar, config_member, dest_dir / CONFIG_NAME, min(cap, 1024 * 1024))
    except tarfile.TarError as exc:
        raise file_refusal("The weights file is not a readable tar archive.", detail=repr(exc))
    safetensors_check(path=lora_path)
    return lora_path


# --- The trainer's captions ------------------------------------------------------------------------------
CAPTIONS_FOLDER = "captions"
CAPTIONS_MAX_FILES = 1000
CAPTION_FILE_MAX_BYTES = 64 * 1024  # LLaVA writes at most 512 tokens; ours are at most 1000 characters
CAPTIONS_MAX_TOTAL_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class TarCaptions:
    by_stem: dict[str, bytes]  # "img_001" -> the file's bytes, undecoded
    skipped: int  # caption files over the size limits or past the count limit


def weights_read_captions(*, tar_path: Path) -> TarCaptions:
    """The `captions/<stem>.txt` files of a training's output tar (replicate/flux-fine-tuner copies
    every caption it trained with there: sandbox/vendor/replicate/flux-fine-tuner-captions.md).

    Only regular files are read, each at most CAPTION_FILE_MAX_BYTES, at most CAPTIONS_MAX_FILES
    and CAPTIONS_MAX_TOTAL_BYTES in all, sizes checked from the headers before reading; the rest
    are counted as skipped. An archive without captions gives none. Decoding is the caller's.
    Raises IntegrationError(file_error) for an unreadable archive or an unsafe member name.
    """
    found: dict[str, bytes] = {}
    skipped = 0
    budget = CAPTIONS_MAX_TOTAL_BYTES
    if _is_zip(tar_path):
        return TarCaptions(by_stem={}, skipped=0)  # the Qwen trainer's zip carries no captions
    try:
        with tarfile.open(tar_path, mode="r:*") as tar:
            for member in tar.getmembers():
                path = _safe_member_name(member.name)
                if not (
                    member.isfile() and path.suffix.lower() == ".txt" and path.parent.name == CAPTIONS_FOLDER
                ):
                    continue
                if (
                    len(found) >= CAPTIONS_MAX_FILES
                    or member.size > CAPTION_FILE_MAX_BYTES
                    or member.size > budget
                    or path.stem in found
                ):
                    skipped += 1
                    continue
                source = tar.extractfile(member)
                if source is None:
                    skipped += 1
                    continue
                with source:
                    data = source.read(CAPTION_FILE_MAX_BYTES + 1)
                if len(data) > CAPTION_FILE_MAX_BYTES:
                    skipped += 1
                    continue
                budget -= len(data)
                found[path.stem] = data
    except tarfile.TarError as exc:
        raise file_refusal("The weights file is not a readable tar archive.", detail=repr(exc))
    return TarCaptions(by_stem=found, skipped=skipped)


# --- The safetensors format ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SafetensorsSummary:
    tensors: int
    header_bytes: int


def safetensors_check(*, path: Path) -> SafetensorsSummary:
    """Check that `path` is a well-formed safetensors file, reading only its header.

    Format: 8 bytes little-endian header length N, N bytes of JSON {name: {dtype, shape,
    data_offsets: [begin, end]}} (plus an optional "__metadata__"), then the tensor data, whose
    offsets must tile the rest of the file exactly.
    """
    size = path.stat().st_size
    bad = "lora.safetensors is not a valid safetensors file"
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise file_refusal(f"{bad} (too short).")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len < 2 or header_len > MAX_HEADER_BYTES or 8 + header_len > size:
            raise file_refusal(f"{bad} (its header length does not fit the file).")
        try:
            header = json.loads(handle.read(header_len).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise file_refusal(f"{bad} (its header is not JSON).")
    if not isinstance(header, dict):
        raise file_refusal(f"{bad} (its header is not a JSON object).")
    data_size = size - 8 - header_len
    spans: list[tuple[int, int]] = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            element = DTYPE_SIZES[dtype]
            if not all(isinstance(d, int) and d >= 0 for d in shape):
                raise ValueError(shape)
            if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end):
                raise ValueError((begin, end))
        except (KeyError, TypeError, ValueError):
            raise file_refusal(f"{bad} (tensor {str(name)[:80]!r} is malformed).")
        if end - begin != math.prod(shape) * element:
            raise file_refusal(f"{bad} (tensor {str(name)[:80]!r} has the wrong size for its shape).")
        spans.append((begin, end))
    if not spans:
        raise file_refusal(f"{bad} (it holds no tensors).")
    position = 0
    for begin, end in sorted(spans):
        if begin != position:
            raise file_refusal(f"{bad} (its tensors overlap or leave gaps).")
        position = end
    if position != data_size:
        raise file_refusal(f"{bad} (its tensors do not match the file size).")
    return SafetensorsSummary(tensors=len(spans), header_bytes=header_len)


# --- Our own copy ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredWeights:
    weights_name: str
    size: int
    sha256: str
    config_name: str


def _store(local: Path, name: str) -> tuple[str, int, str]:
    digest = hashlib.sha256()
    size = 0
    target = storage.file_open_for_writing(alias=storage.PRIVATE, name=name)
    try:
        with target, open(local, "rb") as source:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                target.write(chunk)
    except OSError as exc:
        raise IntegrationError(
            service="storage",
            category=Category.FILE_ERROR,
            message="The weights could not be stored.",
            detail=repr(exc),
            retryable=True,
        )
    return name, size, digest.hexdigest()


def weights_store(*, lora_path: Path, prefix: str) -> StoredWeights:
    """Copy the checked lora.safetensors (and config.yaml beside it, if any) into private storage."""
    weights_name, size, sha = _store(lora_path, f"{prefix}/{LORA_NAME}")
    config_name = ""
    config_path = lora_path.with_name(CONFIG_NAME)
    if config_path.exists():
        config_name, _, _ = _store(config_path, f"{prefix}/{CONFIG_NAME}")
    return StoredWeights(weights_name=weights_name, size=size, sha256=sha, config_name=config_name)
