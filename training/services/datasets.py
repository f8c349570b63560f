"""Dataset writes: upload (one verdict per file), caption, delete, build the ZIP.

Uploads give one verdict per file: a bad file is refused with a message and never costs the
others. Images are decoded outside any transaction (it is the slow part); the count and
duplicate checks and the insert happen under a lock on the dataset row.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import secrets
import unicodedata
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from fluxsite.integrations import storage
from fluxsite.integrations.errors import IntegrationError
from fluxsite.integrations.storage import PRIVATE
from generations.models import InputImage
from generations.services import GenerationError, input_image_add
from training.dataset_zip import ZipMember, zip_stream_to_storage
from training.imaging import DecodeFailed, ImageLimits, ImageRejected, dhash_distance, image_prepare_budgeted
from training.models import ACTIVE_STATUSES, Dataset, DatasetImage, TrainingJob

logger = logging.getLogger(__name__)

TRIGGER_TOKEN = "[trigger]"
NEAR_DUPLICATE_BITS = 6  # dHash bits that may differ for two photos to count as near-identical
CAPTION_MAX = 1000
DISPLAY_NAME_MAX = 100
ORIGINAL_NAME_MAX = 120  # DatasetImage.original_name
_ZIP_MAGIC = b"PK\x03\x04"
_CAPTION_FILE_MAX = 10_000


class DatasetError(Exception):
    """A refused dataset operation; the message is safe to show."""


@dataclass
class FileVerdict:
    name: str  # the sanitised display name
    ok: bool
    message: str
    image_id: int | None = None
    warnings: list[str] = field(default_factory=list)


def _require_editable(dataset: Dataset) -> None:
    if dataset.training.status != TrainingJob.Status.DRAFT:
        raise DatasetError("This training has started: its photos can no longer be changed.")


# --- Names and captions ---------------------------------------------------------------------------
def _printable(text: str) -> str:
    """NFC text without control characters (NULs from UTF-16 files, escapes): PostgreSQL refuses
    NUL, and nothing else is useful in a name or a caption. Line breaks and tabs become spaces."""
    text = unicodedata.normalize("NFC", text)
    return "".join(
        " " if ch in "\t\r\n" else ch
        for ch in text
        if ch in "\t\r\n" or (unicodedata.category(ch) not in ("Cc", "Cs") and ch not in _BIDI_CONTROLS)
    )


# Direction overrides can make a name read backwards ("gpj.exe" shown as "exe.jpg"); emoji joiners stay.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def display_name_sanitise(raw: str, *, limit: int = DISPLAY_NAME_MAX) -> str:
    """A file name fit for display: no folders, no control characters, at most `limit` characters."""
    name = re.split(r"[\\/]", raw or "")[-1]
    name = _printable(name).strip(" .")
    if len(name) > limit:
        stem, dot, ext = name.rpartition(".")
        ext = ext[:10] if dot and stem else ""
        keep = max(1, limit - len(ext) - 2)
        name = f"{(stem if ext else name)[:keep]}…" + (f".{ext}" if ext else "")
    return name or "unnamed"


def _member_label(zip_name: str, member: str) -> str:
    """`photos.zip › IMG_0001.jpg`, never longer than the column that stores it."""
    room = ORIGINAL_NAME_MAX - len(" › ")
    inner = display_name_sanitise(member, limit=min(DISPLAY_NAME_MAX, room - 10))
    outer = display_name_sanitise(zip_name, limit=max(10, room - len(inner)))
    return f"{outer} › {inner}"[:ORIGINAL_NAME_MAX]


def text_decode(data: bytes) -> str:
    """Text by its byte-order mark (UTF-8, or UTF-16 as Windows Notepad writes it), else UTF-8,
    else UTF-16 when every other byte is NUL, else Latin-1. Line breaks are kept."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", "replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", "replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        odd_nuls = data[1::2].count(0)
        return data.decode("utf-16-le" if odd_nuls > len(data) // 4 else "latin-1", "replace")


def caption_file_decode(data: bytes) -> str:
    """A caption file's text (text_decode), control characters removed, on one line."""
    return " ".join(_printable(text_decode(data)).split())


def caption_render(caption: str, trigger_word: str) -> str:
    return caption.replace(TRIGGER_TOKEN, trigger_word).strip()


def _caption_clean(caption: str) -> tuple[str, bool]:
    """(the caption as stored, whether it was cut at CAPTION_MAX)."""
    text = " ".join(_printable(caption).split())
    return text[:CAPTION_MAX], len(text) > CAPTION_MAX


def dataset_image_caption_set(*, image: DatasetImage, caption: str) -> DatasetImage:
    _require_editable(image.dataset)
    text, _ = _caption_clean(caption)
    if text == image.caption:
        return image  # an autosave of unchanged text keeps a machine-written caption marked as such
    image.caption = text
    image.caption_source = DatasetImage.CaptionSource.PERSON if text else DatasetImage.CaptionSource.NONE
    image.caption_model = ""
    image.save(update_fields=["caption", "caption_source", "caption_model"])
    return image


def dataset_caption_template_apply(*, dataset: Dataset, template: str) -> int:
    """Set every image's caption from the template; returns how many images changed."""
    _require_editable(dataset)
    template, _ = _caption_clean(template)
    with transaction.atomic():
        dataset.caption_template = template
        dataset.save(update_fields=["caption_template"])
        source = DatasetImage.CaptionSource.PERSON if template else DatasetImage.CaptionSource.NONE
        return dataset.images.update(caption=template, caption_source=source, caption_model="")


# --- Uploads --------------------------------------------------------------------------------------
def image_limits() -> ImageLimits:
    return ImageLimits(
        long_side=settings.DATASET_LONG_SIDE,
        max_pixels=settings.DATASET_MAX_PIXELS,
        min_side=settings.DATASET_MIN_SIDE,
        max_aspect=settings.DATASET_MAX_ASPECT,
        memory_bytes=settings.DATASET_DECODE_MAX_MEMORY_MB * 1024 * 1024,
        cpu_seconds=settings.DATASET_DECODE_MAX_CPU_SECONDS,
        wall_seconds=settings.DATASET_DECODE_MAX_WALL_SECONDS,
    )


def dataset_upload_files(*, dataset: Dataset, files: Sequence[UploadedFile]) -> list[FileVerdict]:
    """Add uploaded photos (or ZIPs of photos with .txt captions) to a dataset: one verdict per file.

    Each file, and each photo inside a ZIP, is its own unit of work: whatever happens to one (a
    decoder failure, a storage error, a bug), the others are kept and every file gets a verdict.
    """
    _require_editable(dataset)
    verdicts: list[FileVerdict] = []
    total = 0
    for upload in files:
        name = display_name_sanitise(upload.name or "")
        size = upload.size or 0
        if size > settings.DATASET_MAX_FILE_BYTES:
            verdicts.append(
                FileVerdict(
                    name,
                    False,
                    f"Too large: {filesizeformat(size)}; the most per file is {filesizeformat(settings.DATASET_MAX_FILE_BYTES)}.",
                )
            )
            continue
        total += size
        if total > settings.DATASET_MAX_TOTAL_BYTES:
            verdicts.append(
                FileVerdict(
                    name,
                    False,
                    f"Not added: this upload is over the total of {filesizeformat(settings.DATASET_MAX_TOTAL_BYTES)}.",
                )
            )
            continue
        try:
            upload.seek(0)
            if upload.read(4) == _ZIP_MAGIC:
                upload.seek(0)
                verdicts += _upload_zip(dataset, upload, name)
            else:
                upload.seek(0)
                verdicts.append(_add_image(dataset, upload.read(), name, caption=None))
        except Exception:  # one file's failure never costs the others (and is never a 500)
            logger.exception("dataset %s: upload of %r failed", dataset.pk, name)
            verdicts.append(FileVerdict(name, False, _FAILED_MESSAGE))
    return verdicts


_FAILED_MESSAGE = (
    "Not added: something went wrong on our side while storing this file, and we have been told."
)


def _add_image(
    dataset: Dataset, data: bytes, name: str, *, caption: str | None, notices: Sequence[str] = ()
) -> FileVerdict:
    """One photo: refused cheaply if it cannot be added, else decoded in a budget, stored, recorded.

    Every stored file is deleted again if the row is not inserted: nothing is left orphaned.
    """
    if dataset.images.count() >= settings.DATASET_MAX_IMAGES:  # cheap early refusal; rechecked below
        return FileVerdict(name, False, _full_message())
    source_sha256 = hashlib.sha256(data).hexdigest()
    # The same bytes again (a double drop, a ZIP of copies) are refused before any decoding.
    same_file = (
        dataset.images.filter(source_sha256=source_sha256).values_list("original_name", flat=True).first()
    )
    if same_file is not None:
        return FileVerdict(name, False, f"Same file as “{same_file}”, already in the dataset.")
    try:
        prepared = image_prepare_budgeted(data, limits=image_limits())
    except ImageRejected as exc:
        return FileVerdict(name, False, str(exc))
    except DecodeFailed as exc:
        logger.error("dataset %s: decoding %r failed: %s", dataset.pk, name, exc)
        return FileVerdict(
            name, False, "This image is damaged and cannot be decoded. Export it again from your photo app."
        )

    base = f"datasets/{dataset.training_id}/{secrets.token_hex(16)}"
    stored: list[str] = []
    refusal = None
    try:
        stored.append(storage.file_save(alias=PRIVATE, name=f"{base}.jpg", content=io.BytesIO(prepared.jpeg)))
        stored.append(
            storage.file_save(alias=PRIVATE, name=f"{base}_t.jpg", content=io.BytesIO(prepared.thumbnail))
        )
        with transaction.atomic():
            # Parallel uploads into one dataset take turns here, so the count cannot overshoot.
            Dataset.objects.select_for_update().filter(pk=dataset.pk).first()
            others = list(dataset.images.values_list("original_name", "pixel_sha256", "dhash"))
            if len(others) >= settings.DATASET_MAX_IMAGES:
                refusal = _full_message()
            elif same := next((o for o in others if o[1] == prepared.pixel_sha256), None):
                refusal = f"Same picture as “{same[0]}”, already in the dataset."
            else:
                warnings = [*notices, *prepared.warnings]
                near = [o[0] for o in others if dhash_distance(o[2], prepared.dhash) <= NEAR_DUPLICATE_BITS]
                if near:
                    warnings.append(f"Nearly the same as “{near[0]}”.")
                position = (dataset.images.aggregate(m=Max("position"))["m"] or 0) + 1
                image = DatasetImage.objects.create(
                    dataset=dataset,
                    file_name=stored[0],
                    thumbnail_name=stored[1],
                    original_name=name[:ORIGINAL_NAME_MAX],
                    width=prepared.width,
                    height=prepared.height,
                    original_width=prepared.original_width,
                    original_height=prepared.original_height,
                    byte_size=len(prepared.jpeg),
                    crc32=zlib.crc32(prepared.jpeg),
                    pixel_sha256=prepared.pixel_sha256,
                    source_sha256=source_sha256,
                    dhash=prepared.dhash,
                    warnings=warnings,
                    caption=(
                        text := _caption_clean(caption if caption is not None else dataset.caption_template)[
                            0
                        ]
                    ),
                    caption_source=DatasetImage.CaptionSource.PERSON
                    if text
                    else DatasetImage.CaptionSource.NONE,
                    position=position,
                )
    except IntegrityError:  # a parallel upload of the same picture won the race
        refusal = "Same picture as one already in the dataset."
    except Exception:
        _delete_files(stored)
        raise
    if refusal:
        _delete_files(stored)
        return FileVerdict(name, False, refusal)
    message = f"Added ({image.width}×{image.height})."
    return FileVerdict(name, True, message, image_id=image.pk, warnings=warnings)


def _full_message() -> str:
    return f"Not added: the dataset already has {settings.DATASET_MAX_IMAGES} photos, the most allowed."


def _delete_files(names: list[str]) -> None:
    for name in names:
        try:
            storage.file_delete(alias=PRIVATE, name=name)
        except Exception:  # a leftover file is harmless; a failed upload verdict is not
            logger.warning("could not delete %s", name, exc_info=True)


def _safe_member(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return not (
        name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]) or "\x00" in name
    )


