"""How the Replicate stand-in simulates runs: state from elapsed time, logs, files, webhooks.

A training's status is a function of the clock: `starting` until the dataset has been checked
(and at least a moment has passed), then `processing` with tqdm-style log lines appended as
steps go by, then `succeeded` (or `failed` / `canceled`). A background daemon thread per run
checks the dataset at start, registers the trained version and delivers the webhooks; it runs
inside the web server process, so it closes its own database connections when done.

Output files (weights tar, images) are not stored: they are rendered from the run's stored
facts when downloaded, like a CDN in front of a bucket.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import json
import logging
import math
import re
import secrets
import struct
import tarfile
import threading
import time
import urllib.parse
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any, NamedTuple

import httpx
from django.conf import settings
from django.db import IntegrityError, close_old_connections, connections
from django.utils import timezone
from PIL import Image

from sandbox.faults import fault_take
from sandbox.models import FaultKind
from sandbox.replicate import pictures, schemas, trainers
from sandbox.replicate.models import (
    SandboxModel,
    SandboxPrediction,
    SandboxTraining,
    SandboxVersion,
    VersionKind,
)

logger = logging.getLogger(__name__)

TRAINER = "ostris/flux-dev-lora-trainer"
GENERATOR = "black-forest-labs/flux-dev-lora"
UPSCALER = (
    "nightmareai/real-esrgan"  # its output is one PNG (sandbox/vendor/replicate/cog/real-esrgan.predict.json)
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")  # what ai-toolkit reads (its data_loader)
NSFW_ERROR = "NSFW content detected. Try running it again, or try a different prompt."
DOWNLOAD_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
MAX_DATASET_BYTES = 200 * 1024 * 1024
# The completed webhook is retried (Replicate: about a minute at most; here short, for tests).
WEBHOOK_ATTEMPTS = 4
WEBHOOK_BACKOFF_SECONDS = 0.2
WEBHOOK_KINDS = (
    FaultKind.DROP_WEBHOOK,
    FaultKind.DUPLICATE_WEBHOOK,
    FaultKind.REORDER_WEBHOOKS,
    FaultKind.BAD_SIGNATURE,
)
TERMINAL = ("succeeded", "failed", "canceled")


# --- Identifiers and built-in models -------------------------------------------------------------
def new_id() -> str:
    """A Replicate-style id: 26 lowercase base32 characters."""
    return base64.b32encode(secrets.token_bytes(20)).decode().lower().rstrip("=")[:26]


def fixed_version_id(label: str) -> str:
    return hashlib.sha256(f"fluxsite-sandbox:{label}".encode()).hexdigest()


def trained_version_id(training_id: str) -> str:
    return hashlib.sha256(f"fluxsite-sandbox-training:{training_id}".encode()).hexdigest()


def builtin_models_ensure() -> None:
    """The trainer, the base generator and the captioning models always exist (recreated if a test
    flushed the database); the captioners under their real version ids."""
    from sandbox.replicate import captioning

    for ref, kind, schema, version_id in (
        (TRAINER, VersionKind.TRAINER, schemas.openapi_schema(schemas.TRAINER, training=True), None),
        (GENERATOR, VersionKind.GENERATOR, schemas.openapi_schema(schemas.GENERATOR, training=False), None),
        (UPSCALER, VersionKind.GENERATOR, schemas.upscaler_openapi_schema(), None),
        *(
            (
                spec.ref,
                VersionKind.TRAINER,
                schemas.openapi_schema(spec.doc, training=True, predicts=spec.trained_doc),
                spec.version_id,
            )
            for spec in trainers.SPECS.values()
        ),
        *(
            (ref, VersionKind.CAPTIONER, captioning.openapi_schema(ref), captioning.version_id(ref))
            for ref in captioning.DOCS
        ),
    ):
        owner, name = ref.split("/")
        try:
            model, _ = SandboxModel.objects.get_or_create(
                owner=owner, name=name, defaults={"visibility": "public", "hardware": "gpu-h100"}
            )
            SandboxVersion.objects.get_or_create(
                version_id=version_id or fixed_version_id(ref),
                defaults={"model": model, "kind": kind, "openapi_schema": schema},
            )
        except IntegrityError:  # another request created it at the same moment
            pass


def rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def version_json(version: SandboxVersion) -> dict[str, Any]:
    return {
        "id": version.version_id,
        "created_at": rfc3339(version.created_at),
        "cog_version": "0.9.13",
        "openapi_schema": version.openapi_schema,
    }


def model_json(model: SandboxModel, base_url: str) -> dict[str, Any]:
    latest = model.versions.order_by("-created_at", "-id").first()
    return {
        "url": f"{base_url}/{model.owner}/{model.name}",
        "owner": model.owner,
        "name": model.name,
        "description": model.description or None,
        "visibility": model.visibility,
        "github_url": None,
        "paper_url": None,
        "license_url": None,
        "run_count": 0,
        "cover_image_url": None,
        "default_example": None,
        "latest_version": version_json(latest) if latest else None,
    }


# --- Trainings: state from the clock -------------------------------------------------------------
@dataclass(frozen=True)
class RunState:
    status: str
    started_at: datetime | None
    completed_at: datetime | None
    progress: float  # 0..1 of the training steps done
    error: str | None


class _NaturalEnd(NamedTuple):
    """How a run would end on its own: a RunState whose two times are both known."""

    status: str
    started_at: datetime
    completed_at: datetime
    progress: float
    error: str | None


def training_duration(steps: int) -> float:
    return max(2.0, float(settings.SANDBOX_TRAINING_SECONDS) * steps / 1000)


def training_state(training: SandboxTraining, now: datetime | None = None) -> RunState:
    now = now or timezone.now()
    start_delay = timedelta(seconds=min(0.5, training.duration_seconds * 0.15))
    span = timedelta(seconds=training.duration_seconds) - start_delay
    checked = training.dataset_checked_at
    started = max(training.created_at + start_delay, checked) if checked else None
    # When the run would end on its own, and how.
    if checked and training.dataset_error:
        natural: _NaturalEnd | None = _NaturalEnd("failed", checked, checked, 0.0, training.dataset_error)
    elif started and training.fail_midway:
        natural = _NaturalEnd(
            "failed",
            started,
            started + span / 2,
            0.5,
            "RuntimeError: CUDA error: an illegal "
            "memory access was encountered (sandbox fault: fail_training)",
        )
    elif started:
        natural = _NaturalEnd("succeeded", started, started + span, 1.0, None)
    else:
        natural = None
    canceled = training.canceled_at
    if canceled and (natural is None or canceled < natural.completed_at):
        started_then = started if started and started <= canceled else None
        return RunState("canceled", started_then, canceled, _fraction(canceled, started_then, span), None)
    if natural is None or now < natural.started_at:
        return RunState("starting", None, None, 0.0, None)
    if now < natural.completed_at:
        return RunState("processing", started, None, _fraction(now, started, span), None)
    return RunState(*natural)


def _fraction(now: datetime, started: datetime | None, span: timedelta) -> float:
    if started is None or span.total_seconds() <= 0:
        return 0.0
    return max(0.0, min(1.0, (now - started) / span))


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _bar(fraction: float, width: int = 10) -> str:
    """tqdm's bar: full blocks, one partial block, then spaces."""
    parts = " ▏▎▍▌▋▊▉"
    filled = fraction * width
    full = int(filled)
    if full >= width:
        return "█" * width
    partial = parts[int((filled - full) * 8)]
    return ("█" * full + partial + " " * width)[:width]


