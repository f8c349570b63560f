"""The per-file image pipeline: decode inside a budget, normalise, measure.

Every upload goes through `image_prepare_budgeted`, which runs `image_prepare` in a child process
whose memory and CPU time for that file the operating system limits (RLIMIT_AS, RLIMIT_CPU) and
whose wall time the parent bounds, so no file, however crafted, can pin or kill a web worker. Inside:
- cheap refusals before any pixel is decoded: a format allowlist, the pixel cap, the short side
  and aspect ratio (useless for training), the number of progressive JPEG scans;
- metadata read defensively: broken EXIF or a broken colour profile drops the metadata and keeps
  the photo; the primary image of a camera's MPF file (a JPEG with an embedded preview) is used;
- a full decode (so truncated files fail here, not in the trainer), EXIF orientation applied,
  colours converted to sRGB through the embedded profile (Display P3, Adobe RGB, CMYK), RGB on
  white, the long side resized to DATASET_LONG_SIDE, and a JPEG at quality 95 with no metadata
  at all (no EXIF, ICC, XMP or comment). Only that JPEG is ever stored.

This module imports nothing from Django: the child process loads only Pillow.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import resource
import signal
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, cast

import pillow_heif
from PIL import Image, ImageCms, ImageFilter, ImageStat

pillow_heif.register_heif_opener()
# Load every Pillow plugin now, at import: the fork server imports this module once, so each decode
# child starts with them loaded instead of importing some forty modules on its first open().
Image.init()

ALLOWED_FORMATS = ["JPEG", "PNG", "WEBP", "HEIF"]  # JPEG includes MPO (Pillow's JPEG opener returns it)
SMALL_SIDE = 512
THUMB_SIDE = 320
DARK_MEAN = 35  # mean luminance (0-255) under which a photo is flagged as very dark
BLUR_EDGE_STDDEV = 6.0  # edge-filter spread under which a photo is flagged as probably blurry
FLAT_STDDEV = 0.25  # spread (0-255) under which every channel is one flat colour: refused
# Progressive JPEGs are decoded once per scan; encoders write about 10 (libjpeg's default script
# has 10, mozjpeg's 9-12). A file that repeats scans costs a full pass each: refuse it unread.
MAX_JPEG_SCANS = 64
METADATA_DAMAGED = "Its metadata was damaged and was removed (the photo itself is fine)."
PROFILE_DAMAGED = "Its colour profile could not be read and was removed: colours may look slightly different."

# EXIF Orientation -> the transpose that shows the picture upright (as ImageOps.exif_transpose).
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Signatures of things people rename to .jpg, so the refusal can say what the file really is.
_SNIFF: list[tuple[bytes, str]] = [
    (b"GIF8", "a GIF"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"8BPS", "a Photoshop document"),
    (b"\x00\x00\x01\x00", "an icon file"),
]
_ACCEPTED = "Use JPEG, PNG, WebP or HEIC."


class ImageRejected(Exception):
    """The file is not an image we accept; the message is safe to show.

    `peak_mb` is the decode child's peak memory when the refusal came from one (benches, tests)."""

    peak_mb: float | None = None


@dataclass(frozen=True)
class ImageLimits:
    """What a photo must be, and what decoding one may cost (enforced by the operating system)."""

    long_side: int = 1024
    max_pixels: int = 40_000_000
    min_side: int = 256
    max_aspect: float = 4.0
    memory_bytes: int = 1024 * 1024 * 1024
    cpu_seconds: int = 10
    wall_seconds: float = 20.0


@dataclass
class PreparedImage:
    jpeg: bytes
    thumbnail: bytes
    width: int
    height: int
    original_width: int
    original_height: int
    pixel_sha256: str
    dhash: str
    warnings: list[str] = field(default_factory=list)
    decode_peak_mb: float | None = None  # the decode child's peak resident memory


def _describe_unknown(head: bytes) -> str:
    for magic, what in _SNIFF:
        if head.startswith(magic):
            return f"This file is {what}, not a photo. {_ACCEPTED}"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<svg", b"<?xml")) or b"<svg" in text[:512]:
        return f"This file is an SVG drawing, not a photo. {_ACCEPTED}"
    if text.startswith((b"<!doctype", b"<html", b"<")):
        return f"This file is a web page (HTML), not a photo. {_ACCEPTED}"
    return f"This file is not a JPEG, PNG, WebP or HEIC image. {_ACCEPTED}"