def _upload_zip(dataset: Dataset, upload: IO[bytes], zip_name: str) -> list[FileVerdict]:
    """Each image member gets its own verdict; `photo.txt` beside `photo.jpg` is its caption.

    Nothing is extracted to disk. Everything that can be refused from the central directory is
    refused before a member is read: too many members, declared sizes over the limits (a bomb is
    refused whole), caption files over their budget. Actual sizes are counted while reading, in
    case the declared ones lie; reading stops once the dataset is full.
    """
    try:
        archive = zipfile.ZipFile(upload)
    except Exception:  # noqa: BLE001  (BadZipFile, OSError, ValueError, struct.error, EOFError...)
        return [FileVerdict(zip_name, False, "This ZIP archive is damaged and cannot be read.")]
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if len(infos) > settings.DATASET_ZIP_MAX_MEMBERS:
            return [
                FileVerdict(
                    zip_name,
                    False,
                    f"This ZIP holds {len(infos):,} files; the most we read is "
                    f"{settings.DATASET_ZIP_MAX_MEMBERS:,} (a dataset has at most "
                    f"{settings.DATASET_MAX_IMAGES} photos): nothing was added.",
                )
            ]
        declared = sum(i.file_size for i in infos)
        if declared > settings.DATASET_MAX_TOTAL_BYTES:
            return [
                FileVerdict(
                    zip_name,
                    False,
                    f"This ZIP expands to {filesizeformat(declared)}, over the limit of "
                    f"{filesizeformat(settings.DATASET_MAX_TOTAL_BYTES)}: nothing was added.",
                )
            ]
        verdicts: list[FileVerdict] = []
        captions: dict[str, str] = {}
        caption_budget = settings.DATASET_ZIP_MAX_CAPTION_BYTES
        images: list[zipfile.ZipInfo] = []
        for info in infos:
            label = _member_label(zip_name, info.filename)
            base = info.filename.replace("\\", "/").rsplit("/", 1)[-1]
            if base.startswith(".") or info.filename.startswith("__MACOSX/"):
                continue  # Finder and editor droppings, not the user's photos
            if not _safe_member(info.filename):
                verdicts.append(FileVerdict(label, False, "Skipped: the path inside the ZIP is unsafe."))
            elif base.lower().endswith(".txt"):
                if info.file_size > _CAPTION_FILE_MAX or info.file_size > caption_budget:
                    verdicts.append(
                        FileVerdict(
                            label,
                            False,
                            f"Caption file skipped: it is {filesizeformat(info.file_size)}; "
                            f"a caption file may have at most {filesizeformat(_CAPTION_FILE_MAX)} "
                            f"and a ZIP {filesizeformat(settings.DATASET_ZIP_MAX_CAPTION_BYTES)} "
                            "of captions in all.",
                        )
                    )
                    continue
                data = _read_member(archive, info, _CAPTION_FILE_MAX)
                if data is not None:
                    caption_budget -= len(data)
                    captions[info.filename.rsplit(".", 1)[0]] = caption_file_decode(data)
            else:
                images.append(info)
        for info in images:
            label = _member_label(zip_name, info.filename)
            try:
                verdicts.append(_zip_image(dataset, archive, info, label, captions))
            except Exception:  # one member's failure never costs the others
                logger.exception("dataset %s: ZIP member %r failed", dataset.pk, label)
                verdicts.append(FileVerdict(label, False, _FAILED_MESSAGE))
        if not verdicts:
            verdicts.append(FileVerdict(zip_name, False, "This ZIP holds no photos."))
        return verdicts