def progress_line(desc: str, n: int, total: int, seconds_per_it: float, postfix: str = "") -> str:
    fraction = n / total if total else 1.0
    elapsed = n * seconds_per_it
    remaining = (total - n) * seconds_per_it
    rate = f"{seconds_per_it:5.2f}s/it" if seconds_per_it >= 1 else f"{1 / seconds_per_it:5.2f}it/s"
    return (
        f"{desc}: {fraction * 100:3.0f}%|{_bar(fraction)}| {n}/{total} "
        f"[{_clock(elapsed)}<{_clock(remaining)}, {rate}{postfix}]"
    )


def training_logs(training: SandboxTraining, state: RunState) -> str:
    if state.status == "starting" or (state.started_at is None and not training.dataset_error):
        return ""
    if (spec := trainers.spec_for(training.trainer)) is not None:
        if training.dataset_error:
            return "\n".join(["Traceback (most recent call last):", f"  {training.dataset_error}", ""])
        return trainers.logs(
            spec,
            training_id=training.id,
            created_ts=int(training.created_at.timestamp()),
            params=schemas.with_defaults(training.input, spec.input_schema),
            images=len(training.dataset_images or []),
            captions=training.captions or {},
            progress=state.progress,
            status=state.status,
            error=state.error,
            bar=progress_line,
        )
    params = schemas.with_defaults(training.input, schemas.TRAINING_INPUT)
    images = training.dataset_images
    lines = [
        f"Downloading input_images from {training.input.get('input_images', '')[:60]}...",
        "Extracting input_images zip",
    ]
    if training.dataset_error:
        return "\n".join([*lines, "Traceback (most recent call last):", f"  {training.dataset_error}", ""])
    # The trainer's own lines (vendor/replicate/flux-fine-tuner-captions.md): extract_zip()'s
    # count of every extracted member, then Captioner.caption_images(), which runs only when
    # autocaption is on and some image has no .txt beside it.
    extracted = (training.captions or {}).get("__extracted__", len(images))
    lines.append(f"Extracted {extracted} files from zip to input_images")
    given = _given_captions(training)
    if params.get("autocaption") and any(PurePosixPath(n).stem not in given for n in images):
        for name in images:
            stem = PurePosixPath(name).stem
            if stem in given:
                lines.append(f"{PurePosixPath(name).name} is already captioned")
            else:
                lines.append(f"Caption for input_images/{name}: {training.captions.get(stem, '')}")
    lines.append("Starting train job")
    lines.append(progress_line("Loading checkpoint shards", 3, 3, 1.52))
    steps = int(params["steps"])
    lr = float(params["learning_rate"])
    ticks = 20
    reached = math.floor(state.progress * ticks + 1e-9)
    for tick in range(reached + 1):
        n = min(steps, round(steps * tick / ticks))
        loss = 0.45 * math.exp(-2.2 * n / max(steps, 1)) + 0.05 + 0.01 * math.sin(n)
        lines.append(
            progress_line("flux_train_replicate", n, steps, 1.01, f", lr: {lr:.1e} loss: {loss:.3e}")
        )
    if state.status == "succeeded":
        lines += ["Saved to output/flux_train_replicate/lora.safetensors", "Training completed"]
    if state.status == "failed" and state.error:
        lines += ["Traceback (most recent call last):", f"  {state.error}"]
    if state.status == "canceled":
        lines.append("Training canceled")
    return "\n".join(lines) + "\n"


def _given_captions(training: SandboxTraining) -> set[str]:
    return set((training.captions or {}).get("__given__", []))