def jpeg_scan_count(data: bytes) -> int:
    """Start-of-scan markers in a JPEG. Entropy-coded data stuffs every 0xFF with 0x00, so FF DA
    appears only as a real marker (an embedded MPF preview adds its own, counted too)."""
    return data.count(b"\xff\xda")


_STANDALONE = {0x01, *range(0xD0, 0xD9)}  # TEM, RST0-7, SOI: markers without a length


def jpeg_has_scan(data: bytes) -> bool:
    """Whether the file's segments lead to a frame header and well-formed scans that hold the whole
    picture: for a progressive JPEG, every component's DC and its AC coefficients 1-63.

    libjpeg "decodes" a file whose scans are garbage or missing to a grey picture without an error,
    so the structure is checked before trusting the decoder. Like libjpeg, stray bytes between
    segments are skipped (some encoders write a few: "extraneous bytes before marker").
    """
    pos, components, progressive, scans = 2, [], False, []
    while pos < len(data):
        if data[pos] != 0xFF or pos + 1 >= len(data) or not _is_marker(data[pos + 1]):
            # Garbage, fill, or a stuffed 0xFF 0x00 outside a scan: look for the next marker.
            found = data.find(b"\xff", pos + 1)
            if found < 0:
                break
            pos = found
            continue
        marker = data[pos + 1]
        pos += 2
        if marker in _STANDALONE:
            continue
        if marker == 0xD9 or pos + 2 > len(data):
            break
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2 or pos + length > len(data):
            break
        segment = data[pos + 2 : pos + length]
        if marker in _FRAMES and len(segment) >= 6:
            progressive = marker in (0xC2, 0xC6, 0xCA, 0xCE)
            components = [segment[6 + 3 * i] for i in range(segment[5]) if 6 + 3 * i < len(segment)]
        if marker == 0xDA:
            count = segment[0] if segment else 0
            if not (0 < count <= 4 and length == 6 + 2 * count and components):
                return False
            ids = {segment[1 + 2 * i] for i in range(count)}
            if not ids <= set(components):
                return False
            ss, se, approx = segment[1 + 2 * count], segment[2 + 2 * count], segment[3 + 2 * count]
            scans.append((ids, ss, se, approx >> 4))
            pos += length
            # Skip the entropy-coded data: up to a 0xFF that is neither stuffing nor a restart marker
            # (bytes.find, not a Python loop per byte: a 12 MP photo has megabytes of it).
            while True:
                found = data.find(b"\xff", pos)
                if found < 0 or found + 1 >= len(data):
                    pos = len(data)
                    break
                if data[found + 1] in _IN_SCAN:
                    pos = found + 2
                    continue
                pos = found
                break
            continue
        pos += length
    if not scans:
        return False
    if not progressive:
        return set().union(*(ids for ids, *_ in scans)) == set(components)
    for component in components:
        mine = [(ss, se) for ids, ss, se, high in scans if component in ids and high == 0]
        if not any(ss == 0 for ss, _ in mine):
            return False
        covered = set().union(*(set(range(max(ss, 1), se + 1)) for ss, se in mine if se >= 1))
        if components.index(component) == 0 and not covered >= set(range(1, 64)):
            return False  # the luma (first) component must have all its detail; chroma may stop early
    return True


_IN_SCAN = {0x00, *range(0xD0, 0xD8)}
_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _is_marker(byte: int) -> bool:
    return byte in _STANDALONE or 0xC0 <= byte <= 0xFE


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:.0f} megapixels" if pixels >= 1_000_000 else f"{pixels:,} pixels"


def _check_shape(width: int, height: int, limits: ImageLimits) -> None:
    if width < 1 or height < 1:
        raise ImageRejected("This image has no pixels.")
    if width * height > limits.max_pixels:
        raise ImageRejected(
            f"This image is {width}×{height} pixels ({_megapixels(width * height)}); the most we "
            f"accept is {_megapixels(limits.max_pixels)}. Export it at a smaller size."
        )
    short, long = min(width, height), max(width, height)
    if short < limits.min_side:
        raise ImageRejected(
            f"This image is {width}×{height} pixels: its short side is under {limits.min_side} px, "
            "too small to learn from. Use a larger photo."
        )
    if long / short > limits.max_aspect:
        raise ImageRejected(
            f"This image is {width}×{height} pixels, {long / short:.1f} times as long as it is wide; "
            f"the most we accept is {limits.max_aspect:g}:1. Crop it first."
        )


