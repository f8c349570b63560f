"""Writes of the training app, behind one façade: import from `training.services`.

datasets: the dataset a training learns from (upload with one verdict per file, captions, delete,
the ZIP); trainings: a training's own writes (create, duplicate, estimate, start, cancel, retry);
captioning: captions written by a vision model on Replicate, a batch at a time;
pipeline: the stages the worker, the webhook and the poller drive (advance, apply what Replicate
reports, sync, fail, reconcile, notify).
"""

from training.services.captioning import (
    CaptionEstimate,
    CaptioningError,
    caption_apply_replicate,
    caption_batch_cancel,
    caption_batch_estimate,
    caption_batch_pump,
    caption_batch_start,
    caption_task_end,
    captions_reconcile,
)
from training.services.datasets import (
    CAPTION_MAX,
    TRIGGER_TOKEN,
    DatasetError,
    FileVerdict,
    caption_file_decode,
    caption_render,
    dataset_build_zip,
    dataset_caption_template_apply,
    dataset_image_caption_set,
    dataset_image_delete,
    dataset_upload_files,
    dataset_zip_url,
    display_name_sanitise,
    image_limits,
)
from training.services.pipeline import (
    PipelineError,
    training_advance,
    training_apply_replicate,
    training_event_record,
    training_fail,
    training_find_lost,
    training_notify,
    training_sync,
    training_watch,
    trainings_reconcile,
)
from training.services.trainings import (
    training_cancel,
    training_create,
    training_duplicate,
    training_estimate,
    training_retry,
    training_start,
)

__all__ = [
    "CaptionEstimate",
    "CaptioningError",
    "caption_apply_replicate",
    "caption_batch_cancel",
    "caption_batch_estimate",
    "caption_batch_pump",
    "caption_batch_start",
    "caption_task_end",
    "captions_reconcile",
    "CAPTION_MAX",
    "TRIGGER_TOKEN",
    "DatasetError",
    "FileVerdict",
    "PipelineError",
    "caption_file_decode",
    "caption_render",
    "dataset_build_zip",
    "dataset_caption_template_apply",
    "dataset_image_caption_set",
    "dataset_image_delete",
    "dataset_upload_files",
    "dataset_zip_url",
    "display_name_sanitise",
    "image_limits",
    "training_advance",
    "training_apply_replicate",
    "training_cancel",
    "training_create",
    "training_duplicate",
    "training_estimate",
    "training_event_record",
    "training_fail",
    "training_find_lost",
    "training_notify",
    "training_retry",
    "training_start",
    "training_sync",
    "training_watch",
    "trainings_reconcile",
]
