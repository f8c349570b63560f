"""Hugging Face: the Hub stand-in checked against the vendor's own material, over real HTTP.

Vendor material (sandbox/vendor/huggingface/README.md): answers recorded against huggingface.co
in huggingface_hub's cassettes, the error answers of huggingface_hub's own tests, huggingface.js's
whoami test, git-lfs's batch API spec and JSON schema, and the fields huggingface_hub 2.4 reads
(each data file's `client_reads`).

Our client (fluxsite.integrations.huggingface_client) publishes a LoRA the way production does;
every JSON answer the SDK receives is recorded on the SDK's own HTTP client and then checked here,
independently of the stand-in's code:
- every field huggingface_hub reads is there, with the type it expects;
- no field appears that the vendor's recorded answers do not have (a field added to the stand-in
  from belief fails here);
- the LFS batch answers are valid against git-lfs's own JSON schema;
- the error answers carry the codes and texts the SDK keys on;
- no request ever goes to a Xet endpoint.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import huggingface_hub
import pytest

from fluxsite.integrations import huggingface_client as hf
from fluxsite.integrations.errors import IntegrationError
from sandbox.faults import fault_inject

pytestmark = pytest.mark.django_db(transaction=True)

VENDOR = Path(__file__).resolve().parents[2] / "sandbox/vendor/huggingface"


def material(name: str) -> dict:
    return json.loads((VENDOR / f"{name}.json").read_text())


# Which vendor material describes which answer: (method, path below the endpoint, status).
ROUTES = [
    ("POST", r"/api/repos/create", 200, "repos", "create_200"),
    ("POST", r"/api/repos/create", 409, "repos", "create_409"),
    ("DELETE", r"/api/repos/delete", 200, "repos", "delete_200"),
    ("POST", r"/api/models/[^/]+/[^/]+/preupload/[^/]+", 200, "preupload", None),
    ("POST", r"/[^/]+/[^/]+\.git/info/lfs/objects/batch", 200, "lfs_batch", None),
    ("POST", r"/api/models/[^/]+/[^/]+/commit/[^/]+", 200, "commit", "commit_200"),
    ("GET", r"/api/whoami-v2", 200, "whoami", "user"),
    ("GET", r"/api/models/[^/]+/[^/]+", 200, "model_info", None),
]


@dataclass
class Answer:
    method: str
    path: str
    status: int
    headers: httpx2.Headers
    body: Any

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}"


@pytest.fixture
def wire(sandbox, settings, tmp_path):
    """Every JSON (or plain text) answer huggingface_hub's shared HTTP client receives."""
    settings.SANDBOX_HF_ROOT = tmp_path / "hf-store"
    hf.build_api()  # settles the client factory, so the session below is the one used throughout
    session = huggingface_hub.get_session()
    prefix = httpx2.URL(settings.HF_ENDPOINT).path.rstrip("/")
    answers: list[Answer] = []

    def record(response: httpx2.Response) -> None:
        ctype = response.headers.get("Content-Type", "")
        path = response.request.url.path.removeprefix(prefix)
        if "json" not in ctype and not ctype.startswith("text/plain"):
            answers.append(
                Answer(response.request.method, path, response.status_code, response.headers, None)
            )
            return
        response.read()
        body = response.json() if "json" in ctype and response.content else response.text
        answers.append(Answer(response.request.method, path, response.status_code, response.headers, body))

    hooks = session.event_hooks
    session.event_hooks = {**hooks, "response": [*hooks.get("response", []), record]}
    yield answers
    session.event_hooks = hooks


def _publish_like_production(tmp_path: Path) -> None:
    weights = tmp_path / "lora.safetensors"
    weights.write_bytes(os.urandom(128 * 1024))
    card = b"---\nbase_model: black-forest-labs/FLUX.1-dev\ninstance_prompt: TOK\n---\n# A LoRA\n"

    hf.whoami()
    hf.repo_ensure(repo_id="fluxsite/contract", private=True)  # 200
    hf.repo_ensure(repo_id="fluxsite/contract", private=True)  # 409, read for its url
    hf.repo_upload(
        repo_id="fluxsite/contract",
        commit_message="Publish",
        files=[("lora.safetensors", weights), ("README.md", card)],
    )  # new files: no oid
    hf.repo_upload(
        repo_id="fluxsite/contract", commit_message="Card again", files=[("README.md", card + b"\nMore.\n")]
    )  # an existing file: with oid
    hf.repo_info(repo_id="fluxsite/contract")
    hf.repo_ensure(repo_id="fluxsite/contract-copy")
    hf.repo_upload(
        repo_id="fluxsite/contract-copy", commit_message="Same weights", files=[("lora.safetensors", weights)]
    )  # stored already: an object with no actions
    hf.repo_delete(repo_id="fluxsite/contract-copy")

    # The errors our client maps, each as the Hub sends it.
    for call in (
        lambda: hf.repo_info(repo_id="fluxsite/missing"),  # 404
        lambda: hf.whoami(token="hf_not_a_token"),  # 401
        lambda: hf.repo_ensure(repo_id="fluxsite/nope", token="hf_readonly_contract"),  # 403
    ):
        with pytest.raises(IntegrationError):
            call()
    fault_inject(service="huggingface", operation="whoami", status=429, retry_after=2)
    with pytest.raises(IntegrationError) as err:
        hf.whoami()
    assert err.value.retry_after == 2  # read from the Hub's RateLimit header