def _zip_image(
    dataset: Dataset, archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, captions: dict[str, str]
) -> FileVerdict:
    if info.file_size > settings.DATASET_MAX_FILE_BYTES:
        return FileVerdict(
            label,
            False,
            f"Too large: {filesizeformat(info.file_size)}; the most per file is {filesizeformat(settings.DATASET_MAX_FILE_BYTES)}.",
        )
    if dataset.images.count() >= settings.DATASET_MAX_IMAGES:
        return FileVerdict(label, False, _full_message())  # not even read
    buffer = io.BytesIO()
    if not _copy_member(archive, info, buffer, settings.DATASET_MAX_FILE_BYTES):
        return FileVerdict(label, False, "Skipped: this entry is damaged or larger than its declared size.")
    caption = captions.get(info.filename.rsplit(".", 1)[0])
    notices: list[str] = []
    if caption is not None and len(caption) > CAPTION_MAX:
        notices.append(f"Its caption was cut to {CAPTION_MAX} characters (it had {len(caption):,}).")
    return _add_image(dataset, buffer.getvalue(), label, caption=caption, notices=notices)


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, out: IO[bytes], limit: int) -> bool:
    read = 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(256 * 1024):
                read += len(chunk)
                if read > limit or read > info.file_size:
                    return False
                out.write(chunk)
    except Exception:  # noqa: BLE001  (bad CRC, unsupported compression, encrypted entry, zlib errors)
        return False
    return True


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes | None:
    buffer = io.BytesIO()
    return buffer.getvalue() if _copy_member(archive, info, buffer, limit) else None


