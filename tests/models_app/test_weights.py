"""Fetching and checking a training's weights: what is refused, and that a good tar goes through."""

from __future__ import annotations

import tarfile

import pytest

from fluxsite.integrations.errors import Category, IntegrationError
from fluxsite.integrations.replicate_files import output_url_check, weights_fetch
from models_app.services.weights import safetensors_check, weights_extract_lora
from tests.models_app.conftest import CONFIG, ROOT, good_tar, safetensors_bytes, tar_bytes


@pytest.fixture
def sandboxed(settings):
    settings.SANDBOX_MODE = True
    settings.SITE_URL = "http://127.0.0.1:8000"
    settings.REPLICATE_BASE_URL = "http://127.0.0.1:8000/sandbox/replicate"
    return settings


def _extract(tmp_path, data: bytes):
    tar = tmp_path / "in.tar"
    tar.write_bytes(data)
    return weights_extract_lora(tar_path=tar, dest_dir=tmp_path / "out")


def test_a_good_tar_gives_the_lora_and_its_config(tmp_path):
    lora = safetensors_bytes()
    path = _extract(tmp_path, good_tar(lora))
    assert path.read_bytes() == lora
    assert (path.parent / "config.yaml").read_bytes() == CONFIG
    assert not (tmp_path / "out" / "captions").exists()


@pytest.mark.parametrize(
    ("members", "links", "expected"),
    [
        ([("../../etc/evil", b"x"), (f"{ROOT}/lora.safetensors", safetensors_bytes())], [], "unsafe path"),
        ([("/abs/lora.safetensors", safetensors_bytes())], [], "unsafe path"),
        (
            [(f"{ROOT}/config.yaml", CONFIG)],
            [(f"{ROOT}/lora.safetensors", "/etc/passwd", tarfile.SYMTYPE)],
            "link or special file",
        ),
        (
            [(f"{ROOT}/config.yaml", CONFIG)],
            [(f"{ROOT}/lora.safetensors", f"{ROOT}/config.yaml", tarfile.LNKTYPE)],
            "link or special file",
        ),
        (
            [(f"{ROOT}/lora.safetensors", safetensors_bytes())],
            [("dev", "", tarfile.CHRTYPE)],
            "link or special file",
        ),
        ([(f"{ROOT}/config.yaml", CONFIG)], [], "no lora.safetensors"),
    ],
)
def test_unsafe_or_incomplete_archives_are_refused(tmp_path, members, links, expected):
    with pytest.raises(IntegrationError) as err:
        _extract(tmp_path, tar_bytes(members, links=links))
    assert expected in err.value.message
    assert err.value.category == Category.FILE_ERROR and err.value.retryable is False
    assert not (tmp_path / "out" / "lora.safetensors").exists() or expected == "no lora.safetensors"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"not a safetensors file at all, just text", "header length"),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}", "not JSON"),
        (safetensors_bytes()[:-10], "do not match the file size"),
        (safetensors_bytes().replace(b'"BF16"', b'"XX16"', 1), "malformed"),
        (safetensors_bytes().replace(b"[4, 64]", b"[4, 65]", 1), "wrong size for its shape"),
        (b"\x03\x00\x00\x00\x00\x00\x00\x00{} ", "holds no tensors"),
    ],
)
def test_a_fake_safetensors_file_is_refused(tmp_path, content, expected):
    with pytest.raises(IntegrationError) as err:
        _extract(tmp_path, tar_bytes([(f"{ROOT}/lora.safetensors", content)]))
    assert expected in err.value.message


