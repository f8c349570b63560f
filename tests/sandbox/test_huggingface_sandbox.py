"""The Hub stand-in, driven by the official huggingface_hub client over real HTTP.

The client is built by `huggingface_client.build_api()`, as in production, which keeps uploads on
the Git LFS path: preupload -> LFS batch -> PUT -> verify -> commit, the path the stand-in speaks.
Nothing in the test environment turns Xet off, so this file passes alone or among others alike.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.utils import parse_ratelimit_headers

from fluxsite.integrations import huggingface_client as hf
from sandbox.faults import fault_inject
from sandbox.huggingface import hub as hub_state
from sandbox.huggingface.models import HubLfsObject

pytestmark = pytest.mark.django_db(transaction=True)

BIG = 20 * 1024 * 1024
README = b"---\nlicense: other\ntags:\n- flux\n- lora\n---\n# A test LoRA\n\nTrigger word: TOK\n"


@pytest.fixture
def hub(sandbox, settings, tmp_path):
    settings.SANDBOX_HF_ROOT = tmp_path / "hf-store"
    hub_state.xet_requests_clear()
    api = hf.build_api(token=settings.HF_TOKEN)
    yield api
    assert hub_state.xet_requests() == [], "the SDK took the Xet path, which production does not take"


@pytest.fixture
def big_file(tmp_path):
    path = tmp_path / "lora.safetensors"
    path.write_bytes(os.urandom(BIG))
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_20_mb_lora_and_a_readme_go_up_in_one_commit_and_come_back_identical(
    hub, big_file, tmp_path, settings
):
    url = hub.create_repo("fluxsite/my-lora", private=True, exist_ok=True)
    assert url.repo_id == "fluxsite/my-lora"

    info = hub.create_commit(
        "fluxsite/my-lora",
        [CommitOperationAdd("lora.safetensors", big_file), CommitOperationAdd("README.md", README)],
        commit_message="Upload LoRA",
    )
    assert len(info.oid) == 40
    assert info.commit_url.endswith(f"/fluxsite/my-lora/commit/{info.oid}")
    assert HubLfsObject.objects.filter(oid=sha256(big_file.read_bytes()), verified=True).exists()

    out = tmp_path / "out"
    weights = hub.hf_hub_download("fluxsite/my-lora", "lora.safetensors", local_dir=out)
    readme = hub.hf_hub_download("fluxsite/my-lora", "README.md", local_dir=out, revision=info.oid)
    assert sha256(Path(weights).read_bytes()) == sha256(big_file.read_bytes())
    assert Path(readme).read_bytes() == README

    model = hub.model_info("fluxsite/my-lora", files_metadata=True)
    assert model.sha == info.oid
    assert model.private is True
    siblings = {s.rfilename: s for s in model.siblings}
    assert set(siblings) == {".gitattributes", "README.md", "lora.safetensors"}
    assert siblings["lora.safetensors"].lfs.sha256 == sha256(big_file.read_bytes())
    assert siblings["lora.safetensors"].size == BIG
    assert siblings["README.md"].lfs is None


def test_an_already_stored_lfs_object_is_not_uploaded_twice(hub, tmp_path):
    hub.create_repo("fluxsite/a", exist_ok=True)
    hub.create_repo("fluxsite/b", exist_ok=True)
    blob = os.urandom(1024)
    hub.upload_file(path_or_fileobj=blob, path_in_repo="w.safetensors", repo_id="fluxsite/a")
    r = httpx2.post(
        f"{hub.endpoint}/fluxsite/b.git/info/lfs/objects/batch",
        headers={"Authorization": f"Bearer {hub.token}"},
        json={
            "operation": "upload",
            "transfers": ["basic"],
            "hash_algo": "sha256",
            "objects": [{"oid": sha256(blob), "size": len(blob)}, {"oid": "a" * 64, "size": 3}],
        },
    )
    assert r.status_code == 200
    first, second = r.json()["objects"]
    assert "actions" not in first
    assert second["actions"]["upload"]["href"].startswith(hub.endpoint)


def test_recreating_a_repo_is_409_unless_exist_ok(hub):
    hub.create_repo("fluxsite/dup")
    with pytest.raises(HfHubHTTPError) as err:
        hub.create_repo("fluxsite/dup")
    assert err.value.response.status_code == 409
    assert err.value.response.json()["url"].endswith("/fluxsite/dup")
    assert hub.create_repo("fluxsite/dup", exist_ok=True).repo_id == "fluxsite/dup"


def test_a_private_repo_is_not_found_for_anonymous_readers_until_made_public(hub, settings):
    hub.create_repo("fluxsite/secret", private=True)
    hub.upload_file(path_or_fileobj=b"hello", path_in_repo="notes.txt", repo_id="fluxsite/secret")
    anonymous = HfApi(endpoint=settings.HF_ENDPOINT, token=False)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info("fluxsite/secret")

    hub.update_repo_settings("fluxsite/secret", private=False)
    assert anonymous.model_info("fluxsite/secret").private is False
    hub.update_repo_settings("fluxsite/secret", private=True)
    assert hub.model_info("fluxsite/secret").private is True
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info("fluxsite/secret")


def test_a_deleted_repo_is_not_found(hub):
    hub.create_repo("fluxsite/gone")
    hub.delete_repo("fluxsite/gone")
    with pytest.raises(RepositoryNotFoundError):
        hub.model_info("fluxsite/gone")
    with pytest.raises(RepositoryNotFoundError):
        hub.delete_repo("fluxsite/gone")
    hub.delete_repo("fluxsite/gone", missing_ok=True)


def test_whoami_names_the_account_and_the_token_role(hub, settings):
    me = hub.whoami()
    assert me["name"] == settings.HF_NAMESPACE
    assert me["type"] == "user"
    assert me["auth"]["accessToken"]["role"] == "write"
    assert (
        HfApi(endpoint=settings.HF_ENDPOINT, token="hf_readonly_x").whoami()["auth"]["accessToken"]["role"]
        == "read"
    )
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(endpoint=settings.HF_ENDPOINT, token="hf_wrong").whoami()
    assert err.value.response.status_code == 401
    assert err.value.response.headers["X-Error-Message"]


def test_a_read_only_token_cannot_create_a_repo(hub, settings):
    reader = HfApi(endpoint=settings.HF_ENDPOINT, token="hf_readonly_x")
    with pytest.raises(HfHubHTTPError) as err:
        reader.create_repo("fluxsite/nope")
    assert err.value.response.status_code == 403
    assert "error" in err.value.response.json()


def test_a_missing_file_is_an_entry_not_found(hub, settings, tmp_path):
    from huggingface_hub.errors import RemoteEntryNotFoundError

    hub.create_repo("fluxsite/empty")
    with pytest.raises(RemoteEntryNotFoundError):
        hub.hf_hub_download("fluxsite/empty", "missing.bin", local_dir=tmp_path / "x")


def test_the_head_answer_carries_what_hf_hub_download_needs(hub, big_file):
    hub.create_repo("fluxsite/heads")
    commit = hub.upload_file(
        path_or_fileobj=big_file, path_in_repo="lora.safetensors", repo_id="fluxsite/heads"
    )
    r = httpx2.head(
        f"{hub.endpoint}/fluxsite/heads/resolve/main/lora.safetensors",
        headers={"Authorization": f"Bearer {hub.token}"},
    )
    assert r.status_code == 200
    assert r.headers["X-Repo-Commit"] == commit.oid
    assert r.headers["X-Linked-Etag"] == f'"{sha256(big_file.read_bytes())}"'
    assert r.headers["X-Linked-Size"] == str(BIG)
    assert r.headers["Content-Length"] == str(BIG)


def test_an_armed_429_carries_the_rate_limit_headers_the_hub_documents(hub):
    fault_inject(service="huggingface", operation="repos.create", status=429, retry_after=7)
    r = httpx2.post(
        f"{hub.endpoint}/api/repos/create",
        headers={"Authorization": f"Bearer {hub.token}"},
        json={"name": "x", "organization": "fluxsite"},
    )
    assert r.status_code == 429
    # huggingface_hub's own parser reads the wait from the RateLimit header (hub-docs rate-limits.md).
    info = parse_ratelimit_headers(r.headers)
    assert info is not None
    assert (info.remaining, info.reset_in_seconds) == (0, 7)
    assert r.json() == {}
    # consumed: the next call works
    assert hub.create_repo("fluxsite/x").repo_id == "fluxsite/x"


def test_an_armed_404_names_the_error_code_the_sdk_keys_on(hub):
    hub.create_repo("fluxsite/there")
    fault_inject(service="huggingface", operation="repo.info", status=404)
    with pytest.raises(RepositoryNotFoundError) as err:
        hub.model_info("fluxsite/there")
    assert err.value.response.headers["X-Error-Code"] == "RepoNotFound"
    assert err.value.response.json() == {"error": "Repository not found"}


def test_a_xet_token_request_is_refused_and_recorded(hub):
    hub.create_repo("fluxsite/xet")
    r = httpx2.get(
        f"{hub.endpoint}/api/models/fluxsite/xet/xet-write-token/main",
        headers={"Authorization": f"Bearer {hub.token}"},
    )
    assert r.status_code == 501
    assert "Git LFS" in r.json()["error"]
    assert hub_state.xet_requests() == ["/sandbox/hf/api/models/fluxsite/xet/xet-write-token/main"]
    hub_state.xet_requests_clear()  # this test asked on purpose; the fixture checks the rest
