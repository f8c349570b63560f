"""The README.md model card of a published FLUX LoRA.

Follows the de facto convention of FLUX LoRA repos on the Hub (docs/vendors.md, "Model card"):
YAML front matter the Hub reads for its widget and filters, then a human page. The front matter
is written by huggingface_hub's ModelCardData (through fluxsite.integrations.huggingface_client),
so the keys are the Hub's and the YAML quoting is the library's: a trigger word or a prompt can
never break it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fluxsite.integrations import huggingface_client as hf
from models_app.bases import FLUX_DEV, base_get
from models_app.models import LoraModel

TAGS = ["text-to-image", "flux", "lora", "diffusers", "template:sd-lora"]
LICENSE_NAME = "flux-1-dev-non-commercial-license"
LICENSE_LINK = "https://huggingface.co/black-forest-labs/FLUX.1-dev/blob/main/LICENSE.md"
PARAM_LABELS = [
    ("steps", "Steps"),
    ("learning_rate", "Learning rate"),
    ("lora_rank", "LoRA rank"),
    ("batch_size", "Batch size"),
    ("resolution", "Resolution"),
    ("optimizer", "Optimizer"),
    ("caption_dropout_rate", "Caption dropout rate"),
    ("autocaption", "Autocaption"),
]


@dataclass(frozen=True)
class CardImage:
    path_in_repo: str
    prompt: str


def _md(text: str) -> str:
    """Escape what would turn a user's text into Markdown or HTML on the Hub's page."""
    for ch in "\\`*_[]<>#|":
        text = text.replace(ch, "\\" + ch)
    return text


def model_card_render(*, model: LoraModel, repo_id: str, images: list[CardImage]) -> str:
    extra: dict[str, Any] = {"instance_prompt": model.trigger_word}
    if images:
        extra["widget"] = [{"text": image.prompt, "output": {"url": image.path_in_repo}} for image in images]

    name = _md(model.name)
    trigger = model.trigger_word
    kind = "style" if model.subject_kind == LoraModel.SubjectKind.STYLE else "subject"
    base = base_get(model.base_model)
    trainer = model.trained_with or "ostris/flux-dev-lora-trainer"
    body = [
        f"# {name}",
        "",
        f"A {base.label} LoRA of a {kind}, trained with Fluxsite on Replicate "
        f"([{trainer}](https://replicate.com/{trainer})).",
        "",
    ]
    if model.description:
        body += [_md(model.description), ""]
    if images:
        body += ["## Gallery", ""]
        body += [f"![{_md(image.prompt)}]({image.path_in_repo})" for image in images]
        body.append("")
    body += ["## Trigger words", "", f"Use `{trigger}` in the prompt to trigger the {kind}.", ""]
    rows = [
        (label, model.training_params[key]) for key, label in PARAM_LABELS if key in model.training_params
    ]
    if rows:
        body += ["## Training parameters", "", "| Parameter | Value |", "|---|---|"]
        body += [f"| {label} | {_md(str(value))} |" for label, value in rows]
        body.append("")
    example = f"a photo of {trigger}" if kind == "subject" else f"a landscape in the style of {trigger}"
    body += [
        "## Use it with diffusers",
        "",
        "```python",
        "import torch",
        "from diffusers import AutoPipelineForText2Image",
        "",
        f'pipeline = AutoPipelineForText2Image.from_pretrained("{model.base_model}", torch_dtype=torch.bfloat16)',
        'pipeline.to("cuda")',
        f'pipeline.load_lora_weights("{repo_id}", weight_name="lora.safetensors")',
        f'image = pipeline("{example}").images[0]',
        "```",
        "",
    ]
    if model.replicate_version and base.hf_id != FLUX_DEV:
        body += [
            "## Use it on Replicate",
            "",
            f"Run its version `{model.replicate_version}` with `replicate_weights` set to the URL of "
            "this repository's `lora.safetensors` (its predictor applies a LoRA only when given one).",
            "",
        ]
    elif model.replicate_version:
        body += [
            "## Use it on Replicate",
            "",
            "```python",
            "import replicate",
            "",
            f'output = replicate.run("{model.replicate_version}", input={{"prompt": "{example}"}})',
            "```",
            "",
            "Or with any FLUX LoRA runner, such as `black-forest-labs/flux-dev-lora`, passing "
            f'`lora_weights="huggingface.co/{repo_id}"`.',
            "",
        ]
    if base.hf_id == FLUX_DEV:
        body += [
            "## License",
            "",
            f"The weights follow the [FLUX.1 [dev] Non-Commercial License]({LICENSE_LINK}).",
            "",
        ]
        return hf.model_card_text(
            body="\n".join(body),
            base_model=model.base_model,
            tags=TAGS,
            license="other",
            license_name=LICENSE_NAME,
            license_link=LICENSE_LINK,
            extra=extra,
        )
    body += ["## License", "", f"The base model's license: [{base.license_name}]({base.license_link}).", ""]
    return hf.model_card_text(
        body="\n".join(body),
        base_model=base.hf_id,
        tags=list(base.tags),
        license=base.license_name,
        extra=extra,
    )