def test_a_real_safetensors_header_is_read(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(safetensors_bytes({"a": ("F32", [3, 3]), "b": ("F16", [2]), "c": ("BF16", [0])}))
    assert safetensors_check(path=path).tensors == 3


def test_a_member_over_the_size_cap_is_refused(tmp_path, settings):
    settings.REPLICATE_WEIGHTS_MAX_BYTES = 200
    with pytest.raises(IntegrationError) as err:
        _extract(tmp_path, good_tar())
    assert "larger than" in err.value.message


def test_the_size_cap_is_named_in_readable_units(tmp_path, settings):
    settings.REPLICATE_WEIGHTS_MAX_BYTES = 1100  # the LoRA member is 1232 bytes
    with pytest.raises(IntegrationError) as err:
        _extract(tmp_path, good_tar())
    assert "larger than the 1.1\xa0KB limit" in err.value.message  # Django's filesizeformat


def test_the_sandbox_downloads_a_good_tar(tmp_path, sandboxed, file_server):
    file_server.routes["/t.tar"] = good_tar()
    path = weights_fetch(url=file_server.url("/t.tar"), dest_dir=tmp_path)
    assert path.read_bytes() == good_tar()


def test_a_download_over_the_cap_is_stopped_by_its_content_length(tmp_path, sandboxed, file_server):
    sandboxed.REPLICATE_WEIGHTS_MAX_BYTES = 1000
    file_server.routes["/big.tar"] = b"x" * 5000
    with pytest.raises(IntegrationError) as err:
        weights_fetch(url=file_server.url("/big.tar"), dest_dir=tmp_path)
    assert "larger than" in err.value.message
    assert list(tmp_path.iterdir()) == []  # the partial file is gone


def test_a_download_over_the_cap_is_stopped_by_counting_when_no_length_is_sent(
    tmp_path, sandboxed, file_server
):
    sandboxed.REPLICATE_WEIGHTS_MAX_BYTES = 1000
    file_server.routes["/big.tar"] = ("nolength", b"x" * 5000)
    with pytest.raises(IntegrationError) as err:
        weights_fetch(url=file_server.url("/big.tar"), dest_dir=tmp_path)
    assert "download stopped" in err.value.message
    assert list(tmp_path.iterdir()) == []


def test_a_removed_file_is_a_clear_non_retryable_error(tmp_path, sandboxed, file_server):
    with pytest.raises(IntegrationError) as err:
        weights_fetch(url=file_server.url("/gone.tar"), dest_dir=tmp_path)
    assert "no longer available" in err.value.message
    assert err.value.retryable is False


def test_a_redirect_to_a_private_address_is_not_followed(tmp_path, sandboxed, file_server):
    file_server.routes["/r.tar"] = ("redirect", "http://169.254.169.254/latest/meta-data")
    with pytest.raises(IntegrationError) as err:
        weights_fetch(url=file_server.url("/r.tar"), dest_dir=tmp_path)
    assert err.value.category == Category.VALIDATION


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://replicate.delivery/x/trained_model.tar", "must use https"),
        ("https://evil.example.com/trained_model.tar", "only downloaded from"),
        ("https://localhost/trained_model.tar", "private address"),
        ("http://127.0.0.1:8000/sandbox/replicate/v1/files/x.tar", "must use https"),
        ("ftp://replicate.delivery/x.tar", "must use https"),
        ("https://user:pw@replicate.delivery/x.tar", "not a valid download address"),
    ],
)
def test_outside_sandbox_mode_only_public_https_delivery_hosts_are_allowed(settings, url, expected):
    settings.SANDBOX_MODE = False
    settings.SITE_URL = "http://127.0.0.1:8000"
    settings.REPLICATE_DOWNLOAD_HOSTS = ["replicate.delivery", "localhost"]
    with pytest.raises(IntegrationError) as err:
        output_url_check(url)
    assert expected in err.value.message
    assert err.value.category == Category.VALIDATION


def test_sandbox_mode_allows_only_the_sandbox_host_over_http(sandboxed):
    output_url_check("http://127.0.0.1:8000/sandbox/replicate/v1/files/x.tar")
    with pytest.raises(IntegrationError):
        output_url_check("http://10.1.2.3/x.tar")


def test_downloads_from_the_api_host_allow_only_the_stand_in_of_replicate_over_http(settings):
    settings.SANDBOX_MODE = False
    settings.SITE_URL = "http://127.0.0.2:8000"
    settings.REPLICATE_BASE_URL = "http://127.0.0.1:9000/sandbox/replicate"
    settings.REPLICATE_DOWNLOADS_FROM_API_HOST = True

    output_url_check("http://127.0.0.1:9000/sandbox/replicate/v1/files/x.tar")
    for refused in ("http://127.0.0.2:8000/files/x.tar", "http://10.1.2.3/x.tar"):
        with pytest.raises(IntegrationError) as err:
            output_url_check(refused)
        assert err.value.category == Category.VALIDATION


def test_without_downloads_from_the_api_host_the_stand_in_of_replicate_is_refused(settings):
    settings.SANDBOX_MODE = False
    settings.REPLICATE_BASE_URL = "http://127.0.0.1:9000/sandbox/replicate"
    settings.REPLICATE_DOWNLOADS_FROM_API_HOST = False

    with pytest.raises(IntegrationError) as err:
        output_url_check("http://127.0.0.1:9000/sandbox/replicate/v1/files/x.tar")
    assert "must use https" in err.value.message
