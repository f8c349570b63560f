"""The quick start's own Python example (docs/api.md) runs against the live server and the sandbox."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from generations.models import Generation
from tests.api.conftest import token_for
from tests.generations.generation_kit import lora_model, sandbox_version

pytestmark = pytest.mark.django_db(transaction=True)
DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _python_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 2  # the quick start, then the webhook verifier (tests/api/test_webhooks.py)
    return blocks[0]


def test_the_python_quick_start_generates_an_image(sandbox, alice):
    lora_model(alice, replicate_version=sandbox_version("quickstart"))
    _, secret = token_for(alice)
    run = subprocess.run(
        [sys.executable, "-c", _python_example()],
        env={**os.environ, "FLUXSITE_URL": sandbox, "FLUXSITE_TOKEN": secret},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "it costs 4 credits ($0.04) valid: True" in run.stdout
    generation = Generation.objects.get()
    assert f"generation {generation.pk} succeeded" in run.stdout, run.stdout
    assert "/media/" in run.stdout


def test_the_python_quick_start_says_why_without_a_model(sandbox, alice):
    _, secret = token_for(alice)
    run = subprocess.run(
        [sys.executable, "-c", _python_example()],
        env={**os.environ, "FLUXSITE_URL": sandbox, "FLUXSITE_TOKEN": secret},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1 and "No usable model yet" in run.stderr


def _curl_commands() -> list[str]:
    """The curl section's commands, each joined across its continuation lines, comments left out."""
    section = DOC.read_text().split("## 2. With curl", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "docs/api.md has no curl block"
    joined = re.sub(r"\\\n\s*", " ", block.group(1))
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def test_the_curl_quick_start_runs_as_written(sandbox, alice, tmp_path):
    """Each curl command of the quick start, run by bash with curl against the live server. Only the
    example ids change (model 1, training 7 are the reader's own): nothing else is rewritten."""
    import json

    from billing.selectors import balance_for_user
    from tests.training import images

    model = lora_model(alice, replicate_version=sandbox_version("quickstart"))
    _, secret = token_for(alice)
    (tmp_path / "photo1.jpg").write_bytes(images.photo(seed=1))
    (tmp_path / "photo2.jpg").write_bytes(images.photo(seed=2))
    env = {**os.environ, "FLUXSITE_URL": sandbox, "FLUXSITE_TOKEN": secret}
    answers, training_id = [], None
    before = balance_for_user(alice)
    for command in _curl_commands():
        assert command.startswith("curl "), command
        command = command.replace('"model_id": 1', f'"model_id": {model.pk}')
        if training_id is not None:
            command = command.replace("/trainings/7/", f"/trainings/{training_id}/")
        run = subprocess.run(
            ["bash", "-c", command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, (command, run.stderr)
        answer = json.loads(run.stdout)
        answers.append(answer)
        if command.endswith("/api/v1/trainings"):
            training_id = answer["id"]
    balance, models, trainings, quote, generation, draft, photos, start_quote = answers
    assert balance["credits"] == before
    assert [m["id"] for m in models["items"]] == [model.pk]
    assert trainings["items"] == []
    assert quote["credits"] > 0 and quote["valid"] is True
    assert generation["id"] and Generation.objects.filter(pk=generation["id"]).exists()
    # The quote spent nothing; the run at most its price once (an image that fails is refunded).
    assert before - quote["credits"] <= balance_for_user(alice) < before
    assert draft["name"] == "Anna portraits" and training_id == draft["id"]
    assert [f["ok"] for f in photos["files"]] == [True, True]
    assert start_quote["valid"] is False or start_quote["credits"] > 0