def dataset_image_delete(*, image: DatasetImage) -> None:
    _require_editable(image.dataset)
    names = [image.file_name, image.thumbnail_name]
    with transaction.atomic():
        image.delete()
        transaction.on_commit(lambda: _delete_files(names))


# --- The training ZIP -----------------------------------------------------------------------------
def _zip_members(dataset: Dataset) -> list[ZipMember]:
    trigger = dataset.training.trigger_word
    return [
        ZipMember(
            image_name=image.file_name,
            caption=caption_render(image.caption, trigger),
            crc32=image.crc32,
            size=image.byte_size,
        )
        for image in dataset.images.all()
    ]


def _fingerprint(members: list[ZipMember]) -> str:
    digest = hashlib.sha256()
    for member in members:
        digest.update(f"{member.image_name}\x00{member.caption}\x01".encode())
    return digest.hexdigest()


def dataset_build_zip(*, dataset_id: int) -> Dataset:
    """Build (or reuse) the training ZIP of a dataset; safe to call twice.

    The archive is streamed into the private storage; size and sha256 are recorded. If the
    images and captions have not changed since the last build, nothing is written. Raises
    DatasetError if the dataset has too few or too many photos.
    """
    dataset = Dataset.objects.select_related("training").get(pk=dataset_id)
    members = _zip_members(dataset)
    count = len(members)
    if not settings.DATASET_MIN_IMAGES <= count <= settings.DATASET_MAX_IMAGES:
        raise DatasetError(
            f"A dataset needs {settings.DATASET_MIN_IMAGES}-{settings.DATASET_MAX_IMAGES} photos; this one has {count}."
        )
    fingerprint = _fingerprint(members)
    if (
        dataset.zip_name
        and dataset.zip_fingerprint == fingerprint
        and storage.get_storage(PRIVATE).exists(dataset.zip_name)
    ):
        return dataset
    name = f"datasets/{dataset.training_id}/dataset-{secrets.token_hex(16)}.zip"
    try:
        result = zip_stream_to_storage(alias=PRIVATE, name=name, members=members)
    except Exception:
        _delete_files([name])  # never leave a half-written archive behind
        raise
    old = dataset.zip_name
    with transaction.atomic():
        Dataset.objects.filter(pk=dataset.pk).update(
            zip_name=name,
            zip_size=result.size,
            zip_crc32=result.crc32,
            zip_fingerprint=fingerprint,
            zip_built_at=timezone.now(),
        )
        if old and old != name:
            transaction.on_commit(lambda: _delete_files([old]))
    dataset.refresh_from_db()
    return dataset


