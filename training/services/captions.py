"""Captions in bulk: find and replace, download as a ZIP of .txt files or a CSV, import either;
and the captions the trainer's own autocaption wrote.

Every write here is on a draft dataset only, under a lock on the dataset row, and marks the
captions it changes as the person's. A caption never goes over CAPTION_MAX: a replacement that
would make one longer is refused (nothing changes), an imported one is cut with a notice, as a
caption file in an uploaded ZIP is.

The names in a download are the photos' own file names (sanitised, unique within the dataset),
so a person can edit them beside the photos and import them again; an import matches by that
name. Nothing from an import is trusted: its size and number of rows are checked before it is
read, text is decoded like a caption file (BOM, UTF-16), and every row that cannot be used is
reported with why.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

from django.conf import settings
from django.db import transaction
from django.template.defaultfilters import filesizeformat

from models_app.services import TarCaptions
from training.dataset_zip import member_stem
from training.models import Dataset, DatasetImage, TrainingJob
from training.services.datasets import (
    _CAPTION_FILE_MAX,
    CAPTION_MAX,
    DatasetError,
    _caption_clean,
    _read_member,
    _require_editable,
    caption_file_decode,
    display_name_sanitise,
    text_decode,
)

logger = logging.getLogger(__name__)
Source = DatasetImage.CaptionSource
FIND_MAX = 200
EXPORT_STEM_MAX = 80
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
REPORT_NAMES_MAX = 20  # names listed in a report; the rest are counted


# --- Which photo is which ------------------------------------------------------------------------
def _stem_of(name: str) -> str:
    """A file name's stem, made safe for any file system: letters, digits, `_` and `-` only."""
    name = name.rsplit(" › ", 1)[-1]  # a photo from an uploaded ZIP: "photos.zip › IMG_1.jpg"
    name = re.split(r"[\\/]", name)[-1]
    stem, dot, _ext = name.rpartition(".")
    stem = stem if dot and stem else name
    stem = re.sub(r"[^\w-]+", "_", unicodedata.normalize("NFKC", stem)).strip("._-")
    return stem[:EXPORT_STEM_MAX] or "photo"


def export_names(images: list[DatasetImage]) -> list[tuple[str, DatasetImage]]:
    """(unique stem, photo) in the dataset's order: `IMG_0001`, `IMG_0001_2` for a second photo of
    that name. Unique without regard to case, since Windows and macOS folders ignore it."""
    taken: set[str] = set()
    named: list[tuple[str, DatasetImage]] = []
    for image in images:
        base = _stem_of(image.original_name)
        stem, n = base, 2
        while stem.casefold() in taken:
            stem, n = f"{base}_{n}", n + 1
        taken.add(stem.casefold())
        named.append((stem, image))
    return named


def _images(dataset: Dataset) -> list[DatasetImage]:
    return list(DatasetImage.objects.filter(dataset=dataset).order_by("position", "pk"))


# --- Find and replace ------------------------------------------------------------------------------
@dataclass
class ReplacePlan:
    occurrences: int = 0
    changed: dict[int, str] = field(default_factory=dict)  # image pk -> the new caption
    too_long: list[str] = field(default_factory=list)  # photos whose caption would pass CAPTION_MAX

    @property
    def captions(self) -> int:
        return len(self.changed)

    @property
    def text(self) -> str:
        if not self.occurrences:
            return "No caption contains this text."
        plural = "s" if self.occurrences != 1 else ""
        line = f"Replaces {self.occurrences} occurrence{plural} in {self.captions} caption{'s' if self.captions != 1 else ''}."
        if self.too_long:
            line += (
                f" Refused: {len(self.too_long)} caption{'s' if len(self.too_long) != 1 else ''} would be "
                f"longer than {CAPTION_MAX} characters ({_names(self.too_long)}). Use a shorter replacement."
            )
        return line


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:REPORT_NAMES_MAX])
    return shown + (f" and {len(names) - REPORT_NAMES_MAX} more" if len(names) > REPORT_NAMES_MAX else "")


