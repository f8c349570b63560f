"""The stand-in's trainers other than ostris/flux-dev-lora-trainer (issue 18), from vendor data.

Each entry names its train() schema under sandbox/vendor/replicate/cog/ (with `_source` and
`_source.gaps`), the version id it is served under (the one callers pin, from the vendor
material), the input that takes the dataset and the one that counts steps, how it reads the
dataset, what its logs look like and what it outputs. simulation.py asks `spec_for(trainer)` and
keeps its own code for the FLUX.1-dev trainer unchanged.

What is vendor truth and what is ours:
- qwen/qwen-image-lora-trainer (source, train.py @ 09386ee7): the dataset rules (top-level
  .jpg/.jpeg/.png/.webp, __MACOSX/ and ._ skipped, a .txt per image else `default_caption`
  verbatim, no autocaption), the log lines (`_logs_sample`: assembled from the code, not a recorded
  run) and the output zip (lora.safetensors, settings.txt, config.yaml). The text of the error for
  a zip without images is OURS: train() does not refuse it and the later failure was not recorded.
- replicate/fast-flux-trainer (Replicate's pages only): the inputs and the .txt captions rule.
  Its logs, its error texts and its output format are NOT in the vendor material: the stand-in
  prints flux-fine-tuner's lines and outputs flux-fine-tuner's tar, and says so here.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from sandbox.replicate import schemas

FAST_FLUX = "replicate/fast-flux-trainer"
QWEN = "qwen/qwen-image-lora-trainer"


@dataclass(frozen=True)
class TrainerSpec:
    ref: str
    doc: dict[str, Any]  # the train() schema file
    trained_doc: dict[str, Any]  # what its trained versions predict with
    version_id: str
    dataset_input: str
    steps_input: str
    image_suffixes: tuple[str, ...]
    output: str  # "tar" or "zip"

    @property
    def input_schema(self) -> dict[str, Any]:
        return self.doc["input"]


SPECS: dict[str, TrainerSpec] = {
    FAST_FLUX: TrainerSpec(
        ref=FAST_FLUX,
        doc=schemas.FAST_FLUX_TRAINER,
        # "exactly flux-fine-tuner's trained-version predictor" (docs/trainers-research.md)
        trained_doc=schemas.TRAINED_VERSION,
        # The model README's own API example (and several public callers): fast-flux-trainer.train.json.
        version_id="8b10794665aed907bb98a1a5324cd1d3a8bea0e9b31e65210967fb9c9e2e08ed",
        dataset_input="input_images",
        steps_input="training_steps",
        image_suffixes=(".png", ".jpg", ".jpeg", ".webp"),  # the guide: WebP/JPG/PNG
        output="tar",  # NOT KNOWN: flux-fine-tuner's tar, assumed
    ),
    QWEN: TrainerSpec(
        ref=QWEN,
        doc=schemas.QWEN_TRAINER,
        trained_doc=schemas.QWEN_TRAINED_VERSION,
        version_id=schemas.QWEN_TRAINER["_source"]["live_version_seen"].split()[0],
        dataset_input="dataset",
        steps_input="steps",
        image_suffixes=(".jpg", ".jpeg", ".png", ".webp"),  # extract_dataset(), either case
        output="zip",
    ),
}


def spec_for(trainer: str) -> TrainerSpec | None:
    """The entry of a trainer "owner/name", or None for ostris/flux-dev-lora-trainer."""
    return SPECS.get(trainer)


def steps_of(spec: TrainerSpec, data: dict[str, Any]) -> int:
    params = schemas.with_defaults(data, spec.input_schema)
    # fast-flux-trainer publishes no default: the guide's 1000 (kept in its description).
    return int(params.get(spec.steps_input) or 1000)


def job_name(training_id: str, created_ts: int) -> str:
    """The Qwen trainer's job name: `qwen_lora_<unix time>` (create_training_config())."""
    return f"qwen_lora_{created_ts}"


