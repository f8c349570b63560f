"""Does resizing in the browser ever change what the server concludes? (issue 15, item 4)

    .venv/bin/python bench/bench_resize_verdicts.py [--only corpus|generated]

Runs static/js/photo-resize.js in headless Chromium over every file of the public corpus
(tests/corpus/, 1,126 hostile and real-world files) and over generated edge cases (all eight EXIF
orientations, broken EXIF, XMP orientation, WebP and PNG with EXIF, transparency, CMYK,
progressive), then puts the original and, where the script resized it, the browser's JPEG through
the server's own pipeline (image_prepare_budgeted) and compares: the verdict, the stored size,
and the stored pixels (mean absolute difference, 0-255).

Twice: at the real settings (target 2048 px, training size 1024), where few corpus files are
large enough to be resized, and at a small target (600 px for 300, minimum side 100) so that most
of the corpus is. A changed verdict or stored size is a bug; a large pixel difference is worth a
look (at the small target it is mostly resampling twice by a non-integer ratio).
"""

from __future__ import annotations

import argparse
import base64
import collections
import io
import json
import os
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, django_setup, table  # noqa: E402

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
CHROMIUM = "/usr/bin/chromium"
SCRIPT = ROOT / "static" / "js" / "photo-resize.js"
CORPUS = ROOT / "tests" / "corpus"
PREPARE = """async ([b64, name, options]) => {
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const r = await window.FluxsitePhotoResize.prepare(new File([bytes], name), options);
  const out = new Uint8Array(await r.blob.arrayBuffer());
  let text = "";
  for (let i = 0; i < out.length; i += 8192) text += String.fromCharCode.apply(null, out.subarray(i, i + 8192));
  return {resized: r.resized, reason: r.reason, data: r.resized ? btoa(text) : ""};
}"""


def generated() -> dict[str, bytes]:
    from PIL import Image

    size = (2600, 1950)
    base = Image.merge(
        "RGB",
        [
            Image.linear_gradient("L").resize(size),
            Image.effect_noise(size, 30),
            Image.linear_gradient("L").rotate(90).resize(size),
        ],
    )
    base.paste((255, 0, 0), (0, 0, 300, 200))  # a red corner: a wrong turn shows

    def save(im, fmt, **kw) -> bytes:
        buffer = io.BytesIO()
        im.save(buffer, fmt, **kw)
        return buffer.getvalue()

    def segment(data: bytes, marker: int, payload: bytes) -> bytes:
        return data[:2] + bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload + data[2:]

    def exif(orientation: int):
        e = Image.Exif()
        e[0x0112] = orientation
        return e

    plain = save(base, "JPEG", quality=90)
    xmp = (
        b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf="
        b"'http://www.w3.org/1999/02/22-rdf-syntax-ns#'><rdf:Description xmlns:tiff="
        b"'http://ns.adobe.com/tiff/1.0/' tiff:Orientation='6'/></rdf:RDF></x:xmpmeta>"
    )
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(size))
    cases = {f"JPEG, orientation {o}": save(base, "JPEG", quality=90, exif=exif(o)) for o in range(1, 9)}
    cases |= {
        "JPEG, EXIF of garbage": segment(plain, 0xE1, b"Exif\x00\x00" + b"\xde\xad" * 40),
        "JPEG, EXIF IFD past the end": segment(
            plain, 0xE1, b"Exif\x00\x00II*\x00" + struct.pack("<I", 0x7FFFFFF0)
        ),
        "JPEG, orientation 6 in a truncated IFD": segment(
            plain,
            0xE1,
            b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x03" + struct.pack(">HHII", 0x0112, 3, 1, 6 << 16),
        ),
        "JPEG, orientation 6 typed LONG": segment(
            plain,
            0xE1,
            b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x01"
            + struct.pack(">HHII", 0x0112, 4, 1, 6)
            + b"\0" * 4,
        ),
        "JPEG, XMP orientation only": segment(plain, 0xE1, xmp),
        "JPEG, XMP 6 and EXIF 8": segment(save(base, "JPEG", quality=90, exif=exif(8)), 0xE1, xmp),
        "JPEG, CMYK": save(base.convert("CMYK"), "JPEG", quality=92),
        "JPEG, progressive": save(base, "JPEG", quality=90, progressive=True),
        "PNG, eXIf orientation 6": save(base, "PNG", exif=exif(6), compress_level=1),
        "PNG, transparency": save(rgba, "PNG", compress_level=1),
        "PNG, grey": save(base.convert("L"), "PNG", compress_level=1),
        "WebP": save(base, "WEBP", quality=90),
        "WebP, lossless": save(base, "WEBP", lossless=True),
        "WebP, EXIF orientation 6": save(base, "WEBP", quality=90, exif=exif(6)),
        "GIF named .jpg": save(base.convert("P"), "GIF"),
    }
    return cases