def _replace_plan(images: list[DatasetImage], find: str, replace: str, case_sensitive: bool) -> ReplacePlan:
    if not find:
        raise DatasetError("Enter the text to find.")
    if len(find) > FIND_MAX or len(replace) > FIND_MAX:
        raise DatasetError(f"The text to find and its replacement may have at most {FIND_MAX} characters.")
    pattern = re.compile(re.escape(find), 0 if case_sensitive else re.IGNORECASE)
    plan = ReplacePlan()
    for image in images:
        found = len(pattern.findall(image.caption))
        if not found:
            continue
        # A function, so a backslash in the replacement is text, never a group reference.
        raw = pattern.sub(lambda _match: replace, image.caption)
        if len(" ".join(raw.split())) > CAPTION_MAX:
            plan.too_long.append(image.original_name)
            continue
        new, _ = _caption_clean(raw)
        plan.occurrences += found
        if new != image.caption:
            plan.changed[image.pk] = new
    return plan


def dataset_captions_replace_preview(
    *, dataset: Dataset, find: str, replace: str, case_sensitive: bool
) -> ReplacePlan:
    """What a replacement would do; changes nothing. Raises DatasetError for an empty search."""
    _require_editable(dataset)
    return _replace_plan(_images(dataset), find, replace, case_sensitive)


def dataset_captions_replace(
    *, dataset: Dataset, find: str, replace: str, case_sensitive: bool, expected: int | None = None
) -> ReplacePlan:
    """Replace `find` by `replace` in every caption (plain text, not a pattern). The changed captions
    become the person's. Refused whole (DatasetError, nothing changed) if a caption would pass
    CAPTION_MAX, so no caption is cut without the person seeing it, and when `expected` (the
    preview's count of occurrences) no longer matches: the captions changed since the preview."""
    with transaction.atomic():
        _lock_editable(dataset)
        plan = _replace_plan(_images(dataset), find, replace, case_sensitive)
        if plan.too_long:
            raise DatasetError(plan.text)
        if expected is not None and expected != plan.occurrences:
            raise DatasetError(
                f"The captions changed since the preview ({expected} occurrences then, "
                f"{plan.occurrences} now): nothing was replaced. Check the new preview."
            )
        _captions_write(plan.changed)
    return plan


def _lock_editable(dataset: Dataset) -> None:
    """Take the dataset's row lock (uploads and other bulk edits wait) and check it is a draft."""
    locked = Dataset.objects.select_for_update().select_related("training").get(pk=dataset.pk)
    _require_editable(locked)


def _captions_write(changed: dict[int, str]) -> None:
    """One UPDATE for all the changed captions, whatever their number."""
    rows = [
        DatasetImage(
            pk=pk, caption=caption, caption_source=Source.PERSON if caption else Source.NONE, caption_model=""
        )
        for pk, caption in changed.items()
    ]
    DatasetImage.objects.bulk_update(rows, ["caption", "caption_source", "caption_model"])


# --- Download ----------------------------------------------------------------------------------------
def _csv_safe(cell: str) -> str:
    return f"'{cell}" if cell.startswith(_FORMULA_STARTS) else cell


def dataset_captions_csv(*, dataset: Dataset) -> bytes:
    """`file,caption`, one row per photo (an empty caption too), UTF-8 with a BOM so spreadsheets
    read it as UTF-8. A cell that a spreadsheet would run as a formula starts with `'`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["file", "caption"])
    for stem, image in export_names(_images(dataset)):
        writer.writerow([_csv_safe(stem), _csv_safe(image.caption)])
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


def dataset_captions_zip(*, dataset: Dataset) -> bytes:
    """A ZIP of `<photo's stem>.txt`, one per photo (empty for a photo without a caption).
    Built from our own names only (`export_names`), so no member path comes from the user."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for stem, image in export_names(_images(dataset)):
            archive.writestr(f"{stem}.txt", image.caption.encode("utf-8"))
    return out.getvalue()


# --- Import ------------------------------------------------------------------------------------------
@dataclass
class ImportReport:
    updated: int = 0
    unchanged: int = 0
    empty: int = 0  # an empty caption never clears one
    cut: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        lines = [
            f"{self.updated} caption{'s' if self.updated != 1 else ''} updated, {self.unchanged} unchanged."
        ]
        if self.empty:
            lines.append(
                f"{self.empty} empty caption{'s' if self.empty != 1 else ''} skipped (an import never clears a caption)."
            )
        if self.cut:
            lines.append(f"Cut to {CAPTION_MAX} characters: {_names(self.cut)}.")
        if self.unmatched:
            lines.append(f"No photo of that name: {_names(self.unmatched)}.")
        lines += self.problems[:REPORT_NAMES_MAX]
        if len(self.problems) > REPORT_NAMES_MAX:
            lines.append(f"… and {len(self.problems) - REPORT_NAMES_MAX} more rows skipped.")
        return lines