def training_json(training: SandboxTraining, now: datetime | None = None) -> dict[str, Any]:
    """The training object exactly as GET /v1/trainings/{id} (and the webhooks) show it."""
    state = training_state(training, now)
    output = None
    metrics: dict[str, Any] = {}
    if state.status == "succeeded":
        output = {
            "version": f"{training.destination}:{trained_version_id(training.id)}",
            "weights": weights_url(training),
        }
    if state.status in TERMINAL and state.completed_at:
        metrics["total_time"] = round((state.completed_at - training.created_at).total_seconds(), 3)
        if state.started_at:
            metrics["predict_time"] = round((state.completed_at - state.started_at).total_seconds(), 3)
    # Only the fields of Replicate's training object (sandbox/vendor/replicate/objects.json): no
    # `destination` (the real API never sends it), no webhook settings, no `web` URL.
    return {
        "id": training.id,
        "model": training.trainer,
        "version": training.trainer_version,
        "status": state.status,
        "input": training.input,
        "output": output,
        "logs": training_logs(training, state),
        "error": state.error,
        "metrics": metrics,
        "created_at": rfc3339(training.created_at),
        "started_at": rfc3339(state.started_at),
        "completed_at": rfc3339(state.completed_at),
        "source": "api",
        "urls": {
            "get": f"{training.base_url}/v1/trainings/{training.id}",
            "cancel": f"{training.base_url}/v1/trainings/{training.id}/cancel",
        },
    }


def weights_url(training: SandboxTraining) -> str:
    spec = trainers.spec_for(training.trainer)
    if spec is not None and spec.output == "zip":
        name = trainers.job_name(training.id, int(training.created_at.timestamp()))
        return f"{training.base_url}/v1/files/trainings/{training.id}/{name}_trained.zip"
    return f"{training.base_url}/v1/files/trainings/{training.id}/trained_model.tar"


def training_steps(trainer: str, data: dict[str, Any]) -> int:
    """How many steps a training of `trainer` with input `data` runs (its own input and default)."""
    spec = trainers.spec_for(trainer)
    if spec is not None:
        return trainers.steps_of(spec, data)
    return int(data.get("steps") or schemas.TRAINING_INPUT["properties"]["steps"]["default"])


# --- Inputs given as URLs -----------------------------------------------------------------------------
class DownloadError(Exception):
    """An input file that could not be fetched; str() is the run's error."""


def download(url: str, *, what: str, limit: int) -> bytes:
    """Fetch an input given as a URL, as Cog does before running: http(s), streamed with a size cap
    (following redirects, as signed storage URLs may), or a data: URI. Raises DownloadError."""
    if url.startswith("data:"):
        header, comma, payload = url.partition(",")
        try:
            if not comma:
                raise ValueError
            data = (
                base64.b64decode(payload, validate=True)
                if header.endswith(";base64")
                else urllib.parse.unquote_to_bytes(payload)
            )
        except (ValueError, binascii.Error):
            raise DownloadError(f"Exception: {what} is not a valid data URI") from None
        if len(data) > limit:
            raise DownloadError(f"Exception: {what} is too large")
        return data
    if not url.startswith(("http://", "https://")):
        raise DownloadError(f"{what} must be an http(s) URL, got {url[:80]!r}")
    try:
        with httpx.stream("GET", url, timeout=DOWNLOAD_TIMEOUT, follow_redirects=True) as response:
            if response.status_code != 200:
                raise DownloadError(f"Exception: failed to download {what}: HTTP {response.status_code}")
            buffer = io.BytesIO()
            for chunk in response.iter_bytes():
                buffer.write(chunk)
                if buffer.tell() > limit:
                    raise DownloadError(f"Exception: {what} is too large")
    except httpx.HTTPError as exc:
        raise DownloadError(f"Exception: failed to download {what}: {type(exc).__name__}") from None
    return buffer.getvalue()