def dataset_read(
    spec: TrainerSpec, params: dict[str, Any], archive: zipfile.ZipFile
) -> tuple[str, list[str], dict[str, Any]]:
    """(error or "", image names, captions by stem) as this trainer reads its zip."""
    names = [info.filename for info in archive.infolist() if not info.is_dir()]
    visible = [
        n for n in names if not n.startswith("__MACOSX/") and not PurePosixPath(n).name.startswith("._")
    ]
    if spec.ref == QWEN:
        # extract_dataset(): a single wrapping folder is flattened, then only the top level is read.
        tops = {PurePosixPath(n).parts[0] for n in visible if len(PurePosixPath(n).parts) > 1}
        if len(tops) == 1 and all(len(PurePosixPath(n).parts) > 1 for n in visible):
            prefix = next(iter(tops)) + "/"
            visible = [n for n in visible if n.startswith(prefix)]
            level = 2
        else:
            level = 1
        visible = [n for n in visible if len(PurePosixPath(n).parts) == level]
    images = sorted(n for n in visible if PurePosixPath(n).suffix.lower() in spec.image_suffixes)
    if not images:
        # OURS (see the module docstring): the real failure for this case was not recorded.
        return f"no images found in {spec.dataset_input}", [], {}
    stems = {PurePosixPath(n).stem for n in images}
    captions: dict[str, Any] = {}
    for name in visible:
        path = PurePosixPath(name)
        if path.suffix.lower() == ".txt" and path.stem in stems:
            captions[path.stem] = archive.read(name).decode("utf-8", errors="replace")
    given = sorted(captions)
    for name in images:
        stem = PurePosixPath(name).stem
        if stem in captions:
            continue
        if spec.ref == QWEN:
            captions[stem] = str(params.get("default_caption") or "")  # verbatim, `<>` not substituted
        else:
            # The README: images without a .txt are autocaptioned with "captions which contain your
            # trigger word"; the captioner is not named, so the text is ours.
            captions[stem] = f"a photo of {params.get('trigger_word', '')}"
    captions["__given__"] = given
    captions["__created__"] = len(images) - len(given)
    return "", images, captions


def logs(
    spec: TrainerSpec,
    *,
    training_id: str,
    created_ts: int,
    params: dict[str, Any],
    images: int,
    captions: dict[str, Any],
    progress: float,
    status: str,
    error: str | None,
    bar: Any,
) -> str:
    """The log of a run of this trainer so far. `bar(desc, n, total, s_per_it, postfix)` is tqdm's."""
    steps = steps_of(spec, params)
    ticks = 20
    reached = int(progress * ticks + 1e-9)
    lines: list[str] = []
    if spec.ref == QWEN:
        name = job_name(training_id, created_ts)
        given = len(captions.get("__given__", []))
        lr = float(params.get("learning_rate") or 2e-4)
        lines += [
            f"INFO:__main__:Starting training: {name}",
            f"INFO:__main__:Extracted {images} images, {given} existing captions, {images - given} created",
            f"INFO:__main__:Training: {steps} steps, rank {params.get('lora_rank')}, {params.get('optimizer')}, "
            f"batch {params.get('batch_size')}",
            f"INFO:__main__:Starting training: {name}",
        ]
        label, rate = name, 0.75
    else:
        # NOT KNOWN for fast-flux-trainer: flux-fine-tuner's lines, as the module docstring says.
        lines += ["Extracting input_images zip", "Starting train job"]
        label, rate, lr = "flux_train_replicate", 0.12, 4e-4
    for tick in range(reached + 1):
        n = min(steps, round(steps * tick / ticks))
        loss = 0.45 * 2.718281828 ** (-2.2 * n / max(steps, 1)) + 0.05
        lines.append(bar(label, n, steps, rate, f", lr: {lr:.1e} loss: {loss:.3e}"))
    if status == "succeeded":
        if spec.ref == QWEN:
            name = job_name(training_id, created_ts)
            lines += [
                "INFO:__main__:Training completed",
                f"INFO:__main__:Created /tmp/{name}_trained.zip (0.1MB)",
            ]
        else:
            lines += ["Training completed"]
    if status == "failed" and error:
        lines += ["Traceback (most recent call last):", f"  {error}"]
    if status == "canceled":
        lines.append("Training canceled")
    return "\n".join(lines) + "\n"


def weights_zip(
    *, training_id: str, params: dict[str, Any], images: int, captions: dict[str, Any], safetensors: bytes
) -> bytes:
    """The Qwen trainer's output zip (create_output_archive()): lora.safetensors, settings.txt and
    config.yaml at the top level; no captions."""
    given = len(captions.get("__given__", []))
    settings_txt = (
        f"steps: {params.get('steps')}\nlearning_rate: {params.get('learning_rate')}\n"
        f"lora_rank: {params.get('lora_rank')}\nbatch_size: {params.get('batch_size')}\n"
        f"optimizer: {params.get('optimizer')}\nimages: {images}\ncaptions: {given}\n"
    )
    config = (
        "job: extension\nconfig:\n  process:\n  - type: sd_trainer\n    network:\n      type: lora\n"
        f"      linear: {params.get('lora_rank')}\n      linear_alpha: {params.get('lora_rank')}\n"
        "    model:\n      name_or_path: Qwen/Qwen-Image\n"
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("lora.safetensors", safetensors)
        archive.writestr("settings.txt", settings_txt)
        archive.writestr("config.yaml", config)
    return out.getvalue()
