"""The sandbox's other trainers (issue 18) serve their vendor schemas and refuse what they refuse.

Every trainer of the registry (training/trainers/) is a model of the Replicate stand-in under the
version the registry pins, publishing its vendor train() schema (sandbox/vendor/replicate/cog/),
and a training input outside that schema is Replicate's 422 through the real SDK.
"""

from __future__ import annotations

import httpx
import pytest

from fluxsite.integrations import replicate_client as rc
from fluxsite.integrations.errors import IntegrationError
from sandbox.replicate import schemas
from training.trainers.registry import TRAINERS

VENDOR = {  # (train() schema, the trained versions' predict schema)
    "replicate/fast-flux-trainer": (schemas.FAST_FLUX_TRAINER, schemas.TRAINED_VERSION),
    "qwen/qwen-image-lora-trainer": (schemas.QWEN_TRAINER, schemas.QWEN_TRAINED_VERSION),
    "ostris/flux-dev-lora-trainer": (schemas.TRAINER, schemas.TRAINED_VERSION),
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("key", list(TRAINERS))
def test_each_registered_trainer_is_served_with_its_vendor_schema_under_its_pinned_version(
    key, sandbox, settings
):
    trainer = TRAINERS[key]
    version = rc.trainer_version_get(model=trainer.model(), pinned=trainer.version())
    owner, _, name = trainer.model().partition("/")
    assert rc.model_get(owner=owner, name=name).latest_version_id == version
    served = httpx.get(
        f"{settings.REPLICATE_BASE_URL}/v1/models/{trainer.model()}/versions/{version}",
        headers={"Authorization": f"Bearer {settings.REPLICATE_API_TOKEN}"},
        timeout=20,
    ).json()["openapi_schema"]["components"]["schemas"]
    train, predict = VENDOR[trainer.model()]
    assert served["TrainingInput"] == train["input"]
    assert served["Input"] == predict["input"]  # how the versions it makes predict
    assert trainer.dataset_input in served["TrainingInput"]["properties"]


@pytest.mark.django_db(transaction=True)
def test_the_qwen_trainer_refuses_steps_outside_its_schema_with_a_422(sandbox):
    rc.model_ensure(owner="fluxsite", name="q-contract", visibility="private", description="x")
    trainer = TRAINERS["qwen-image"]
    with pytest.raises(IntegrationError) as caught:
        rc.training_create(
            destination="fluxsite/q-contract",
            input={"dataset": "https://example.com/d.zip", "steps": 50},
            model=trainer.model(),
            version=trainer.version(),
        )
    assert caught.value.category == "validation"
    assert "steps" in caught.value.detail
