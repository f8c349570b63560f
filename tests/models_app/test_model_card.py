"""The model card's front matter: the Hub's keys, written by huggingface_hub, unbreakable by user text."""

from __future__ import annotations

import yaml
from huggingface_hub.repocard import REGEX_YAML_BLOCK  # the Hub's own split of front matter and page

from models_app.models import LoraModel
from models_app.services.model_card import LICENSE_LINK, TAGS, CardImage, model_card_render

HOSTILE = 'x: "y"\n---\nlicense: mit\n# not a title'


def _model(**fields) -> LoraModel:  # unsaved: the card needs only its fields
    values = {
        "name": "Anna",
        "trigger_word": "ohwx_anna",
        "training_params": {"steps": 1000},
        "replicate_version": "fluxsite/anna:" + "a" * 64,
    }
    return LoraModel(**{**values, **fields})


def _split(card: str) -> tuple[dict, str]:
    match = REGEX_YAML_BLOCK.search(card)
    assert match is not None, card
    return yaml.safe_load(match.group(2)), card[match.end() :]


def test_the_front_matter_carries_the_flux_lora_keys_and_the_gallery_as_the_widget():
    images = [CardImage(path_in_repo="images/1.webp", prompt="a photo of ohwx_anna in a hat")]
    meta, body = _split(model_card_render(model=_model(), repo_id="fluxsite/anna", images=images))
    assert meta == {
        "base_model": "black-forest-labs/FLUX.1-dev",
        "license": "other",
        "license_name": "flux-1-dev-non-commercial-license",
        "license_link": LICENSE_LINK,
        "tags": TAGS,
        "instance_prompt": "ohwx_anna",
        "widget": [{"text": "a photo of ohwx_anna in a hat", "output": {"url": "images/1.webp"}}],
    }
    assert body.startswith("# Anna\n") and "![a photo of ohwx\\_anna in a hat](images/1.webp)" in body


def test_user_text_cannot_end_the_front_matter_or_add_keys():
    images = [CardImage(path_in_repo="images/1.webp", prompt=HOSTILE)]
    card = model_card_render(model=_model(name=HOSTILE), repo_id="fluxsite/anna", images=images)
    meta, body = _split(card)
    assert meta["license"] == "other" and meta["widget"][0]["text"] == HOSTILE
    assert set(meta) == {
        "base_model",
        "license",
        "license_name",
        "license_link",
        "tags",
        "instance_prompt",
        "widget",
    }
    assert body.startswith('# x: "y"')  # the name is page text, after the front matter