def server_prepare(data: bytes, limits):
    """The server's pipeline for one file: its PreparedImage, or the refusal as text."""
    from training.imaging import DecodeFailed, ImageRejected, image_prepare_budgeted

    try:
        return image_prepare_budgeted(data, limits=limits)
    except (ImageRejected, DecodeFailed) as exc:
        return f"refused: {exc}"


def mean_difference(a: bytes, b: bytes) -> float:
    from PIL import Image, ImageChops, ImageStat

    one, two = (Image.open(io.BytesIO(x)).convert("RGB") for x in (a, b))
    return sum(ImageStat.Stat(ImageChops.difference(one, two)).mean) / 3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=["corpus", "generated"])
    args = parser.parse_args()
    django_setup()

    from playwright.sync_api import sync_playwright

    from training.imaging import ImageLimits

    files: list[tuple[str, str, bytes]] = []  # (set, label, bytes)
    if args.only != "generated":
        for entry in json.loads((CORPUS / "manifest.json").read_text()):
            files.append(("corpus", entry["path"], (CORPUS / entry["path"]).read_bytes()))
    if args.only != "corpus":
        files += [("generated", label, data) for label, data in generated().items()]

    configs = [
        ("target 2048, size 1024, min side 256", 2048, 1024, 256),
        ("target 600, size 300, min side 100", 600, 300, 100),
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto("about:blank")
        page.add_script_tag(path=str(SCRIPT))
        for title, target, long_side, min_side in configs:
            limits = ImageLimits(long_side=long_side, min_side=min_side)
            options = {
                "target": target,
                "longSide": long_side,
                "minSide": min_side,
                "maxAspect": limits.max_aspect,
                "maxPixels": limits.max_pixels,
                "maxFileBytes": 30 * 2**20,
            }

            kept: collections.Counter[str] = collections.Counter()
            rows, problems, differences = [], [], []
            resized_count = {"corpus": 0, "generated": 0}
            for group, label, data in files:
                answer = page.evaluate(PREPARE, [base64.b64encode(data).decode(), Path(label).name, options])
                if not answer["resized"]:
                    kept[answer["reason"]] += 1
                    if group == "generated":
                        rows.append([label, "sent as it is", answer["reason"], ""])
                    continue
                resized_count[group] += 1
                full, small = (
                    server_prepare(data, limits),
                    server_prepare(base64.b64decode(answer["data"]), limits),
                )
                if isinstance(full, str) or isinstance(small, str):
                    same = isinstance(full, str) and isinstance(small, str)
                    if not same:
                        problems.append(
                            f"VERDICT CHANGED {label}: full size {full!s:.60}, resized {small!s:.60}"
                        )
                    if group == "generated":
                        rows.append([label, "resized", "both refused" if same else "VERDICT CHANGED", ""])
                    continue
                if (full.width, full.height) != (small.width, small.height):
                    problems.append(
                        f"SIZE CHANGED {label}: {full.width}×{full.height} → {small.width}×{small.height}"
                    )
                difference = mean_difference(full.jpeg, small.jpeg)
                differences.append(difference)
                if group == "generated":
                    rows.append([label, "resized", f"{small.width}×{small.height}", f"{difference:.2f}"])
                elif difference >= 3:
                    problems.append(f"(look) {label}: mean pixel difference {difference:.1f}")
            if rows:
                table(f"Generated cases, {title}", ["file", "browser", "result", "mean |diff|"], rows)
            table(
                f"Why files were sent as they are, {title}",
                ["reason", "files"],
                [[reason, str(n)] for reason, n in kept.most_common()],
            )
            changed = [p for p in problems if not p.startswith("(look)")]
            print(
                f"\nResized: {resized_count['corpus']} corpus files, {resized_count['generated']} generated. "
                f"Verdicts or stored sizes changed: {len(changed)}. Mean pixel difference of the resized: "
                + (
                    f"mean {sum(differences) / len(differences):.2f}, max {max(differences):.2f}"
                    if differences
                    else "-"
                )
            )
            for problem in problems:
                print("  " + problem)
        browser.close()


if __name__ == "__main__":
    main()