def _single_band_max(im: Image.Image) -> float:
    # getextrema() is one (min, max) pair for a single band, a pair per band otherwise; typed as either.
    return cast("tuple[float, float]", im.getextrema())[1]


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB, with transparent areas on white and 16-bit or float images scaled down to 8 bits."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # Pillow's plain convert clips 16-bit values at 255; scale the range instead.
        scale = 1 / 256 if im.mode.startswith("I;16") or _single_band_max(im) > 255 else 1
        return im.convert("I").point(lambda v: v * scale).convert("L").convert("RGB")
    if im.mode == "F":
        return im.point(lambda v: v * 255 if _single_band_max(im) <= 1.0 else v).convert("L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")


_SRGB = ImageCms.createProfile("sRGB")
# Profile colour spaces we can convert from, by the image mode they describe.
_PROFILE_MODES = {"RGB ": ("RGB",), "CMYK": ("CMYK",), "GRAY": ("L",)}


def _to_srgb(im: Image.Image, icc: bytes | None, notes: list[str]) -> Image.Image:
    """RGB in sRGB: through the embedded profile when there is one (P3, Adobe RGB, CMYK...).

    The conversion is done on the already resized image: a per-pixel transform costs the same
    before or after, and after there are 10-40 times fewer pixels.
    """
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            space = source.profile.xcolor_space
            if im.mode in _PROFILE_MODES.get(space, ()):
                # Typed Image | None: None comes only with inPlace=True, which we never pass.
                return ImageCms.profileToProfile(  # type: ignore[return-value]
                    im, source, _SRGB, outputMode="RGB", renderingIntent=ImageCms.Intent.PERCEPTUAL
                )
            if im.mode in ("RGBA", "LA", "P", "PA") and space == "RGB ":
                return ImageCms.profileToProfile(  # type: ignore[return-value]  # as above
                    _to_rgb(im), source, _SRGB, outputMode="RGB", renderingIntent=ImageCms.Intent.PERCEPTUAL
                )
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            notes.append(PROFILE_DAMAGED)
    return _to_rgb(im)


def dhash_hex(im: Image.Image) -> str:
    """A 64-bit difference hash: near-identical pictures differ in only a few bits."""
    small = im.convert("L").resize((9, 8), Image.Resampling.BILINEAR)
    px = small.tobytes()
    bits = 0
    for row in range(8):
        for col in range(8):
            bits = (bits << 1) | (px[row * 9 + col] > px[row * 9 + col + 1])
    return f"{bits:016x}"


def dhash_distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _quality_warnings(im: Image.Image, original_size: tuple[int, int]) -> list[str]:
    found: list[str] = []
    if min(original_size) < SMALL_SIDE:
        found.append(f"Small: the short side is {min(original_size)} px (under {SMALL_SIDE}).")
    # Measured on a 256-pixel grey copy: a few milliseconds whatever the upload size.
    grey = im.convert("L")
    grey.thumbnail((256, 256))
    if ImageStat.Stat(grey).mean[0] < DARK_MEAN:
        found.append("Very dark.")
    elif ImageStat.Stat(grey.filter(ImageFilter.FIND_EDGES)).stddev[0] < BLUR_EDGE_STDDEV:
        found.append("Probably blurry.")
    return found


def _orientation(im: Image.Image, notes: list[str]) -> int | None:
    """EXIF orientation, or None. Broken EXIF (a truncated IFD, a bad offset, text where a number
    should be) raises almost anything from Pillow's parser; the photo is kept without it."""
    try:
        value = im.getexif().get(0x0112)
    except Exception:  # noqa: BLE001  (the parser's failures have no common type)
        notes.append(METADATA_DAMAGED)
        return None
    return value if isinstance(value, int) else None