def _rows_from_zip(upload: IO[bytes], report: ImportReport) -> Iterator[tuple[str, str]]:
    """(name, caption) per `.txt` member. Everything that can be refused from the central directory
    is refused before a member is read; actual sizes are counted while reading."""
    try:
        archive = zipfile.ZipFile(upload)
    except Exception:  # noqa: BLE001  (BadZipFile, OSError, ValueError, struct.error, EOFError...)
        raise DatasetError("This ZIP archive is damaged and cannot be read: nothing was imported.")
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        rows_max = settings.DATASET_CAPTIONS_IMPORT_MAX_ROWS
        if len(infos) > rows_max:
            raise DatasetError(
                f"This ZIP holds {len(infos):,} files; the most we read is {rows_max:,}: nothing was imported."
            )
        declared = sum(i.file_size for i in infos if i.filename.lower().endswith(".txt"))
        if declared > settings.DATASET_ZIP_MAX_CAPTION_BYTES:
            raise DatasetError(
                f"The captions in this ZIP come to {filesizeformat(declared)}, over the limit of "
                f"{filesizeformat(settings.DATASET_ZIP_MAX_CAPTION_BYTES)}: nothing was imported."
            )
        for info in infos:
            base = info.filename.replace("\\", "/").rsplit("/", 1)[-1]
            if base.startswith(".") or info.filename.startswith("__MACOSX/"):
                continue
            if not base.lower().endswith(".txt"):
                report.problems.append(f"{_shown(base)}: not a .txt file, skipped.")
                continue
            if info.file_size > _CAPTION_FILE_MAX:
                report.problems.append(
                    f"{_shown(base)}: {info.file_size:,} bytes, over the {_CAPTION_FILE_MAX:,} a caption file may have; skipped."
                )
                continue
            data = _read_member(archive, info, _CAPTION_FILE_MAX)
            if data is None:
                report.problems.append(f"{_shown(base)}: damaged or larger than declared; skipped.")
                continue
            yield base[: -len(".txt")], caption_file_decode(data)


