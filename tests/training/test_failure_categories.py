"""The trainer's real failure messages, each mapped to a category and a hint (issue 11).

Every message below is quoted from the source that produces it (revision noted), or, for the
two the issue reports, as the issue quotes them. The old guesser sorted both of those under
file_error ("check the files") because they mention "image" and "download".
"""

from __future__ import annotations

import pytest

from fluxsite.integrations import replicate_client
from fluxsite.integrations.errors import HINTS, Category
from training.failures import BASE_MODEL_FETCH, FALLBACK, OUT_OF_GPU_MEMORY, trainer_failure_explain
from training.models import TrainingJob
from training.services import pipeline, training_create

FT = "replicate/flux-fine-tuner@3dd14e37fe789ca05d0fa43cc53e112e0de00e76"
AITK = "ostris/ai-toolkit@bedb8197a29cf885b284e137a397d9bb8de620ec"
COG = "replicate/cog@f844888e601251bbb2bb23ca31ed7d306d73582b"
FILE = Category.FILE_ERROR
SERVICE = Category.SERVICE_ERROR

# (the `error` text, category, retryable, what the hint must say, where the text comes from)
MESSAGES = [
    # From issue 11, as reported.
    ("CUDA out of memory while caching image latents", SERVICE, False, OUT_OF_GPU_MEMORY, "issue 11"),
    ("Error downloading base model weights from huggingface", SERVICE, True, BASE_MODEL_FETCH, "issue 11"),
    # train.py:221, train.py:476, train.py:227-230 and layer_match.py:8.
    (
        "input_images must be provided",
        Category.VALIDATION,
        True,
        "not sent to the trainer",
        f"{FT} train.py:221",
    ),
    ("input_images must be a zip file", FILE, True, "could not open the photo archive", f"{FT} train.py:476"),
    (
        "The regex 'transformer.single_transformer_blocks.(99).proj_out' didn't match any layers. These layers can "
        "be optimized:\ntransformer.transformer_blocks.0.norm1.linear\ntransformer.transformer_blocks.0.norm1_context"
        ".linear",
        Category.VALIDATION,
        False,
        "layers_to_optimize_regex",
        f"{FT} train.py:227-230",
    ),
    (
        "Failed to compile regex 'transformer.(7|12': missing ), unterminated subpattern at position 12",
        Category.VALIDATION,
        False,
        "layers_to_optimize_regex",
        f"{FT} layer_match.py:8",
    ),
    # The base weights and the captioning model, fetched with pget (subprocess.CalledProcessError's text).
    (
        "Command '['pget', '-xf', 'https://weights.replicate.delivery/default/black-forest-labs/FLUX.1-dev/files.tar', "
        "'.']' returned non-zero exit status 1.",
        SERVICE,
        True,
        BASE_MODEL_FETCH,
        f"{FT} train.py:523-535",
    ),
    (
        "Command '['pget', 'https://weights.replicate.delivery/default/llava-v1.5-13b/006818fc465ebda4c003c0998674d914"
        "1d8d95f8/pytorch_model-00001-of-00003.bin', 'liuhaotian/llava-v1.5-13b/pytorch_model-00001-of-00003.bin']' "
        "returned non-zero exit status 1.",
        SERVICE,
        True,
        BASE_MODEL_FETCH,
        f"{FT} caption.py:84",
    ),
    # ai-toolkit falls back to the Hub for what the local FLUX.1-dev copy lacks; diffusers' message.
    (
        "We couldn't connect to 'https://huggingface.co' to load this model, couldn't find it in the cached files and "
        "it looks like black-forest-labs/FLUX.1-schnell is not the path to a directory containing a "
        "scheduler_config.json file.\nCheckout your internet connection or see how to run the library in offline "
        "mode at 'https://huggingface.co/docs/diffusers/installation#offline-mode'.",
        SERVICE,
        True,
        BASE_MODEL_FETCH,
        f"{AITK} toolkit/stable_diffusion_model.py:473 + diffusers ConfigMixin.load_config",
    ),
    # ai-toolkit's dataset loader: the one real "check your photos" case.
    (
        "no images found in input_images",
        FILE,
        False,
        "Check your photos",
        f"{AITK} toolkit/data_loader.py:487",
    ),
    # torch's allocator (as quoted in bghira/SimpleTuner#786 for a FLUX LoRA run, torch 2.4) and CUDA_CHECK.
    (
        "CUDA out of memory. Tried to allocate 54.00 MiB. GPU 0 has a total capacity of 23.63 GiB of which 34.56 MiB "
        "is free. Process 1108671 has 558.00 MiB memory in use. Process 1114104 has 1.03 GiB memory in use. Including "
        "non-PyTorch memory, this process has 21.22 GiB memory in use. Of the allocated memory 20.73 GiB is allocated "
        "by PyTorch, and 35.86 MiB is reserved by PyTorch but unallocated. If reserved but unallocated memory is large "
        "try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.  See documentation for "
        "Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html#environment-variables)",
        SERVICE,
        False,
        OUT_OF_GPU_MEMORY,
        "pytorch c10/cuda/CUDACachingAllocator.cpp",
    ),
    (
        "CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported at some other API call, so the "
        "stacktrace below might be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1",
        SERVICE,
        False,
        OUT_OF_GPU_MEMORY,
        "pytorch c10/cuda/CUDAException.h C10_CUDA_CHECK",
    ),
    (
        "CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be asynchronously reported at "
        "some other API call, so the stacktrace below might be incorrect.",
        SERVICE,
        True,
        "The GPU failed",
        "pytorch c10/cuda/CUDAException.h C10_CUDA_CHECK",
    ),
    # cog: the process running train() died; cog's download of input_images failed.
    (
        "Prediction failed for an unknown reason. It might have run out of memory? (exitcode -9)",
        SERVICE,
        False,
        "killed, most likely for running out of memory",
        f"{COG} python/cog/server/worker.py:368",
    ),
    (
        "403 Client Error: Forbidden for url: https://fluxsite.example.com/files/eyJhbGciOi.zip",
        FILE,
        True,
        "could not download the photo archive from us",
        f"{COG} python/cog/types.py:378-379 + requests",
    ),
    (
        "502 Server Error: Bad Gateway for url: https://fluxsite.example.com/files/eyJhbGciOi.zip",
        SERVICE,
        True,
        "our storage answered an error",
        f"{COG} python/cog/types.py:378-379 + requests",
    ),
    # Replicate's platform error codes (https://replicate.com/docs/reference/error-codes).
    (
        "E1001: Model Out of Memory (OOM Killed)",
        SERVICE,
        False,
        OUT_OF_GPU_MEMORY,
        "replicate docs error-codes",
    ),
    (
        "E6716: Timeout Starting Prediction",
        Category.TIMEOUT,
        True,
        "could not start the training in time",
        "replicate docs error-codes",
    ),
    ("E1000: Unknown Error", SERVICE, True, "unexpected error on its side", "replicate docs error-codes"),
]


