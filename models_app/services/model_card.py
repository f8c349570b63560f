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
    body = [
        f"# {name}",
        "",
        f"A FLUX.1 [dev] LoRA of a {kind}, trained with Fluxsite on Replicate "
        "([ostris/flux-dev-lora-trainer](https://replicate.com/ostris/flux-dev-lora-trainer)).",
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
    if model.replicate_version:
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
