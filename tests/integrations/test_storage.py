"""fluxsite.integrations.storage against a real S3 endpoint (moto over HTTP) and local files."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import zlib
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
import time_machine
from django.core.files.storage import storages

from fluxsite.integrations import storage

BUCKET = "fluxsite-test"


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture
def s3(moto_endpoint, settings):
    """Both storages on S3, as production configures them (private: signed URLs only)."""
    common = {
        "bucket_name": BUCKET,
        "endpoint_url": moto_endpoint,
        "access_key": "testing",
        "secret_key": "testing",
        "region_name": "us-east-1",
        "signature_version": "s3v4",
        "addressing_style": "path",
        "file_overwrite": False,
        "default_acl": None,
    }
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {**common, "location": "public"}},
        "private": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {**common, "location": "private", "querystring_auth": True, "querystring_expire": 600},
        },
    }
    return boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


def test_a_saved_file_reads_back_from_s3(s3):
    name = storage.file_save(alias="private", name="notes/hello.txt", content=io.BytesIO(b"hello world"))

    assert not storage.is_local("private")
    assert s3.get_object(Bucket=BUCKET, Key=f"private/{name}")["Body"].read() == b"hello world"
    assert storage.file_sha256(alias="private", name=name) == (hashlib.sha256(b"hello world").hexdigest(), 11)


def test_a_streamed_write_over_10_mb_arrives_intact_as_a_multipart_upload(s3):
    digest = hashlib.sha256()
    handle = storage.file_open_for_writing(alias="private", name="big/blob.bin")
    for _ in range(11):
        chunk = os.urandom(1024 * 1024)
        digest.update(chunk)
        handle.write(chunk)
    handle.close()

    head = s3.head_object(Bucket=BUCKET, Key="private/big/blob.bin")
    assert head["ContentLength"] == 11 * 1024 * 1024
    assert "-" in head["ETag"]  # multipart ETags end in -<number of parts>
    body = s3.get_object(Bucket=BUCKET, Key="private/big/blob.bin")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == digest.hexdigest()


def test_a_signed_s3_url_downloads_and_expires(s3):
    storage.file_save(alias="private", name="signed/a.bin", content=io.BytesIO(b"payload"))

    url = storage.signed_url(alias="private", name="signed/a.bin", expires=120)

    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["120"] and query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert httpx.get(url, timeout=10).content == b"payload"
    unsigned = url.split("?", 1)[0]
    assert httpx.get(unsigned, timeout=10).status_code == 403


def test_the_dataset_zip_streams_into_s3(s3, alice, alice_client, settings):
    from tests.training.conftest import add_photos
    from training.services import dataset_build_zip, dataset_zip_url, training_create

    settings.DATASET_MIN_IMAGES = 3
    training = training_create(owner=alice, name="Anna", trigger_word="ohwx_anna", subject_kind="subject")
    add_photos(alice_client, training, 3)

    dataset = dataset_build_zip(dataset_id=training.dataset.pk)

    body = httpx.get(dataset_zip_url(dataset=dataset), timeout=10).content
    assert len(body) == dataset.zip_size and f"{zlib.crc32(body):08x}" == dataset.zip_crc32
    assert body.startswith(b"PK\x03\x04")
    names = [
        key["Key"]
        for key in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"private/datasets/{training.pk}/")["Contents"]
    ]
    assert f"private/{dataset.zip_name}" in names and len(names) == 3 * 2 + 1


# --- Local files ------------------------------------------------------------------------------------
def test_a_local_signed_url_serves_the_file_until_it_expires(client, settings):
    name = storage.file_save(alias="private", name="local/x.bin", content=io.BytesIO(b"local bytes"))
    assert storage.is_local("private")

    with time_machine.travel("2030-01-01 12:00Z", tick=False):
        path = storage.signed_url(alias="private", name=name, expires=60, absolute=False)
        response = client.get(path)
        assert response.status_code == 200 and b"".join(response.streaming_content) == b"local bytes"
    with time_machine.travel("2030-01-01 12:00:59Z", tick=False):
        assert client.get(path).status_code == 200
    with time_machine.travel("2030-01-01 12:01:02Z", tick=False):
        assert client.get(path).status_code == 404


def test_a_tampered_local_token_is_refused(client):
    name = storage.file_save(alias="private", name="local/y.bin", content=io.BytesIO(b"y"))
    path = storage.signed_url(alias="private", name=name, absolute=False)
    token = path.rsplit("/", 1)[1]
    tampered = token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")

    assert client.get(path).status_code == 200
    assert client.get(f"/files/{tampered}").status_code == 404
    assert client.get("/files/not-a-token").status_code == 404


def test_the_local_url_is_absolute_on_site_url(settings):
    settings.SITE_URL = "https://fluxsite.example"
    name = storage.file_save(alias="private", name="local/z.bin", content=io.BytesIO(b"z"))

    assert storage.signed_url(alias="private", name=name).startswith("https://fluxsite.example/files/")
    assert storages["private"].exists(name)