def _encode(im: Image.Image, quality: int) -> bytes:
    # A fresh image: nothing of the upload's info (comment, EXIF, ICC, XMP) can reach the encoder,
    # which otherwise copies `comment` from im.info by default.
    clean = Image.frombytes("RGB", im.size, im.tobytes())
    buffer = io.BytesIO()
    clean.save(buffer, "JPEG", quality=quality, optimize=False)
    return buffer.getvalue()


def image_prepare(data: bytes, *, limits: ImageLimits) -> PreparedImage:
    """Decode, check and normalise one uploaded file (run it through image_prepare_budgeted).

    Raises ImageRejected with a message for the person uploading. Nothing is written anywhere.
    """
    if not data:
        raise ImageRejected("This file is empty (0 bytes).")
    head = data[:1024]
    if head.startswith(b"\xff\xd8") and (scans := jpeg_scan_count(data)) > MAX_JPEG_SCANS:
        raise ImageRejected(
            f"This JPEG is stored in {scans} progressive passes; the most we decode is "
            f"{MAX_JPEG_SCANS}. Export it again from your photo app."
        )
    if head.startswith(b"\xff\xd8") and not jpeg_has_scan(data):
        raise ImageRejected(
            "This JPEG is damaged: part or all of its picture data is missing. Export it "
            "again from your photo app."
        )
    notes: list[str] = []
    with warnings.catch_warnings():
        # A decompression bomb must fail, not just warn.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageRejected(
                f"This image has far too many pixels to be a photo (the most we accept is "
                f"{_megapixels(limits.max_pixels)})."
            )
        except MemoryError:
            raise
        except Exception:  # noqa: BLE001  (whatever a damaged header raises, the answer is the same)
            raise ImageRejected(_describe_unknown(head))
        try:
            return _prepare_opened(im, limits=limits, notes=notes)
        finally:
            im.close()


def _prepare_opened(im: Image.Image, *, limits: ImageLimits, notes: list[str]) -> PreparedImage:
    width, height = im.size
    _check_shape(width, height, limits)
    if im.format == "MPO":
        im.seek(0)  # a camera's MPF file: the photo, then a large preview; only the photo is used
    elif im.format == "HEIF":
        pass  # several still images in one file (a collection, not a sequence): the primary one opens first
    elif getattr(im, "is_animated", False) or getattr(im, "n_frames", 1) > 1:
        raise ImageRejected("Animated images are not accepted: use a still photo.")
    icc = im.info.get("icc_profile") if isinstance(im.info.get("icc_profile"), bytes) else None
    if im.format in ("JPEG", "MPO"):
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale. Asking for the aspect-correct target (not
        # a square) lets a 6000×4000 photo decode at 1/4 instead of 1/2: the long side still
        # stays at or above long_side, so nothing is ever upscaled.
        scale = limits.long_side / max(width, height)
        if scale < 1:
            im.draft(
                im.mode if im.mode in ("RGB", "L", "CMYK") else "RGB",
                (max(1, int(width * scale)), max(1, int(height * scale))),
            )
    try:
        im.load()
    except MemoryError:
        raise
    except Image.DecompressionBombWarning:
        raise ImageRejected(
            f"This image has far too many pixels to be a photo (the most we accept is "
            f"{_megapixels(limits.max_pixels)})."
        )
    except Exception as exc:  # noqa: BLE001  (OSError, SyntaxError, struct.error, ValueError, ...)
        if "truncated" in str(exc) or isinstance(exc, EOFError):
            raise ImageRejected(
                "This image is incomplete: the file is cut short. Use the original, complete file."
            )
        raise ImageRejected(
            "This image is damaged and cannot be decoded. Export it again from your photo app."
        )
    # Only after load(): PNG's getexif() loads the pixels itself, and if that load fails (and the
    # failure is swallowed as broken metadata) a second load() returns silently with bad pixels.
    orientation = _orientation(im, notes)

    try:
        out = im
        if out.mode in ("RGB", "L", "CMYK") and max(out.size) > limits.long_side:
            # Bicubic with a box pre-shrink (Pillow's thumbnail defaults): a third of Lanczos' cost
            # and no visible difference for a downscale the trainer resizes again anyway.
            out = out.copy()
            out.thumbnail((limits.long_side, limits.long_side), Image.Resampling.BICUBIC, reducing_gap=2.0)
        out = _to_srgb(out, icc, notes)
        if max(out.size) > limits.long_side:
            out.thumbnail((limits.long_side, limits.long_side), Image.Resampling.BICUBIC, reducing_gap=2.0)
        if orientation in _ORIENTATION:
            out = out.transpose(_ORIENTATION[orientation])
            if orientation in (5, 6, 7, 8):
                width, height = height, width
        jpeg = _encode(out, 95)
        thumb = out.copy()
        thumb.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR)
        flat = max(ImageStat.Stat(thumb).stddev) < FLAT_STDDEV
        thumbnail = _encode(thumb, 80)
        pixel_sha256 = hashlib.sha256(out.tobytes()).hexdigest()
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001  (a decoder that lied about its mode or size)
        raise ImageRejected(
            "This image is damaged and cannot be decoded. Export it again from your photo app."
        )
    if flat:
        # Nothing to learn from; also what libjpeg makes of a file whose scans are garbage.
        raise ImageRejected("This image is a single flat colour: there is no picture to learn from.")
    return PreparedImage(
        jpeg=jpeg,
        thumbnail=thumbnail,
        width=out.width,
        height=out.height,
        original_width=width,
        original_height=height,
        pixel_sha256=pixel_sha256,
        dhash=dhash_hex(thumb),
        warnings=[*dict.fromkeys(notes), *_quality_warnings(thumb, (width, height))],
    )