def _material_for(answer: Answer) -> tuple[str, str | None] | None:
    for method, pattern, status, name, case in ROUTES:
        if answer.method == method and answer.status == status and re.fullmatch(pattern, answer.path):
            return name, case
    return None


# --- Independent checks of a JSON value against the vendor's material ---------------------------------
def _values_at(value: Any, field: str) -> list[Any]:
    """All values at a dotted path, `[]` stepping into list items ("files[].path")."""
    values = [value]
    for part in field.split("."):
        many = part.endswith("[]")
        key = part.removesuffix("[]")
        values = [v[key] for v in values if isinstance(v, dict) and key in v]
        if many:
            values = [item for v in values if isinstance(v, list) for item in v]
    return values


def _present(value: Any, field: str) -> bool:
    head, _, rest = field.rpartition(".")
    parents = _values_at(value, head) if head else [value]
    key = rest.removesuffix("[]")
    return all(isinstance(p, dict) and key in p for p in parents)


TYPES = {"str": str, "int": int, "bool": bool, "list": list, "dict": dict}


def _read_problems(body: Any, reads: list[dict]) -> list[str]:
    problems = []
    for read in reads:
        field = read["field"]
        if not read.get("optional") and not _present(body, field):
            problems.append(f"{field} is missing ({read['by']})")
        for value in _values_at(body, field):
            if not isinstance(value, TYPES[read["type"]]) or (
                read["type"] == "int" and isinstance(value, bool)
            ):
                problems.append(f"{field} is {value!r}, not {read['type']} ({read['by']})")
            if "one_of" in read and value not in read["one_of"]:
                problems.append(f"{field} is {value!r}, not one of {read['one_of']}")
    return problems


def _unknown_fields(value: Any, templates: list[Any], where: str = "") -> list[str]:
    dicts = [t for t in templates if isinstance(t, dict)]
    lists = [t for t in templates if isinstance(t, list)]
    unknown = []
    if isinstance(value, dict) and dicts:
        for key, item in value.items():
            subs = [t[key] for t in dicts if key in t]
            unknown += _unknown_fields(item, subs, f"{where}.{key}") if subs else [f"{where}.{key}"]
    elif isinstance(value, list) and lists:
        items = [i for t in lists for i in t]
        for item in value if items else ():
            unknown += _unknown_fields(item, items, f"{where}[]")
    return unknown


