"""A training's photos from a ZIP URL (POST /trainings/{id}/photos/from-url), over real HTTP: a host
of TRAINING_ZIP_URL_HOSTS only, fetched by the guarded downloader, the upload's limits enforced
before anything is unpacked (size, members, a bomb's declared size), one verdict per photo."""

from __future__ import annotations

import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.api.conftest import token_for, training
from tests.training import images
from training.models import DatasetImage, TrainingJob

pytestmark = pytest.mark.django_db(transaction=True)


class Files:
    """A tiny HTTP server on 127.0.0.1 that serves `self.files[path]` (404 otherwise)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        files = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                files.requests.append(self.path)
                body = files.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str, data: bytes) -> str:
        self.files[path] = data
        return self.base + path


@pytest.fixture
def files(settings):
    server = Files()
    settings.TRAINING_ZIP_URL_HOSTS = ["127.0.0.1"]
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def http(sandbox, alice, settings):
    settings.DATASET_MIN_IMAGES = 2
    _, secret = token_for(alice)
    with httpx.Client(base_url=sandbox, headers={"Authorization": f"Bearer {secret}"}, timeout=60) as client:
        yield client


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _draft(alice) -> TrainingJob:
    from training.services import training_create

    return training_create(owner=alice, name="Anna", trigger_word="ohwx_anna", subject_kind="subject")


def _post(http: httpx.Client, job: TrainingJob, url: str) -> httpx.Response:
    return http.post(f"/api/v1/trainings/{job.pk}/photos/from-url", json={"url": url})


def test_the_photos_of_a_zip_on_an_allowed_host_are_added_with_their_captions_and_one_bad_file_costs_nothing(
    alice, http, files
):
    job = _draft(alice)
    archive = _zip(
        {
            "anna/p1.jpg": images.photo(seed=1),
            "anna/p1.txt": b"ohwx_anna smiling",
            "anna/p2.jpg": images.photo(seed=2),
            "anna/broken.jpg": b"\xff\xd8 not really a jpeg",
            "anna/p3.jpg": images.photo(seed=3),
        }
    )
    answer = _post(http, job, files.url("/sets/anna.zip", archive))
    assert answer.status_code == 200, answer.text
    verdicts = {v["name"]: v["ok"] for v in answer.json()["files"]}
    assert verdicts == {
        "anna.zip › p1.jpg": True,
        "anna.zip › p2.jpg": True,
        "anna.zip › broken.jpg": False,
        "anna.zip › p3.jpg": True,
    }
    assert answer.json()["photo_count"] == 3 and answer.json()["ready"] is True
    assert DatasetImage.objects.filter(dataset__training=job).count() == 3
    assert DatasetImage.objects.filter(dataset__training=job, caption="ohwx_anna smiling").count() == 1


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        ([], "turned off"),
        (["files.example.com"], "only fetched from files.example.com, not 127.0.0.1"),
    ],
)
def test_a_host_not_allowed_is_refused_before_any_request(alice, http, files, settings, hosts, message):
    settings.TRAINING_ZIP_URL_HOSTS = hosts
    job = _draft(alice)
    answer = _post(http, job, files.url("/a.zip", _zip({"p.jpg": images.photo(seed=1)})))
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "url"
    assert message in answer.json()["errors"][0]["message"]
    assert files.requests == [] and not DatasetImage.objects.exists()


def test_a_private_address_and_plain_http_are_refused_outside_the_sandbox(alice, http, files, settings):
    job = _draft(alice)
    url = files.url("/a.zip", _zip({"p.jpg": images.photo(seed=1)}))
    settings.SANDBOX_MODE = False
    answer = _post(http, job, url)
    assert answer.status_code == 422 and "must use https" in answer.json()["detail"]
    answer = _post(http, job, url.replace("http://", "https://"))
    assert answer.status_code == 422 and "only from public addresses" in answer.json()["detail"]
    assert files.requests == [] and not DatasetImage.objects.exists()


def test_a_zip_at_the_size_limit_is_read_and_one_byte_over_is_refused_without_unpacking(
    alice, http, files, settings
):
    job = _draft(alice)
    archive = _zip({"p1.jpg": images.photo(seed=1), "p2.jpg": images.photo(seed=2)})
    url = files.url("/two.zip", archive)
    settings.DATASET_MAX_TOTAL_BYTES = len(archive) - 1
    over = _post(http, job, url)
    assert over.status_code == 422 and "larger than" in over.json()["detail"]
    assert not DatasetImage.objects.exists()
    settings.DATASET_MAX_TOTAL_BYTES = len(archive)
    at = _post(http, job, url)
    assert at.status_code == 200, at.text
    assert at.json()["photo_count"] == 2


def test_a_zip_bomb_is_refused_whole_from_its_declared_size(alice, http, files, settings):
    job = _draft(alice)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("p1.jpg", images.photo(seed=1))
        archive.writestr("bomb.jpg", b"\0" * (20 * 1024 * 1024))  # 20 MB of zeros, ~20 kB packed
    bomb = out.getvalue()
    settings.DATASET_MAX_TOTAL_BYTES = 10 * 1024 * 1024
    assert len(bomb) < settings.DATASET_MAX_TOTAL_BYTES  # the download itself is within the limit
    answer = _post(http, job, files.url("/bomb.zip", bomb))
    assert answer.status_code == 200, answer.text
    [verdict] = answer.json()["files"]
    assert (
        verdict["ok"] is False
        and "expands to" in verdict["message"]
        and "nothing was added" in verdict["message"]
    )
    assert not DatasetImage.objects.exists()


def test_a_zip_with_too_many_files_is_refused_whole_and_one_at_the_limit_is_read(
    alice, http, files, settings
):
    settings.DATASET_ZIP_MAX_MEMBERS = 3
    job = _draft(alice)
    too_many = _zip({f"p{i}.jpg": images.photo(seed=i) for i in range(4)})
    answer = _post(http, job, files.url("/four.zip", too_many))
    [verdict] = answer.json()["files"]
    assert verdict["ok"] is False and "holds 4 files; the most we read is 3" in verdict["message"]
    assert not DatasetImage.objects.exists()
    at_limit = _zip({f"p{i}.jpg": images.photo(seed=i) for i in range(3)})
    answer = _post(http, job, files.url("/three.zip", at_limit))
    assert answer.status_code == 200 and answer.json()["photo_count"] == 3


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [("/photo.jpg", None, "is not a ZIP archive"), ("/missing.zip", b"", "answered HTTP 404")],
)
def test_a_file_that_is_not_a_zip_or_not_there_adds_nothing(alice, http, files, path, body, message):
    job = _draft(alice)
    url = files.url(path, images.photo(seed=1)) if body is None else files.base + path
    answer = _post(http, job, url)
    assert answer.status_code == 422 and message in answer.json()["detail"]
    assert not DatasetImage.objects.exists()


def test_a_started_training_is_a_409_and_another_owners_is_404(alice, bob, http, files):
    started = training(alice, status=TrainingJob.Status.REPLICATE_TRAINING)
    from training.models import Dataset

    Dataset.objects.get_or_create(training=started)
    url = files.url("/a.zip", _zip({"p.jpg": images.photo(seed=1)}))
    answer = _post(http, started, url)
    assert answer.status_code == 409 and "can no longer be changed" in answer.json()["detail"]
    bobs = _draft(bob)
    assert _post(http, bobs, url).status_code == 404
    assert files.requests == []