# --- The budget: a child process the operating system limits -----------------------------------------
# Decoding happens in long-lived worker processes, each forked from a fork server (a clean
# single-threaded process that has imported only this module, never a threaded web worker holding
# Django's locks and connections). A worker decodes one file at a time under limits set for that
# file; it is reused while it behaves and replaced as soon as it does not (a refusal for memory or
# time, a crash, an error of ours, or grown address space). Reuse is what makes the budget cheap:
# a fresh child per file paid ~40 ms at 12 MP in process start-up, page faults and exit.
_context_lock = threading.Lock()
_context: Any = None
_idle: list[_DecodeWorker] = []
_idle_pid: int | None = None
MAX_IDLE_WORKERS = 2  # kept per web or queue process; more are started when decodes overlap
MAX_WORKER_JOBS = 200  # a worker is replaced after this many files, whatever happens
MAX_WORKER_IDLE_VM = 512 * 1024 * 1024  # ... or when its address space stays above this between files


def _mp_context() -> Any:
    global _context
    with _context_lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["training.imaging"])
            _context = context
        return _context


def _status_kb(field_name: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def _limit_job(limits: ImageLimits) -> None:
    """This file's budget: address space, and CPU seconds from now (RLIMIT_CPU counts the
    process's whole life, so the soft limit moves forward with each file; the hard limit is
    left alone so it can)."""
    _, hard_as = resource.getrlimit(resource.RLIMIT_AS)
    memory = limits.memory_bytes if hard_as == resource.RLIM_INFINITY else min(limits.memory_bytes, hard_as)
    resource.setrlimit(resource.RLIMIT_AS, (memory, hard_as))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _, hard_cpu = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(usage.ru_utime + usage.ru_stime) + 1 + limits.cpu_seconds  # SIGXCPU there: the process ends
    if hard_cpu != resource.RLIM_INFINITY:
        soft = min(soft, hard_cpu)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard_cpu))
    try:  # per-file peak memory: reset the high-water mark (Linux 4.0+), read VmHWM afterwards
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def _decode_one(path: str, limits: ImageLimits) -> tuple[str, Any]:
    try:
        with open(path, "rb") as handle:  # a path: far cheaper than megabytes through a pipe
            data = handle.read()
        return ("ok", image_prepare(data, limits=limits))
    except ImageRejected as exc:
        return ("rejected", str(exc))
    except MemoryError:
        return ("memory", "")
    except Exception as exc:  # noqa: BLE001  (reported to the parent, which logs it)
        return ("error", f"{type(exc).__name__}: {exc}"[:500])