def _uncsv(cell: str) -> str:
    """Undo the export's formula guard (`'=1+1` -> `=1+1`), so a round trip changes nothing."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(_FORMULA_STARTS) else cell


def _rows_from_csv(data: bytes, report: ImportReport) -> Iterator[tuple[str, str]]:
    text = text_decode(data)
    if "\x00" in text and data[1::2].count(0) > len(data) // 4:
        # UTF-16 without its BOM: its ASCII is valid UTF-8, NULs and all (caption_file_decode gets
        # away with dropping the NULs; a CSV's commas and quotes must be read as UTF-16).
        text = data.decode("utf-16-le", "replace")
    if "\x00" in text:
        raise DatasetError("This file is neither a ZIP of .txt captions nor a CSV: nothing was imported.")
    rows_max = settings.DATASET_CAPTIONS_IMPORT_MAX_ROWS
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            if len(rows) >= rows_max + 1:  # the header may be one of them
                raise DatasetError(
                    f"This CSV has more than {rows_max:,} rows, the most we read: nothing was imported."
                )
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise DatasetError(f"This CSV cannot be read (line {reader.line_num}: {exc}): nothing was imported.")
    if rows and [c.strip().casefold() for c in rows[0][1]] == ["file", "caption"]:
        rows = rows[1:]
    elif len(rows) > rows_max:
        raise DatasetError(
            f"This CSV has more than {rows_max:,} rows, the most we read: nothing was imported."
        )
    for line, row in rows:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2:
            report.problems.append(
                f"Line {line}: {len(row)} columns, not 2 (file, caption); quote a caption that holds a comma."
            )
            continue
        yield _uncsv(row[0]).strip(), _uncsv(row[1])


def _shown(name: str) -> str:
    return display_name_sanitise(name, limit=60)


def dataset_captions_import(*, dataset: Dataset, upload: IO[bytes], size: int) -> ImportReport:
    """Set captions from a ZIP of `<stem>.txt` or a CSV `file,caption`, matched by the photo's file
    stem (as the download names it; case ignored, an extension allowed). Returns what happened to
    every row. Raises DatasetError (nothing imported) for a file over the size or row limits, a
    damaged ZIP, an unreadable CSV or a dataset that is no longer a draft. `size` (the upload's,
    as received) is checked before a byte is read."""
    _require_editable(dataset)
    if size > settings.DATASET_CAPTIONS_IMPORT_MAX_BYTES:
        raise DatasetError(
            f"This file is {filesizeformat(size)}; a captions file may have at most "
            f"{filesizeformat(settings.DATASET_CAPTIONS_IMPORT_MAX_BYTES)}: nothing was imported."
        )
    report = ImportReport()
    head = upload.read(4)
    upload.seek(0)
    if head in _ZIP_MAGICS:
        rows = list(_rows_from_zip(upload, report))
    else:
        rows = list(_rows_from_csv(upload.read(settings.DATASET_CAPTIONS_IMPORT_MAX_BYTES + 1), report))
    with transaction.atomic():
        _lock_editable(dataset)
        named = export_names(_images(dataset))
        by_stem = {stem.casefold(): image for stem, image in named}
        changed: dict[int, str] = {}
        seen: set[int] = set()
        for name, caption in rows:
            image = by_stem.get(_stem_of(name).casefold()) or by_stem.get(_stem_of(name + ".x").casefold())
            if image is None:
                report.unmatched.append(_shown(name) or "(no name)")
                continue
            if image.pk in seen:
                report.problems.append(f"{_shown(name)}: appears twice; the first one was used.")
                continue
            seen.add(image.pk)
            text, cut = _caption_clean(caption)
            if not text:
                report.empty += 1
                continue
            if cut:
                report.cut.append(image.original_name)
            if text == image.caption:
                report.unchanged += 1
            else:
                changed[image.pk] = text
        _captions_write(changed)
        report.updated = len(changed)
    return report


# --- The trainer's own captions -----------------------------------------------------------------
@dataclass(frozen=True)
class TrainerCaptionsKept:
    kept: int
    notes: list[str]

    @property
    def text(self) -> str:
        line = f"The trainer captioned {self.kept} photo{'s' if self.kept != 1 else ''}"
        return line + (f" ({'; '.join(self.notes)})." if self.notes else ".")


def trainer_captions_record(*, job: TrainingJob, found: TarCaptions) -> TrainerCaptionsKept:
    """Keep the captions the trainer's autocaption wrote: the output tar's `captions/<stem>.txt`
    for the ZIP entries we sent without a caption (the others are our own captions, copied back).
    Each is decoded like a caption file, made plain text and cut to CAPTION_MAX; an empty one is
    dropped. Returns how many were kept, with notes. Never raises for what the files hold: a training that
    worked is not failed over its captions."""
    try:
        images = list(DatasetImage.objects.filter(dataset__training=job).order_by("position", "pk"))
        kept: dict[str, str] = {}
        cut = empty = 0
        for index, image in enumerate(images, start=1):
            stem = member_stem(index)
            if image.caption or stem not in found.by_stem:
                continue
            text, was_cut = _caption_clean(caption_file_decode(found.by_stem[stem]))
            if not text:
                empty += 1
                continue
            cut += was_cut
            kept[stem] = text
        TrainingJob.objects.filter(pk=job.pk).update(trainer_captions=kept)
        job.trainer_captions = kept
    except Exception:  # noqa: BLE001  (logged: the weights matter more than the captions)
        logger.exception("training %s: the trainer's captions could not be kept", job.pk)
        return TrainerCaptionsKept(kept=0, notes=["they could not be read"])
    notes = []
    if cut:
        notes.append(f"{cut} cut to {CAPTION_MAX} characters")
    if empty:
        notes.append(f"{empty} empty, dropped")
    if found.skipped:
        notes.append(f"{found.skipped} caption files over the size limits, skipped")
    return TrainerCaptionsKept(kept=len(kept), notes=notes)
