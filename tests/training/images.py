"""Pictures made on the fly for the dataset tests: photo-like JPEGs and deliberately bad files."""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib

from PIL import Image


def photo(
    size: tuple[int, int] = (800, 600), seed: int = 0, fmt: str = "JPEG", mode: str = "RGB", **save
) -> bytes:
    """A small noisy gradient: unique per seed, far enough apart that dHash tells them apart."""
    rnd = random.Random(seed)
    w, h = size
    base = Image.linear_gradient("L").resize(size).rotate(rnd.randrange(360), expand=False)
    noise = Image.effect_noise(size, 40 + rnd.randrange(30))
    blocks = Image.new("L", (8, 8))
    blocks.putdata([rnd.randrange(256) for _ in range(64)])
    blocks = blocks.resize(size, Image.Resampling.NEAREST)
    im = Image.merge("RGB", (base, noise, blocks))
    if mode != "RGB":
        im = im.convert(mode)
    buffer = io.BytesIO()
    im.save(buffer, fmt, **save)
    return buffer.getvalue()


def phone_photo(size: tuple[int, int] = (4032, 3024), seed: int = 0, orientation: int = 1) -> bytes:
    """A camera-sized JPEG that compresses like a photo: smooth shapes under moderate sensor-like
    noise (photo()'s strong noise is far from what a phone writes), with an EXIF orientation."""
    rnd = random.Random(seed)
    gradient = Image.linear_gradient("L").resize(size).rotate(rnd.randrange(360))
    blocks = Image.new("L", (16, 12))
    blocks.putdata([rnd.randrange(256) for _ in range(16 * 12)])
    blocks = blocks.resize(size, Image.Resampling.BILINEAR)
    noise = Image.blend(Image.effect_noise(size, 28 + rnd.randrange(8)), blocks, 0.5)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.merge("RGB", (gradient, noise, blocks)).save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def png_bomb(side: int = 10_000) -> bytes:
    """A real greyscale PNG of side×side black pixels: about 100 KB that decode to 100 megapixels."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    parts = [compressor.compress(row) for _ in range(side)]
    parts.append(compressor.flush())
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")
    )


def animated_webp() -> bytes:
    buffer = io.BytesIO()
    frames = [Image.new("RGB", (640, 480), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def png_16bit(seed: int = 0) -> bytes:
    im = Image.linear_gradient("L").resize((600, 600)).convert("I")
    im = im.point(lambda v: v * 256 + seed)  # spread over 0..65535
    buffer = io.BytesIO()
    im.convert("I;16").save(buffer, "PNG")
    return buffer.getvalue()


def jpeg_with_exif(seed: int = 0) -> bytes:
    """600×300, left half red and right half blue, Orientation=6 (rotate 90° clockwise) and GPS tags."""
    im = Image.new("RGB", (600, 300), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 300, 300))
    im.putpixel((599, 299), (seed % 256, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "PhoneMaker"
    gps = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    exif[0x8825] = gps
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", quality=92, exif=exif)
    return buffer.getvalue()


def make_zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return buffer.getvalue()


def zip_with_lying_size(real_size: int = 2_000_000, claimed: int = 1000) -> bytes:
    """A ZIP whose headers say one member is `claimed` bytes when it really holds `real_size`."""
    data = make_zip({"liar.jpg": photo(seed=99) + b"\x00" * real_size})
    info = zipfile.ZipFile(io.BytesIO(data)).infolist()[0]
    real = struct.pack("<I", info.file_size)
    assert data.count(real) >= 1
    return data.replace(real, struct.pack("<I", claimed))