# A ZIP is still needed while its training is queued or running, and while a failed training's retry
# would start at Replicate (training_retry goes back to the failed stage, and the Replicate stage reads
# the ZIP without building it). Any other training builds its ZIP again when it next starts.
def _zip_still_needed() -> Q:
    S = TrainingJob.Status
    return Q(training__status__in=ACTIVE_STATUSES) | Q(
        training__status=S.FAILED, training__failed_stage__in=(S.REPLICATE_TRAINING, S.HUGGINGFACE_UPLOAD)
    )


def _orphan_zips(older_than: datetime) -> list[str]:
    """ZIPs under datasets/ that no dataset names (a build cut short, an old one whose deletion
    failed), last modified before `older_than`; found through the storage API (local or S3)."""
    store = storage.get_storage(PRIVATE)
    named = set(Dataset.objects.exclude(zip_name="").values_list("zip_name", flat=True))
    try:
        folders, _ = store.listdir("datasets")
    except FileNotFoundError:  # local storage with no dataset yet
        return []
    found = []
    for folder in folders:
        _, files = store.listdir(f"datasets/{folder}")
        for file_name in files:
            name = f"datasets/{folder}/{file_name}"
            if not (file_name.startswith("dataset-") and file_name.endswith(".zip")) or name in named:
                continue
            if store.get_modified_time(name) < older_than:
                found.append(name)
    return sorted(found)