@pytest.mark.parametrize(
    ("error", "category", "retryable", "hint", "source"),
    MESSAGES,
    ids=[f"{m[4]}: {m[0][:40]}" for m in MESSAGES],
)
def test_each_real_trainer_message_gets_its_category_and_hint(error, category, retryable, hint, source):
    failure = trainer_failure_explain(error)
    assert (failure.category, failure.retryable) == (category, retryable)
    assert hint in failure.hint


def test_check_the_files_is_said_only_for_a_real_problem_with_the_photos():
    for error, *_ in MESSAGES:
        hint = trainer_failure_explain(error).hint
        assert hint != HINTS[Category.FILE_ERROR]  # the generic "Check the files and try again."
        if "Check your photos" in hint:
            assert error == "no images found in input_images"


def test_an_unknown_message_falls_back_to_an_honest_service_error():
    # ai-toolkit prints "loss is nan" and trains on (SDTrainer.py:1578-1580), so it never fails a run.
    for error in ("something nobody has seen before", "", "loss is nan"):
        assert trainer_failure_explain(error) == FALLBACK
    assert FALLBACK.category == Category.SERVICE_ERROR and "will be retried" not in FALLBACK.hint


@pytest.mark.django_db
def test_a_failed_training_records_the_category_and_hint_of_its_message(alice):
    job = training_create(owner=alice, name="Oom", trigger_word="ohwx_oom", subject_kind="subject")
    # replicate_status already final, so failing the job does not try to cancel it at Replicate.
    TrainingJob.objects.filter(pk=job.pk).update(
        status=TrainingJob.Status.REPLICATE_TRAINING, replicate_training_id="r8oom", replicate_status="failed"
    )
    failed = replicate_client.training_from_payload(
        {"id": "r8oom", "status": "failed", "error": "CUDA out of memory while caching image latents"}
    )
    pipeline.training_apply_replicate(info=failed)
    job.refresh_from_db()
    assert job.status == TrainingJob.Status.FAILED
    assert (job.error_category, job.error_hint) == ("service_error", OUT_OF_GPU_MEMORY)
    assert "CUDA out of memory while caching image latents" in job.error_message