def _serve(conn: Any) -> None:
    """A decode worker's loop: one (path, limits) in, one (kind, value, peak MB, keep) out."""
    try:
        while True:
            try:
                path, limits = conn.recv()
            except EOFError:  # the parent closed the pipe or died
                return
            _limit_job(limits)
            kind, value = _decode_one(path, limits)
            peak_mb = _status_kb("VmHWM") / 1024
            # Lift the address-space cap again so the reply (and the next file) are not squeezed.
            hard_as = resource.getrlimit(resource.RLIMIT_AS)[1]
            resource.setrlimit(resource.RLIMIT_AS, (hard_as, hard_as))
            keep = kind in ("ok", "rejected") and _status_kb("VmSize") * 1024 < MAX_WORKER_IDLE_VM
            conn.send((kind, value, peak_mb, keep))
            if not keep:
                return
    finally:
        conn.close()


class _DecodeWorker:
    def __init__(self) -> None:
        context = _mp_context()
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.jobs = 0

    def close(self) -> None:
        self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)


def _worker_take() -> _DecodeWorker:
    global _idle_pid
    with _context_lock:
        if _idle_pid != os.getpid():  # a forked copy of this process does not own its parent's workers
            _idle.clear()
            _idle_pid = os.getpid()
        while _idle:
            worker = _idle.pop()
            if worker.process.is_alive():
                return worker
            worker.close()
    return _DecodeWorker()


def _worker_give(worker: _DecodeWorker) -> None:
    with _context_lock:
        if worker.jobs < MAX_WORKER_JOBS and len(_idle) < MAX_IDLE_WORKERS and _idle_pid == os.getpid():
            _idle.append(worker)
            return
    worker.close()


class DecodeFailed(Exception):
    """The decoder itself failed (crashed, or our code raised): logged, and refused as damaged."""


def image_prepare_budgeted(data: bytes | str, *, limits: ImageLimits) -> PreparedImage:
    """image_prepare in a worker process limited to `limits.memory_bytes` of address space and
    `limits.cpu_seconds` of CPU for this file, and stopped after `limits.wall_seconds`.

    `data` is the file's bytes, or the path of a file holding them (an upload Django already
    spooled to disk). Raises ImageRejected (a message for the person, the limit in human units
    when one was hit) or DecodeFailed (the worker crashed or our code failed; the caller logs it
    and refuses the file).
    """
    if isinstance(data, str):
        return _budgeted(data, limits)
    with tempfile.NamedTemporaryFile(prefix="fluxsite-decode-", dir=_SCRATCH) as handle:
        handle.write(data)
        handle.flush()
        return _budgeted(handle.name, limits)


# Scratch files for the worker live in memory where the system offers it.
_SHM = "/dev/shm"  # noqa: S108  (tmpfs; the file is created by tempfile with a random name, mode 0600)
_SCRATCH = _SHM if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK) else None


def _budgeted(path: str, limits: ImageLimits) -> PreparedImage:
    worker = _worker_take()
    keep = False
    try:
        worker.conn.send((path, limits))
        worker.jobs += 1
        if not worker.conn.poll(limits.wall_seconds):
            raise ImageRejected(
                f"This image takes too long to decode (more than {limits.wall_seconds:g} s); "
                "it is not a normal photo file."
            )
        kind, value, peak_mb, keep = worker.conn.recv()
    except (EOFError, BrokenPipeError, ConnectionResetError):
        kind, value, peak_mb = "died", "", None
    finally:
        if keep:
            _worker_give(worker)
        else:
            worker.close()
    if kind == "ok":
        value.decode_peak_mb = peak_mb
        return value
    # Not Django's filesizeformat: this module runs in the decode workers without Django, and the
    # budget is set in whole megabytes (DATASET_DECODE_MAX_MEMORY_MB), so this is exact.
    mb = limits.memory_bytes // (1024 * 1024)
    exitcode = worker.process.exitcode
    if kind == "rejected":
        refusal = ImageRejected(value)
    elif kind == "memory":
        refusal = ImageRejected(
            f"This image needs more than {mb} MB of memory to decode; it is not a normal photo file."
        )
    elif kind == "died" and exitcode in (-signal.SIGXCPU, -signal.SIGKILL):
        refusal = ImageRejected(
            f"This image takes too long to decode (more than {limits.cpu_seconds} s of "
            "processing); it is not a normal photo file."
        )
    else:
        raise DecodeFailed(value or f"decoder process ended with exit code {exitcode}")
    refusal.peak_mb = peak_mb
    raise refusal