def dataset_zips_prune(*, older_than: datetime, dry_run: bool = False) -> list[str]:
    """Delete the training ZIPs built before `older_than` that no queued or running training needs,
    and orphaned ZIPs as old; returns their names (with `dry_run`, what would be deleted).

    Each dataset forgets its ZIP by compare-and-swap before the file goes: only if it still names
    that ZIP and its training has not started meanwhile. A training started after that builds a
    new ZIP (dataset_build_zip), so no run ever points at a deleted file.
    """
    candidates = list(
        Dataset.objects.exclude(zip_name="")
        .filter(zip_built_at__lt=older_than)
        .exclude(_zip_still_needed())
        .values_list("pk", "zip_name")
        .order_by("pk")
    )
    pruned = []
    for pk, name in candidates:
        if not dry_run:
            forgotten = (
                Dataset.objects.filter(pk=pk, zip_name=name)
                .exclude(_zip_still_needed())
                .update(zip_name="", zip_size=None, zip_crc32="", zip_fingerprint="", zip_built_at=None)
            )
            if not forgotten:
                continue
            _delete_files([name])
        pruned.append(name)
    for name in _orphan_zips(older_than):
        if not dry_run:
            if Dataset.objects.filter(zip_name=name).exists():  # named meanwhile by a finished build
                continue
            _delete_files([name])
        pruned.append(name)
    return pruned


def dataset_zip_url(*, dataset: Dataset, expires: int | None = None) -> str:
    """An expiring, unguessable URL of the built ZIP (for the trainer to download)."""
    if not dataset.zip_name:
        raise DatasetError("The dataset ZIP has not been built yet.")
    return storage.signed_url(alias=PRIVATE, name=dataset.zip_name, expires=expires)


# --- Duplicating a training ------------------------------------------------------------------------


def dataset_image_use_as_input(*, image: DatasetImage) -> InputImage:
    """Hand one prepared photo of a dataset to the generations app as an image to start from (image
    to image or inpainting with the LoRA it trained). The photo is copied: the dataset stays as it
    is, whatever becomes of the generation. Raises DatasetError if the photo cannot be read."""
    training = image.dataset.training
    try:
        data = b"".join(storage.file_iter(alias=PRIVATE, name=image.file_name))
    except IntegrationError:
        raise DatasetError("This photo could not be read from storage; try again in a moment.") from None
    try:
        return input_image_add(
            user=training.owner, data=data, label=f"{image.original_name}, a photo of {training.name}"
        )
    except GenerationError as exc:
        raise DatasetError(str(exc)) from None