# --- Dataset check, like the trainer's own ----------------------------------------------------------
def dataset_check(training: SandboxTraining) -> tuple[str, list[str], dict[str, Any], list[str]]:
    """Download and inspect input_images; returns (error or "", image names, captions by stem,
    thumbnails of the first photos, base64 JPEG)."""
    if (spec := trainers.spec_for(training.trainer)) is not None:
        return _dataset_check_other(training, spec)
    params = schemas.with_defaults(training.input, schemas.TRAINING_INPUT)
    try:
        resolutions = [int(part) for part in str(params["resolution"]).split(",") if part.strip()]
        if not resolutions or any(r < 256 or r > 2048 for r in resolutions):
            raise ValueError
    except ValueError:
        return (
            f"invalid resolution {params['resolution']!r}: expected comma-separated sizes like 512,768,1024",
            [],
            {},
            [],
        )
    # `error` is str(exception), no type prefix (cog's worker: Done(error=True, error_detail=str(e))).
    # Quoted: train() and extract_zip() in replicate/flux-fine-tuner train.py @ 3dd14e3, and "no images
    # found in input_images" from ai-toolkit's data loader; the download and URL ones are ours.
    if not params.get("input_images"):
        return "input_images must be provided", [], {}, []
    url = str(params.get("input_images", ""))
    if not url.startswith(("http://", "https://")):
        return f"input_images must be an http(s) URL, got {url[:80]!r}", [], {}, []
    try:
        buffer = io.BytesIO(download(url, what="input_images", limit=MAX_DATASET_BYTES))
    except DownloadError as exc:
        return str(exc), [], {}, []
    try:
        archive = zipfile.ZipFile(buffer)
        names = [info.filename for info in archive.infolist() if not info.is_dir()]
    except zipfile.BadZipFile:
        return "input_images must be a zip file", [], {}, []
    visible = [
        n for n in names if not n.startswith("__MACOSX/") and not PurePosixPath(n).name.startswith(".")
    ]
    images = sorted(n for n in visible if PurePosixPath(n).suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        return "no images found in input_images", [], {}, []
    image_stems = {PurePosixPath(n).stem for n in images}
    # The .txt files as the trainer's input folder holds them: the bytes we sent, unchanged
    # ([trigger] is replaced by ai-toolkit when it reads a caption, not in the file).
    captions: dict[str, Any] = {}
    for name in visible:
        path = PurePosixPath(name)
        if path.suffix.lower() == ".txt" and path.stem in image_stems:
            captions[path.stem] = archive.read(name).decode("utf-8", errors="replace")
    given = sorted(captions)
    # Captioner.caption_images(): only the images without a .txt, and only with autocaption on;
    # with it off they get no caption file at all.
    if params.get("autocaption"):
        prefix = str(params.get("autocaption_prefix") or "")
        suffix = str(params.get("autocaption_suffix") or "")
        for name in images:
            stem = PurePosixPath(name).stem
            if stem not in captions:
                captions[stem] = autocaption_text(archive.read(name), prefix=prefix, suffix=suffix)
    captions["__given__"] = given
    # extract_zip() counts every member but __MACOSX/ and ._ ones, folders included.
    captions["__extracted__"] = sum(
        1 for info in archive.infolist() if not info.filename.startswith(("__MACOSX/", "._"))
    )
    return "", images, captions, pictures.dataset_photos(archive, images)


def _dataset_check_other(
    training: SandboxTraining, spec: trainers.TrainerSpec
) -> tuple[str, list[str], dict[str, Any], list[str]]:
    """dataset_check for a trainer of sandbox/replicate/trainers.py: download, open, read its way."""
    params = schemas.with_defaults(training.input, spec.input_schema)
    url = str(params.get(spec.dataset_input) or "")
    if not url.startswith(("http://", "https://")):
        return f"{spec.dataset_input} must be an http(s) URL, got {url[:80]!r}", [], {}, []
    try:
        buffer = io.BytesIO(download(url, what=spec.dataset_input, limit=MAX_DATASET_BYTES))
    except DownloadError as exc:
        return str(exc), [], {}, []
    try:
        archive = zipfile.ZipFile(buffer)
    except zipfile.BadZipFile:
        return "File is not a zip file", [], {}, []  # zipfile's own message (BadZipFile)
    error, images, captions = trainers.dataset_read(spec, params, archive)
    if error:
        return error, [], {}, []
    return "", images, captions, pictures.dataset_photos(archive, images)


_COLOURS = (
    ((200, 40, 40), "red"),
    ((40, 160, 60), "green"),
    ((40, 60, 200), "blue"),
    ((220, 200, 60), "yellow"),
    ((200, 120, 40), "warm orange"),
    ((128, 128, 128), "grey"),
    ((20, 20, 20), "dark"),
    ((235, 235, 235), "bright white"),
)


def autocaption_text(image: bytes, *, prefix: str, suffix: str) -> str:
    """A caption in the shape the trainer's LLaVA prompt asks for (four sentences: the kind of
    image first, then its contents and composition), told to start with the prefix and end with
    the suffix. The words are the sandbox's own: no recorded LLaVA output is in the vendor
    material, only its prompt (vendor/replicate/flux-fine-tuner-captions.md)."""
    try:
        with Image.open(io.BytesIO(image)) as picture:
            picture.draft("RGB", (64, 64))
            width, height = picture.size
            pixel = picture.convert("RGB").resize((1, 1)).getpixel((0, 0))
        mean: tuple[int, ...] = tuple(int(v) for v in pixel) if isinstance(pixel, tuple) else (128, 128, 128)
    except Exception:  # noqa: BLE001  (an undecodable image still gets a caption, as LLaVA would try)
        width, height, mean = 1, 1, (128, 128, 128)

    def distance(entry: tuple[tuple[int, int, int], str]) -> int:
        return sum((a - b) ** 2 for a, b in zip(entry[0], mean, strict=True))

    colour = min(_COLOURS, key=distance)[1]
    framing = "portrait" if height > width else "landscape" if width > height else "square"
    text = (
        f"Photo of a person in a {colour} setting, {framing} composition. "
        "The subject stands in the center of the frame, facing the camera with a relaxed expression. "
        f"Soft natural lighting, shallow depth of field, a plain {colour} background. "
        "Sharp focus on the face, realistic skin texture, muted colors."
    )
    if prefix:
        text = f"{prefix.rstrip()} {text[0].lower()}{text[1:]}"
    if suffix:
        text = f"{text.rstrip('.')}{suffix if suffix.startswith((' ', ',')) else ' ' + suffix}"
    return text


# --- Output files ----------------------------------------------------------------------------------
def safetensors_bytes(*, rank: int, seed: str) -> bytes:
    """A small but valid safetensors file with a few LoRA A/B tensors (F32, little endian)."""
    rank = max(1, min(int(rank), 16))  # real ranks go to 128: keep the sandbox file small
    features = 64
    tensors: list[tuple[str, list[int]]] = []
    for block in range(2):
        base = f"transformer.single_transformer_blocks.{block}.attn.to_q"
        tensors.append((f"{base}.lora_A.weight", [rank, features]))
        tensors.append((f"{base}.lora_B.weight", [features, rank]))
    # The training travels with its weights (to Hugging Face and back into lora_weights), so a
    # prediction that loads them can draw with that training's photos.
    header: dict[str, Any] = {"__metadata__": {"format": "pt", "sandbox": "true", "sandbox_training": seed}}
    blobs: list[bytes] = []
    offset = 0
    digest = hashlib.sha256(seed.encode()).digest()
    for name, shape in tensors:
        count = shape[0] * shape[1]
        values = [((digest[i % 32] / 255.0) - 0.5) * 0.02 for i in range(count)]
        blob = struct.pack(f"<{count}f", *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)  # the format pads the header to 8 bytes
    return struct.pack("<Q", len(header_bytes)) + header_bytes + b"".join(blobs)


def weights_file(training: SandboxTraining) -> tuple[bytes, str, str]:
    """(bytes, content type, file name) of a succeeded training's output weights."""
    spec = trainers.spec_for(training.trainer)
    if spec is not None and spec.output == "zip":
        params = schemas.with_defaults(training.input, spec.input_schema)
        data = trainers.weights_zip(
            training_id=training.id,
            params=params,
            images=len(training.dataset_images or []),
            captions=training.captions or {},
            safetensors=safetensors_bytes(rank=int(params.get("lora_rank") or 64), seed=training.id),
        )
        return data, "application/zip", weights_url(training).rsplit("/", 1)[-1]
    return weights_tar(training), "application/x-tar", "trained_model.tar"


def weights_tar(training: SandboxTraining) -> bytes:
    """The uncompressed tar a real training outputs (fast-flux-trainer's too: assumed, see
    sandbox/replicate/trainers.py)."""
    raw = dict(training.input)
    if (spec := trainers.spec_for(training.trainer)) is not None:
        raw = {"trigger_word": raw.get("trigger_word") or "TOK", "steps": trainers.steps_of(spec, raw)}
    params = schemas.with_defaults(raw, schemas.TRAINING_INPUT)
    root = "output/flux_train_replicate"
    config = (
        "job: extension\nconfig:\n  name: flux_train_replicate\n  process:\n  - type: sd_trainer\n"
        f"    trigger_word: {params['trigger_word']}\n    network:\n      type: lora\n"
        f"      linear: {params['lora_rank']}\n      linear_alpha: {params['lora_rank']}\n"
        f"    train:\n      batch_size: {params['batch_size']}\n      steps: {params['steps']}\n"
        f"      lr: {params['learning_rate']}\n      optimizer: {params['optimizer']}\n"
        f"    datasets:\n    - caption_dropout_rate: {params['caption_dropout_rate']}\n"
        f"      resolution: [{params['resolution']}]\n    model:\n      name_or_path: black-forest-labs/FLUX.1-dev\n"
    )
    files = {
        f"{root}/lora.safetensors": safetensors_bytes(rank=params["lora_rank"], seed=training.id),
        f"{root}/config.yaml": config.encode(),
    }
    # train() copies every .txt of its input folder (ours and the ones autocaption wrote) into
    # captions/ before tarring the job folder (vendor/replicate/flux-fine-tuner-captions.md).
    for stem, text in sorted((training.captions or {}).items()):
        if not stem.startswith("__"):
            files[f"{root}/captions/{PurePosixPath(stem).name}.txt"] = str(text).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:  # "w": no compression, like the real output
        # `tar -cvf … output/flux_train_replicate` stores the folders too; captions/ is always made.
        for folder in (root, f"{root}/captions"):
            entry = tarfile.TarInfo(folder)
            entry.type = tarfile.DIRTYPE
            entry.mode = 0o755
            entry.mtime = int(training.created_at.timestamp())
            tar.addfile(entry)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(training.created_at.timestamp())
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


ASPECT_SIZES = {
    "1:1": (1, 1),
    "16:9": (16, 9),
    "21:9": (21, 9),
    "3:2": (3, 2),
    "2:3": (2, 3),
    "4:5": (4, 5),
    "5:4": (5, 4),
    "3:4": (3, 4),
    "4:3": (4, 3),
    "9:16": (9, 16),
    "9:21": (9, 21),
}


def image_size(aspect_ratio: str, long_side: int = 512) -> tuple[int, int]:
    w, h = ASPECT_SIZES.get(aspect_ratio, (1, 1))
    scale = long_side / max(w, h)
    return max(16, round(w * scale / 16) * 16), max(16, round(h * scale / 16) * 16)


def prediction_seed(prediction: SandboxPrediction) -> int:
    """The seed the run uses: the one given, or (for none or a negative one) a random 16-bit one as
    predict.py draws it (`int.from_bytes(os.urandom(2), "big")`), here fixed by the prediction id."""
    seed = prediction.input.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0:
        return seed
    return int.from_bytes(hashlib.sha256(f"seed:{prediction.id}".encode()).digest()[:2], "big")


# Where a LoRA can come from (the lora_weights / extra_lora descriptions in vendor/replicate/cog/):
# a trained_model.tar URL of this stand-in, huggingface.co/<owner>/<name>[/<file>.safetensors],
# or a Replicate model <owner>/<name>[/<version>].
_TAR_URL = re.compile(
    r"/v1/files/trainings/(?P<id>[a-z0-9]+)/(?:trained_model\.tar|qwen_lora_\d+_trained\.zip)(?:\?|$)"
)
_HF_REF = re.compile(
    r"^(?:https?://)?(?:www\.)?huggingface\.co/(?P<ns>[\w.-]+)/(?P<name>[\w.-]+)(?:/(?:resolve|blob)/[\w.-]+)?"
    r"(?:/(?P<file>.+\.safetensors))?/?$"
)
_MODEL_REF = re.compile(r"^(?P<owner>[\w.-]+)/(?P<name>[\w.-]+)(?:[/:](?P<version>[0-9a-f]{64}))?$")


def lora_training_id(reference: str) -> str:
    """The sandbox training behind a LoRA reference, or "" when it names none the sandbox knows (a
    real predictor would download it; here its pictures are the base model's)."""
    reference = reference.strip()
    if match := _TAR_URL.search(reference):
        return match["id"]
    if match := _HF_REF.match(reference):
        return _hub_training_id(match["ns"], match["name"], match["file"])
    if match := _MODEL_REF.match(reference):
        versions = SandboxVersion.objects.filter(
            model__owner=match["owner"], model__name=match["name"], kind=VersionKind.LORA
        )
        if match["version"]:
            versions = versions.filter(version_id=match["version"])
        version = versions.order_by("-created_at", "-id").first()
        return version.training_id if version else ""
    return ""


def _hub_training_id(namespace: str, name: str, file: str | None) -> str:
    """Read the safetensors header of a repo on the Hub stand-in (its `main`) for the training."""
    from sandbox.huggingface import hub
    from sandbox.huggingface.models import HubFile

    repo = hub.repo_get(namespace, name)
    if repo is None:
        return ""
    files = HubFile.objects.filter(commit__repo=repo, commit__oid=repo.head_oid)
    entry = (
        files.filter(path=file).first()
        if file
        else files.filter(path="lora.safetensors").first()
        or files.filter(path__endswith=".safetensors").first()
    )
    if entry is None:
        return ""
    try:
        with hub.blob_path(entry.sha256).open("rb") as blob:
            start = blob.read(8)
            if len(start) < 8:
                return ""
            return pictures.safetensors_training(
                start + blob.read(min(struct.unpack("<Q", start)[0], 1 << 20))
            )
    except OSError:
        return ""


def _version_trainer(version: SandboxVersion) -> str:
    return (
        SandboxTraining.objects.filter(pk=version.training_id).values_list("trainer", flat=True).first() or ""
    )


def _lora(training_id: str, scale: Any) -> pictures.Lora | None:
    if not training_id:
        return None
    photos = SandboxTraining.objects.filter(pk=training_id).values_list("photos", flat=True).first()
    return pictures.Lora(key=training_id, photos=tuple(photos or ()), scale=float(scale))


def prediction_loras(prediction: SandboxPrediction) -> list[pictures.Lora]:
    """The LoRAs a run loads, with their scales: a trained version's own weights (or
    replicate_weights), the base generator's lora_weights, and extra_lora."""
    params = prediction.input
    version = SandboxVersion.objects.filter(version_id=prediction.version).first()
    if version is not None and version.kind == VersionKind.LORA:
        main = (
            lora_training_id(str(params["replicate_weights"]))
            if params.get("replicate_weights")
            else version.training_id
        )
        # A Qwen trained version's predict.py applies a LoRA only when given replicate_weights
        # (qwen-image-lora-trainer.trained-version.predict.json): without, the base model's pictures.
        if not params.get("replicate_weights") and _version_trainer(version) == trainers.QWEN:
            main = ""
    else:
        main = lora_training_id(str(params.get("lora_weights") or ""))
    loras = [_lora(main, params.get("lora_scale", 1.0))]
    if params.get("extra_lora"):
        loras.append(_lora(lora_training_id(str(params["extra_lora"])), params.get("extra_lora_scale", 1.0)))
    return [lora for lora in loras if lora is not None]


MAX_INPUT_IMAGE_BYTES = 20 * 1024 * 1024


def prediction_inputs_load(
    input_data: dict[str, Any], *, accepts_mask: bool
) -> tuple[str, bytes | None, bytes | None]:
    """Fetch and open `image` (and `mask`, for a predictor that takes one) as Cog and predict.py do
    before generating. Returns (error or "", image PNG, mask PNG), the PNGs at the output size.
    The decode error is PIL's; a download error's wording is the sandbox's own (no recorded Cog
    message for an input URL that fails), as for input_images."""
    url = str(input_data.get("image") or "")
    if not url:
        return "", None, None
    try:
        image = pictures.input_image_load(
            download(url, what="image", limit=MAX_INPUT_IMAGE_BYTES), name=pictures.input_name(url)
        )
        mask = None
        mask_url = str(input_data.get("mask") or "") if accepts_mask else ""
        if mask_url:
            mask = pictures.mask_load(
                download(mask_url, what="mask", limit=MAX_INPUT_IMAGE_BYTES),
                name=pictures.input_name(mask_url),
                size=image.size,
            )
    except (DownloadError, pictures.InputImageError) as exc:
        return str(exc), None, None
    return "", pictures.png_bytes(image), pictures.png_bytes(mask) if mask is not None else None


def prediction_size(prediction: SandboxPrediction) -> tuple[int, int]:
    params = prediction.input
    if params.get("aspect_ratio") == "custom" and params.get("width") and params.get("height"):
        return pictures.fit_size(int(params["width"]), int(params["height"]))
    return image_size(params.get("aspect_ratio") or "1:1")


def prediction_image(prediction: SandboxPrediction, index: int) -> tuple[bytes, str]:
    """Output `index` of a run, drawn from its inputs (see sandbox.replicate.pictures); the upscaler's
    is its input image, enlarged."""
    if prediction.model == UPSCALER:
        return upscaled_image(prediction)
    params = prediction.input
    image = pictures.picture_load(bytes(prediction.input_image)) if prediction.input_image else None
    mask = pictures.picture_load(bytes(prediction.input_mask)) if prediction.input_mask else None
    return pictures.render(
        prompt=str(params.get("prompt", "")),
        seed=prediction_seed(prediction),
        index=index,
        size=prediction_size(prediction),
        loras=prediction_loras(prediction),
        image=image,
        mask=mask,
        prompt_strength=float(params.get("prompt_strength", 0.8)),
        output_format=params.get("output_format") or "webp",
        output_quality=int(params.get("output_quality") if params.get("output_quality") is not None else 80),
    )


def output_extension(prediction: SandboxPrediction) -> str:
    """The extension of a prediction's outputs: the upscaler always writes output.png."""
    if prediction.model == UPSCALER:
        return "png"
    return prediction.input.get("output_format") or "webp"


def upscaled_image(prediction: SandboxPrediction) -> tuple[bytes, str]:
    """The upscaler's output: its input image fetched from the URL it was given and resized by
    `scale` (Real-ESRGAN's outscale), as a PNG. An input that cannot be fetched or read fails
    the way the predictor would not: here it yields a grey square, so the run still finishes."""
    scale = float(prediction.input.get("scale") or 4)
    try:
        if prediction.input_image:  # fetched when the run was created, as every `image` input is
            data = bytes(prediction.input_image)
        else:
            response = httpx.get(str(prediction.input.get("image", "")), timeout=DOWNLOAD_TIMEOUT)
            response.raise_for_status()
            data = response.content
        source: Image.Image = Image.open(io.BytesIO(data))
        source.load()
    except (httpx.HTTPError, OSError, ValueError):
        source = Image.new("RGB", (64, 64), (128, 128, 128))
    size = (max(1, round(source.width * scale)), max(1, round(source.height * scale)))
    out = io.BytesIO()
    source.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(out, format="PNG")
    return out.getvalue(), "image/png"


# --- Predictions ------------------------------------------------------------------------------------
def prediction_state(prediction: SandboxPrediction, now: datetime | None = None) -> RunState:
    now = now or timezone.now()
    start_delay = timedelta(seconds=min(0.2, prediction.duration_seconds * 0.2))
    started = prediction.created_at + start_delay
    finish = prediction.created_at + timedelta(seconds=prediction.duration_seconds)
    if prediction.canceled_at and prediction.canceled_at < finish:
        started_then = started if started <= prediction.canceled_at else None
        return RunState("canceled", started_then, prediction.canceled_at, 0.0, None)
    if now < started:
        return RunState("starting", None, None, 0.0, None)
    if now < finish:
        return RunState("processing", started, None, (now - started) / (finish - started), None)
    if prediction.error:
        return RunState("failed", started, finish, 1.0, prediction.error)
    return RunState("succeeded", started, finish, 1.0, None)


def prediction_json(prediction: SandboxPrediction, now: datetime | None = None) -> dict[str, Any]:
    state = prediction_state(prediction, now)
    fmt = output_extension(prediction)
    output: Any = None
    if state.status == "succeeded" and prediction.text_output is not None:
        output = prediction.text_output
    elif state.status == "succeeded" and prediction.model == UPSCALER:  # `-> Path`: one uri
        output = f"{prediction.base_url}/v1/files/predictions/{prediction.id}/out-0.png"
    elif state.status == "succeeded":
        count = int(prediction.input.get("num_outputs") or 1)
        output = [
            f"{prediction.base_url}/v1/files/predictions/{prediction.id}/out-{i}.{fmt}" for i in range(count)
        ]
    logs = ""
    if state.started_at:
        steps = int(prediction.input.get("num_inference_steps") or 28)
        bar = progress_line("", round(steps * state.progress), steps, 0.05).removeprefix(": ")
        logs = f"Using seed: {prediction_seed(prediction)}\n{bar}\n"
        if state.status == "failed":
            logs += f"{state.error}\n"
    metrics: dict[str, Any] = {}
    if state.completed_at and state.started_at:
        metrics = {
            "predict_time": round((state.completed_at - state.started_at).total_seconds(), 3),
            "total_time": round((state.completed_at - prediction.created_at).total_seconds(), 3),
        }
    return {
        "id": prediction.id,
        "model": prediction.model,
        "version": prediction.version,
        "status": state.status,
        "input": prediction.input,
        "output": output,
        "logs": logs,
        "error": state.error,
        "metrics": metrics,
        "created_at": rfc3339(prediction.created_at),
        "started_at": rfc3339(state.started_at),
        # The fields of Replicate's Prediction (sandbox/vendor/replicate/objects.json): no `source`.
        "completed_at": rfc3339(state.completed_at),
        "data_removed": False,
        "urls": {
            "get": f"{prediction.base_url}/v1/predictions/{prediction.id}",
            "cancel": f"{prediction.base_url}/v1/predictions/{prediction.id}/cancel",
            "web": f"{prediction.base_url}/p/{prediction.id}",
        },
    }


# --- Webhooks ---------------------------------------------------------------------------------------
def webhook_signature(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks: v1,base64(HMAC-SHA256(base64decode(secret after whsec_), "{id}.{ts}.{body}"))."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def _deliver(url: str, payload: dict[str, Any], *, msg_id: str, retry: bool, bad_signature: bool) -> bool:
    body = json.dumps(payload).encode()
    secret = settings.REPLICATE_WEBHOOK_SECRET
    if bad_signature:
        secret = "whsec_" + base64.b64encode(b"not-the-real-signing-key-00000").decode()
    attempts = WEBHOOK_ATTEMPTS if retry else 1
    for attempt in range(attempts):
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Replicate-Webhooks/1.0 (sandbox)",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": webhook_signature(
                secret=secret, msg_id=msg_id, timestamp=timestamp, body=body
            ),
        }
        try:
            response = httpx.post(url, content=body, headers=headers, timeout=10.0, follow_redirects=False)
            if 200 <= response.status_code < 300:
                return True
            logger.info("sandbox replicate webhook %s answered %s", msg_id, response.status_code)
        except httpx.HTTPError as exc:
            logger.info("sandbox replicate webhook %s failed: %r", msg_id, exc)
        if attempt + 1 < attempts:
            connections.close_all()  # hold no database session while waiting to retry
            time.sleep(WEBHOOK_BACKOFF_SECONDS * (2**attempt))
    return False


@dataclass
class _Outbox:
    """Webhooks of one run, with the faults armed for them."""

    url: str
    events: list[str]
    held_start: tuple[dict[str, Any], str, bool] | None = None

    def send(self, event: str, payload: dict[str, Any]) -> None:
        if not self.url or (self.events and event not in self.events):
            return
        delay = float(settings.SANDBOX_WEBHOOK_DELAY_SECONDS)
        if delay:
            time.sleep(delay)
        fault = fault_take(service="replicate", operation=f"webhook.{event}", kinds=WEBHOOK_KINDS)
        if fault is None and event == "start":
            # A reorder armed on the completed webhook also means: hold the start one back.
            fault = fault_take(
                service="replicate", operation="webhook.completed", kinds=(FaultKind.REORDER_WEBHOOKS,)
            )
        kind = fault.kind if fault else None
        msg_id = "msg_" + secrets.token_urlsafe(18)
        bad = kind == FaultKind.BAD_SIGNATURE
        if kind == FaultKind.DROP_WEBHOOK:
            return
        if kind == FaultKind.REORDER_WEBHOOKS and event == "start":
            self.held_start = (payload, msg_id, bad)
            return
        _deliver(self.url, payload, msg_id=msg_id, retry=event == "completed", bad_signature=bad)
        if kind == FaultKind.DUPLICATE_WEBHOOK:
            _deliver(self.url, payload, msg_id=msg_id, retry=event == "completed", bad_signature=bad)
        if event == "completed" and self.held_start:
            held, held_id, held_bad = self.held_start
            self.held_start = None
            _deliver(self.url, held, msg_id=held_id, retry=False, bad_signature=held_bad)


# --- Background runners -----------------------------------------------------------------------------
def _in_thread(target, *args: Any) -> None:
    def run() -> None:
        close_old_connections()
        try:
            target(*args)
        except Exception:
            logger.exception("sandbox replicate runner failed")
        finally:
            connections.close_all()

    threading.Thread(target=run, daemon=True, name=f"sandbox-replicate-{args[0]}").start()


def training_runner_start(training_id: str) -> None:
    _in_thread(_training_run, training_id)


def _training_run(training_id: str) -> None:
    training = SandboxTraining.objects.filter(pk=training_id).first()
    if training is None:
        return
    outbox = _Outbox(training.webhook, list(training.webhook_events_filter or []))
    outbox.send("start", training_json(training))
    error, images, captions, photos = dataset_check(training)
    SandboxTraining.objects.filter(pk=training_id).update(
        dataset_checked_at=timezone.now(),
        dataset_error=error,
        dataset_images=images,
        captions=captions,
        photos=photos,
    )
    deadline = time.monotonic() + training.duration_seconds + 120
    last_logs = ""
    while time.monotonic() < deadline:
        training = SandboxTraining.objects.defer("photos").filter(pk=training_id).first()
        if training is None:  # deleted (a test flushed the database)
            return
        payload = training_json(training)
        if payload["status"] in TERMINAL:
            if payload["status"] == "succeeded":
                trained_version_register(training)
                outbox.send("output", payload)
            outbox.send("completed", payload)
            return
        if payload["logs"] != last_logs and "logs" in outbox.events:
            last_logs = payload["logs"]
            outbox.send("logs", payload)
        # Hold no database session while waiting: a test's teardown (or an operator) may need to
        # drop the database, and PostgreSQL refuses while a session stays open.
        connections.close_all()
        time.sleep(0.2)


def trained_version_register(training: SandboxTraining) -> SandboxVersion | None:
    """Succeeding registers a version on the destination, so predictions can run it."""
    owner, _, name = training.destination.partition("/")
    model = SandboxModel.objects.filter(owner=owner, name=name).first()
    if model is None:
        return None
    version: SandboxVersion | None
    try:
        version, _ = SandboxVersion.objects.get_or_create(
            version_id=trained_version_id(training.id),
            defaults={
                "model": model,
                "kind": VersionKind.LORA,
                "training_id": training.id,
                "openapi_schema": schemas.openapi_schema(
                    (
                        spec.trained_doc
                        if (spec := trainers.spec_for(training.trainer))
                        else schemas.TRAINED_VERSION
                    ),
                    training=False,
                ),
                "created_at": training_state(training).completed_at or timezone.now(),
            },
        )
    except IntegrityError:
        version = SandboxVersion.objects.filter(version_id=trained_version_id(training.id)).first()
    return version


def prediction_runner_start(prediction_id: str) -> None:
    _in_thread(_prediction_run, prediction_id)


def _prediction_run(prediction_id: str) -> None:
    prediction = SandboxPrediction.objects.filter(pk=prediction_id).first()
    if prediction is None or not prediction.webhook:
        return  # nothing to do in the background: the state is derived from the clock
    outbox = _Outbox(prediction.webhook, list(prediction.webhook_events_filter or []))
    outbox.send("start", prediction_json(prediction))
    deadline = time.monotonic() + prediction.duration_seconds + 60
    while time.monotonic() < deadline:
        prediction = SandboxPrediction.objects.filter(pk=prediction_id).first()
        if prediction is None:
            return
        payload = prediction_json(prediction)
        if payload["status"] in TERMINAL:
            if payload["status"] == "succeeded":
                outbox.send("output", payload)
            outbox.send("completed", payload)
            return
        connections.close_all()  # no open session while waiting (see _training_run)
        time.sleep(0.1)
