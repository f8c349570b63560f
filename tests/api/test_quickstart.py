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