def _schema_errors(value: Any, schema: dict, root: dict, where: str = "$") -> list[str]:
    """The subset of JSON Schema draft-04 that git-lfs's batch-response schema uses."""
    if "$ref" in schema:
        schema = root["definitions"][schema["$ref"].rsplit("/", 1)[-1]]
    kind = schema.get("type")
    checks: dict[str, type | tuple[type, ...]] = {
        "object": dict,
        "array": list,
        "string": str,
        "boolean": bool,
        "number": (int, float),
    }
    if kind and (not isinstance(value, checks[kind]) or (kind == "number" and isinstance(value, bool))):
        return [f"{where}: {value!r} is not {kind}"]
    errors = []
    if kind == "number":
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: {value} > {schema['maximum']}")
    if kind == "object":
        properties = schema.get("properties", {})
        errors += [f"{where}.{key}: required" for key in schema.get("required", []) if key not in value]
        for key, item in value.items():
            if key in properties:
                errors += _schema_errors(item, properties[key], root, f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{where}.{key}: not allowed by the schema")
    if kind == "array" and "items" in schema:
        for i, item in enumerate(value):
            errors += _schema_errors(item, schema["items"], root, f"{where}[{i}]")
    return errors


# --- The contract -------------------------------------------------------------------------------------
def test_every_answer_of_a_publish_has_what_huggingface_hub_reads_and_nothing_the_hub_lacks(wire, tmp_path):
    _publish_like_production(tmp_path)
    seen: dict[str, set[str]] = {}
    for answer in wire:
        found = _material_for(answer)
        if found is None:
            continue
        name, case = found
        data = material(name)
        reads = [r for r in data.get("client_reads", []) if case is None or r.get("case") == case]
        assert _read_problems(answer.body, reads) == [], str(answer)
        examples = (
            [e["body"] for e in data["examples"].values()]
            if case is None
            else [data["examples"][case]["body"]]
        )
        if name == "model_info":  # blob fields per huggingface_hub's parser, not a recording
            examples = [
                data["examples"]["model"]["body"],
                {"siblings": [data["examples"]["sibling_with_blobs"]["body"]]},
            ]
        assert _unknown_fields(answer.body, examples) == [], f"{answer}: fields the Hub never sends"
        seen.setdefault(name, set()).add(case or "")

    assert seen == {
        "repos": {"create_200", "create_409", "delete_200"},
        "preupload": {""},
        "lfs_batch": {""},
        "commit": {"commit_200"},
        "whoami": {"user"},
        "model_info": {""},
    }


def test_preupload_answers_an_oid_only_for_files_the_revision_has(wire, tmp_path):
    _publish_like_production(tmp_path)
    preuploads = [a for a in wire if _material_for(a) == ("preupload", None)]
    entries = [entry for a in preuploads for entry in a.body["files"]]
    # As recorded: a new file has no "oid" key at all; an existing one has its oid.
    assert any("oid" not in e for e in entries)
    assert any(isinstance(e.get("oid"), str) for e in entries)
    assert all(e.get("oid", "") is not None for e in entries)


def test_lfs_batch_answers_follow_git_lfs_s_own_schema_and_rules(wire, tmp_path):
    _publish_like_production(tmp_path)
    lfs = material("lfs_batch")
    batches = [a for a in wire if _material_for(a) == ("lfs_batch", None)]
    assert batches
    for answer in batches:
        assert answer.headers["Content-Type"].startswith(lfs["content_type"]), str(answer)
        assert _schema_errors(answer.body, lfs["schema"], lfs["schema"]) == [], str(answer)
    objects = [obj for a in batches for obj in a.body["objects"]]
    # batch.md: an object the server has already is answered without `actions`.
    assert any("actions" in obj for obj in objects) and any("actions" not in obj for obj in objects)


def test_error_answers_carry_what_the_sdk_keys_on(wire, tmp_path):
    _publish_like_production(tmp_path)
    errors = material("errors")["examples"]
    codes = next(r["values"] for r in material("errors")["client_reads"] if r.get("header") == "X-Error-Code")
    by_status = {a.status: a for a in wire if a.status >= 400}
    assert set(by_status) >= {401, 403, 404, 409, 429}

    not_found = by_status[404]
    assert not_found.headers["X-Error-Code"] in codes
    assert not_found.headers["X-Error-Code"] == errors["repo_not_found"]["headers"]["X-Error-Code"]
    assert not_found.body == errors["repo_not_found"]["body"]

    bad_token = by_status[401]
    assert bad_token.headers["X-Error-Message"] == errors["invalid_credentials"]["headers"]["X-Error-Message"]

    assert by_status[403].headers.get("X-Error-Message")

    exists = by_status[409]
    recorded = material("repos")["examples"]["create_409"]
    assert set(exists.body) == set(recorded["body"])

    def error_headers(headers) -> set[str]:
        return {h.lower() for h in headers if h.lower().startswith("x-error")}

    assert error_headers(exists.headers) == error_headers(recorded["headers"])  # none, as recorded
    assert material("repos")["client_loops_on"]["text"] not in json.dumps(exists.body)

    limited = by_status[429]
    recorded = errors["rate_limited"]["headers"]
    for name, value in recorded.items():
        shape = re.sub(r"=\d+", "=<n>", value)
        assert re.sub(r"=\d+", "=<n>", limited.headers[name]) == shape, name

    for answer in by_status.values():
        assert isinstance(answer.body, dict), str(answer)
        assert isinstance(answer.body.get("error", ""), str | list), str(answer)


def test_no_request_of_a_publish_goes_to_xet(wire, tmp_path):
    _publish_like_production(tmp_path)
    assert wire
    # By path segment: a signed upload token in the path may contain the letters "xet" by chance.
    assert [str(a) for a in wire if any(seg.lower().startswith("xet") for seg in a.path.split("/"))] == []
