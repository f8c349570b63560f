"""The API's typed shapes (pydantic, through django-ninja): what each endpoint answers and takes."""

from datetime import datetime
from decimal import Decimal
from typing import Literal

from ninja import Field, Schema

from generations.forms import SEED_MAX
from generations.services.generation import PROMPT_MAX_CHARS


class ProgressOut(Schema):
    step: int
    total: int | None
    percent: int
    eta_seconds: int | None


class TrainingErrorOut(Schema):
    stage: str
    category: str
    message: str
    hint: str


class TrainingSummaryOut(Schema):
    id: int
    name: str
    trigger_word: str
    stage: str = Field(
        description="draft, initializing, zip_creation, replicate_training, huggingface_upload, completion, succeeded, failed or canceled"
    )
    created_at: datetime
    progress: ProgressOut
    photo_count: int
    model_id: int | None


class TrainingOut(Schema):
    id: int
    name: str
    trigger_word: str
    subject_kind: str
    stage: str
    stage_label: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: ProgressOut
    current_loss: float | None
    loss_history: list[tuple[int, float]] = Field(
        description="[step, loss] pairs read from the trainer's logs"
    )
    cost_credits: int | None
    cost_estimate_dollars: Decimal | None
    cost_actual_dollars: Decimal | None
    steps: int | None
    runs: int
    error: TrainingErrorOut | None
    model_id: int | None


class TrainingPageOut(Schema):
    items: list[TrainingSummaryOut]
    next_cursor: str = Field(description="Pass as ?after= for the next page; empty on the last page")


class ModelOut(Schema):
    id: int
    name: str
    slug: str
    trigger_word: str
    subject_kind: str
    status: str
    visibility: str
    usable: bool = Field(description="Whether images can be generated with it now")
    replicate_version: str
    hf_repo_id: str
    suggested_lora_scale: float | None
    training_id: int | None
    created_at: datetime


class ModelPageOut(Schema):
    items: list[ModelOut]
    next_cursor: str


class ImageOut(Schema):
    id: int
    generation_id: int
    index: int
    url: str
    thumbnail_url: str
    width: int
    height: int
    byte_size: int
    created_at: datetime


class ImagePageOut(Schema):
    items: list[ImageOut]
    next_cursor: str


class GenerationOut(Schema):
    id: int
    model_id: int | None
    status: str = Field(description="queued, running, succeeded, failed or canceled")
    mode: str = Field(description="text, image (image to image), inpaint or upscale")
    source_image_id: int | None
    extra_model_id: int | None
    prompt: str
    effective_prompt: str
    params: dict
    num_outputs: int
    seed: int | None
    cost_credits: int
    error_category: str
    error_message: str
    created_at: datetime
    finished_at: datetime | None
    images: list[ImageOut]


class BalanceOut(Schema):
    credits: int
    credit_value_cents: int


class LedgerEntryOut(Schema):
    id: int
    amount: int = Field(description="Positive adds credits, negative takes them")
    kind: str
    reference: str
    balance_after: int
    note: str
    created_at: datetime


class LedgerPageOut(Schema):
    items: list[LedgerEntryOut]
    next_cursor: str


class GenerationIn(Schema):
    model_id: int
    prompt: str = Field(max_length=PROMPT_MAX_CHARS)
    num_outputs: int = Field(1, ge=1, le=4)
    aspect_ratio: str = "1:1"
    lora_scale: float | None = Field(None, description="The model's suggested strength when absent, else 1")
    num_inference_steps: int = 28
    guidance_scale: float = 3.0
    seed: int | None = Field(None, ge=0, le=SEED_MAX)
    output_format: Literal["webp", "jpg", "png"] = "webp"
    # The other modes, as on the generate page: an image to start from (a gallery image here, or an
    # `input_image` file in a multipart body), a `mask` file over it to inpaint, a second LoRA.
    source_image_id: int | None = Field(
        None, description="One of your generated images to start from (image to image)"
    )
    prompt_strength: float | None = Field(
        None, description="With an image: how much to change it, 0-1 (0.8 when absent)"
    )
    extra_model_id: int | None = Field(None, description="A second model of yours, of the same base")
    extra_lora_scale: float | None = Field(None, description="The second model's strength (1 when absent)")


class UpscaleIn(Schema):
    scale: int = Field(2, description="2 or 4")
    face_enhance: bool = Field(False, description="Also enhance faces (GFPGAN)")


class QuoteOut(Schema):
    dry_run: Literal[True] = True
    valid: bool
    credits: int
    dollars: Decimal = Field(description="The credits' value in US dollars")
    balance: int
    enough_credits: bool
    errors: list[dict] = Field(
        description="The same {field, message} pairs a real request would be refused with"
    )


class TrainingIn(Schema):
    name: str = Field(max_length=80)
    trigger_word: str = Field(
        "", description="One word of 2-32 letters, digits or underscores; from the name when empty"
    )
    subject_kind: Literal["subject", "style"] = "subject"
    description: str = Field("", max_length=2000)


class ZipUrlIn(Schema):
    url: str = Field(
        max_length=2000, description="The ZIP's https:// address, on one of the site's allowed hosts"
    )


class PhotoVerdictOut(Schema):
    name: str
    ok: bool
    message: str
    image_id: int | None
    warnings: list[str]


class PhotosOut(Schema):
    files: list[PhotoVerdictOut]
    photo_count: int
    ready: bool
    readiness: str = Field(description="The dashboard's line, e.g. “14 photos, 2 warnings, ready to train”")


class TrainingStartIn(Schema):
    preset: str = Field("", description="A preset's name; its values fill the fields not given")
    steps: int | None = None
    learning_rate: float | None = None
    lora_rank: int | None = None
    batch_size: int | None = None
    resolution: str | None = None
    optimizer: str | None = None
    caption_dropout_rate: float | None = None
    autocaption: bool | None = None
    sample_prompts: list[str] | None = Field(
        None, description="The sample grid's prompts; the default ones when absent"
    )


class TrainingQuoteOut(Schema):
    dry_run: Literal[True] = True
    valid: bool
    credits: int
    dollars: str = Field(description="The GPU time's cost in US dollars")
    balance: int
    enough_credits: bool
    errors: list[dict]


WEBHOOK_EVENTS = (
    "training.stage_changed, training.succeeded, training.failed, generation.succeeded or generation.failed"
)


class WebhookEndpointIn(Schema):
    url: str = Field(description="Where the signed events are POSTed (https, a public address)")
    events: list[str] = Field(description=f"Some of: {WEBHOOK_EVENTS}")


class WebhookEndpointOut(Schema):
    id: int
    url: str
    events: list[str]
    created_at: datetime


class WebhookEndpointCreatedOut(WebhookEndpointOut):
    secret: str = Field(
        description="whsec_…: the signing secret (Standard Webhooks). Shown in this answer only "
        "(and in its replay with the same Idempotency-Key): keep it."
    )


class WebhookEndpointPageOut(Schema):
    items: list[WebhookEndpointOut]
    next_cursor: str


class WebhookDeliveryOut(Schema):
    id: int
    endpoint_id: int
    event_id: str = Field(description="The webhook-id header (msg_…), the same on every attempt")
    type: str
    status: str = Field(description="pending (retried with backoff), succeeded or failed (no more attempts)")
    attempts: int
    last_status_code: int | None
    last_error: str
    next_attempt_at: datetime | None
    created_at: datetime
    payload: dict = Field(description="The body sent: {type, timestamp, data}")


class WebhookDeliveryPageOut(Schema):
    items: list[WebhookDeliveryOut]
    next_cursor: str
