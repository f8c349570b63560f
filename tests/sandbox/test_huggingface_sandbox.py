"""The Hub stand-in, driven by the official huggingface_hub client over real HTTP.

Xet is off here (conftest sets HF_HUB_DISABLE_XET=1 before the SDK is imported), so uploads take
the classic preupload -> LFS batch -> PUT -> verify -> commit path that the stand-in speaks.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from sandbox.faults import fault_inject
from sandbox.huggingface.models import HubLfsObject

pytestmark = pytest.mark.django_db(transaction=True)

BIG = 20 * 1024 * 1024
README = b"---\nlicense: other\ntags:\n- flux\n- lora\n---\n# A test LoRA\n\nTrigger word: TOK\n"


@pytest.fixture
def hub(sandbox, settings, tmp_path):
    settings.SANDBOX_HF_ROOT = tmp_path / "hf-store"
    return HfApi(endpoint=settings.HF_ENDPOINT, token=settings.HF_TOKEN)


@pytest.fixture
def big_file(tmp_path):
    path = tmp_path / "lora.safetensors"
    path.write_bytes(os.urandom(BIG))
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_20_mb_lora_and_a_readme_go_up_in_one_commit_and_come_back_identical(hub, big_file, tmp_path, settings):
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
    weights = hf_hub_download("fluxsite/my-lora", "lora.safetensors", endpoint=settings.HF_ENDPOINT,
                              token=settings.HF_TOKEN, local_dir=out)
    readme = hf_hub_download("fluxsite/my-lora", "README.md", endpoint=settings.HF_ENDPOINT,
                             token=settings.HF_TOKEN, local_dir=out, revision=info.oid)
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
        json={"operation": "upload", "transfers": ["basic"], "hash_algo": "sha256",
              "objects": [{"oid": sha256(blob), "size": len(blob)}, {"oid": "a" * 64, "size": 3}]},
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
    assert HfApi(endpoint=settings.HF_ENDPOINT, token="hf_readonly_x").whoami()["auth"]["accessToken"]["role"] == "read"
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
        hf_hub_download("fluxsite/empty", "missing.bin", endpoint=settings.HF_ENDPOINT, token=settings.HF_TOKEN,
                        local_dir=tmp_path / "x")


def test_the_head_answer_carries_what_hf_hub_download_needs(hub, big_file):
    hub.create_repo("fluxsite/heads")
    commit = hub.upload_file(path_or_fileobj=big_file, path_in_repo="lora.safetensors", repo_id="fluxsite/heads")
    r = httpx2.head(f"{hub.endpoint}/fluxsite/heads/resolve/main/lora.safetensors",
                    headers={"Authorization": f"Bearer {hub.token}"})
    assert r.status_code == 200
    assert r.headers["X-Repo-Commit"] == commit.oid
    assert r.headers["X-Linked-Etag"] == f'"{sha256(big_file.read_bytes())}"'
    assert r.headers["X-Linked-Size"] == str(BIG)
    assert r.headers["Content-Length"] == str(BIG)


def test_an_armed_fault_answers_in_the_hub_shape(hub):
    fault_inject(service="huggingface", operation="repos.create", status=429, retry_after=7)
    r = httpx2.post(f"{hub.endpoint}/api/repos/create", headers={"Authorization": f"Bearer {hub.token}"},
                    json={"name": "x", "organization": "fluxsite"})
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "7"
    assert "error" in r.json()
    assert r.headers["X-Error-Message"]
    # consumed: the next call works
    assert hub.create_repo("fluxsite/x").repo_id == "fluxsite/x"
