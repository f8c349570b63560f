"""What a failed Replicate training's `error` text means for its owner: a category and a hint.

The rows are the messages the trainer really fails with, read in its source, not guessed from
words: replicate/flux-fine-tuner (the code behind ostris/flux-dev-lora-trainer) at
3dd14e37fe789ca05d0fa43cc53e112e0de00e76, its ai-toolkit submodule ostris/ai-toolkit at
bedb8197a29cf885b284e137a397d9bb8de620ec, and cog, which runs it: an exception raised by train()
becomes `error = str(exception)` (replicate/cog python/cog/server/worker.py:808-809 and
runner.py:438-439 at f844888e601251bbb2bb23ca31ed7d306d73582b, the cog of May 2025).

The first matching row wins, so the specific rows come first: "CUDA out of memory while caching
image latents" is a memory problem although it mentions images. "Check the files" is said only
for a real problem with the photos.

Not a row, on purpose: a NaN loss. ai-toolkit prints "loss is nan" and trains on with a zero loss
(extensions_built_in/sd_trainer/SDTrainer.py:1578-1580 at bedb819), so it never fails a run and
never reaches `error`. Nor is a run over Replicate's time limit: it ends `canceled`, not `failed`
(https://replicate.com/docs/topics/predictions/lifecycle#timeouts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fluxsite.integrations.errors import Category


@dataclass(frozen=True)
class TrainerFailure:
    category: Category
    hint: str  # shown to the owner under the trainer's message
    retryable: bool  # whether starting the same training again can help


@dataclass(frozen=True)
class _Row:
    pattern: re.Pattern[str]
    failure: TrainerFailure


def _row(pattern: str, category: Category, hint: str, *, retryable: bool) -> _Row:
    return _Row(re.compile(pattern, re.IGNORECASE), TrainerFailure(category, hint, retryable))


OUT_OF_GPU_MEMORY = (
    "The training ran out of GPU memory. Start it again with a smaller batch size or lower resolutions "
    "(or with cache_latents_to_disk on); your photos are fine."
)
BASE_MODEL_FETCH = (
    "Replicate's side failed to fetch the base model the trainer starts from. Nothing is wrong with your "
    "photos or settings: start the training again."
)
UNKNOWN = (
    "The trainer failed for a reason we do not recognise. Your credits were refunded; start the "
    "training again, and contact support if it fails the same way twice."
)

FAILURES: tuple[_Row, ...] = (
    # torch's caching allocator: "CUDA out of memory. Tried to allocate 54.00 MiB. GPU 0 has a total
    # capacity of ..." (pytorch c10/cuda/CUDACachingAllocator.cpp, TORCH_CHECK_WITH(OutOfMemoryError,
    # ...); torch 2.4.1 is pinned in flux-fine-tuner cog.yaml). "CUDA error: out of memory" is the same
    # condition met outside the allocator (C10_CUDA_CHECK on cudaErrorMemoryAllocation).
    _row(
        r"CUDA out of memory|CUDA error: out of memory|OutOfMemoryError",
        Category.SERVICE_ERROR,
        OUT_OF_GPU_MEMORY,
        retryable=False,
    ),
    # Replicate's platform code for a run killed for using too much memory
    # (https://replicate.com/docs/reference/error-codes: "E1001 - Model Out of Memory (OOM Killed)").
    _row(r"\bE1001\b", Category.SERVICE_ERROR, OUT_OF_GPU_MEMORY, retryable=False),
    # cog, when the process running train() dies (a kill, most often for memory):
    # python/cog/server/worker.py:368 at f844888 ("Prediction failed for an unknown reason. It might
    # have run out of memory? (exitcode {exitcode})").
    _row(
        r"It might have run out of memory\?",
        Category.SERVICE_ERROR,
        "The trainer's process was killed, most likely for running out of memory. Start the training again "
        "with a smaller batch size or lower resolutions.",
        retryable=False,
    ),
    # The FLUX.1-dev base weights and the captioning model are fetched with pget; a failure is
    # subprocess.CalledProcessError, whose text is "Command '['pget', '-xf', 'https://weights.replicate
    # .delivery/default/black-forest-labs/FLUX.1-dev/files.tar', '.']' returned non-zero exit status 1."
    # (train.py:523-535 download_weights; caption.py:84 download_weights for LLaVA; at 3dd14e3).
    _row(
        r"Command '\[\s*'pget'.*returned non-zero exit status",
        Category.SERVICE_ERROR,
        BASE_MODEL_FETCH,
        retryable=True,
    ),
    # ai-toolkit loads what the local FLUX.1-dev copy lacks from the Hub
    # ("black-forest-labs/FLUX.1-schnell", toolkit/stable_diffusion_model.py:473 at bedb819); diffusers
    # and transformers then fail with "We couldn't connect to 'https://huggingface.co' to load ...".
    # Fluxsite never sends hf_token, so the trainer's own Hub upload (train.py:438, printed and
    # swallowed) cannot be what failed.
    _row(
        r"couldn't connect to 'https://huggingface\.co'|huggingface|black-forest-labs/FLUX\.1",
        Category.SERVICE_ERROR,
        BASE_MODEL_FETCH,
        retryable=True,
    ),
    # https://replicate.com/docs/reference/error-codes: "E6716 - Timeout Starting Prediction".
    _row(
        r"\bE6716\b",
        Category.TIMEOUT,
        "Replicate could not start the training in time (its machines were busy). Start it again.",
        retryable=True,
    ),
    # Any other CUDA failure ("CUDA error: an illegal memory access was encountered", ...): the GPU
    # failed, not the photos (C10_CUDA_CHECK's "CUDA error: <cudaGetErrorString>").
    _row(
        r"CUDA error",
        Category.SERVICE_ERROR,
        "The GPU failed during the run, a problem on Replicate's side. Start the training again.",
        retryable=True,
    ),
    # The photo archive itself: train.py:476 extract_zip ("input_images must be a zip file").
    _row(
        r"input_images must be a zip file",
        Category.FILE_ERROR,
        "The trainer could not open the photo archive as a zip. Start the training again; if it fails the "
        "same way, remove and re-upload your photos.",
        retryable=True,
    ),
    # ai-toolkit found no .jpg/.jpeg/.png/.webp in the archive: toolkit/data_loader.py:487 at bedb819
    # (assert len(self.file_list) > 0, f"no images found in {self.dataset_path}"; the path is
    # "input_images", train.py:37 and the dataset's folder_path).
    _row(
        r"no images found in",
        Category.FILE_ERROR,
        "The trainer found no usable photos (it reads .jpg, .jpeg, .png and .webp). Check your photos and "
        "try again.",
        retryable=False,
    ),
    # cog downloads input_images before train() runs; requests' raise_for_status then fails with
    # "403 Client Error: Forbidden for url: ..." (cog python/cog/types.py:378-379 URLFile, reported by
    # worker.py:231 as str(e), at f844888; requests models.py Response.raise_for_status). The URL is
    # our own signed link to the archive.
    _row(
        r"\b\d{3} Client Error: .* for url: ",
        Category.FILE_ERROR,
        "Replicate could not download the photo archive from us (the link may have expired). Start the "
        "training again.",
        retryable=True,
    ),
    _row(
        r"\b\d{3} Server Error: .* for url: ",
        Category.SERVICE_ERROR,
        "Replicate could not download the photo archive from us because our storage answered an error. "
        "Start the training again in a few minutes.",
        retryable=True,
    ),
    # train.py:221: only when input_images is missing, which Fluxsite always sends: our bug.
    _row(
        r"input_images must be provided",
        Category.VALIDATION,
        "The photos were not sent to the trainer, a problem on our side. Start the training again; contact "
        "support if it fails the same way.",
        retryable=True,
    ),
    # train.py:227-230 ("The regex '...' didn't match any layers. ...") and layer_match.py:8
    # ("Failed to compile regex '...': ..."), for layers_to_optimize_regex.
    _row(
        r"didn't match any layers|Failed to compile regex",
        Category.VALIDATION,
        "The layers to optimise (layers_to_optimize_regex) matched no layer of the model. Change or clear "
        "that setting and try again.",
        retryable=False,
    ),
    # https://replicate.com/docs/reference/error-codes: "E1000 - Unknown Error" ("Try retrying").
    _row(
        r"\bE1000\b",
        Category.SERVICE_ERROR,
        "Replicate reported an unexpected error on its side. Start the training again.",
        retryable=True,
    ),
)
FALLBACK = TrainerFailure(Category.SERVICE_ERROR, UNKNOWN, retryable=True)


def trainer_failure_explain(error: str) -> TrainerFailure:
    """The category, hint and retry advice for a failed training's `error` text (first matching row)."""
    for row in FAILURES:
        if row.pattern.search(error or ""):
            return row.failure
    return FALLBACK
