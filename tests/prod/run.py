"""The production-like run (issue 20, item 1), called last by .ci/run.

    .venv/bin/python tests/prod/run.py [--pg postgres://postgres@127.0.0.1:5432] [--db fluxsite_prod]
        [--redis redis://127.0.0.1:6379/15] [--trainings 20] [--users 5] [--timeout 420] [--keep]

Starts the stack of tests/prod/stack.py (moto's S3, the sandbox in its own gunicorn and database, the
site in gunicorn with production settings, two `manage.py qcluster` processes sharing Redis), then,
only over HTTP as a client would: `--users` people start `--trainings` trainings at once through the
developer API (create, photos, start, each with an Idempotency-Key), one cluster is SIGKILLed while
trainings are at Replicate, the first models generate images through the API, and one person buys a
credit pack through the dashboard and the sandbox's hosted Stripe checkout (the webhook grants the
credits). It then checks that everything finished, that `manage.py credits_check` is clean and every
spend is in the ledger, that the sandbox holds exactly the trainings and predictions we asked for (no
paid call made twice, none unknown to us), that every file went to S3 and none to local disk, and
that signed URLs work and unsigned ones do not. Prints figures; exits 1 with the processes' last log
lines on any failure. Every child process is stopped on the way out, whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from http.cookies import SimpleCookie
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.prod.stack import BUCKET, S3_KEY, S3_SECRET, Stack, forget, make_stack  # noqa: E402

PHOTOS = 5  # per training (DATASET_MIN_IMAGES below)
TRAINING_STEPS = 1000
HTTPS = {"X-Forwarded-Proto": "https"}  # what the TLS proxy in front of gunicorn adds


class RunFailed(Exception):
    pass


def check(ok: object, message: str) -> None:
    if not ok:
        raise RunFailed(message)


def wait(predicate, *, timeout: float, what: str, stack: Stack, interval: float = 0.5):
    """Poll `predicate` until it returns something truthy; fail naming `what` after `timeout`. A
    process that died unexpectedly fails the run at once."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        for p in stack.processes:
            if not p.alive() and not p.killed_on_purpose:
                raise RunFailed(f"{p.name} exited ({p.popen.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise RunFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# --- Clients ----------------------------------------------------------------------------------------
def api_client(stack: Stack, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{stack.site}/api/v1",
        headers={"Authorization": f"Bearer {token}", **HTTPS},
        # Generous: 20 uploads at once share 2 loaded cores with the clusters and the sandbox.
        timeout=httpx.Timeout(180, connect=10),
        # A new connection per request: gunicorn closes a kept-alive connection after 2 s idle, and a
        # POST sent on one it has just closed fails with "Server disconnected" (seen in CI while the
        # client was drawing the next request's photos); httpx does not resend a POST by itself.
        limits=httpx.Limits(max_keepalive_connections=0),
    )


class Browser:
    """A signed-in person on the dashboard. Cookies are kept by hand: the site marks them Secure (it
    believes it is behind TLS), which an http client would otherwise never send back."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}
        self.http = httpx.Client(timeout=60)

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {
            **HTTPS,
            "Origin": self.base.replace("http://", "https://"),
            "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
            **kwargs.pop("headers", {}),
        }
        response = self.http.request(method, self.base + path, headers=headers, **kwargs)
        for header in response.headers.get_list("set-cookie"):
            jar: SimpleCookie = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                self.cookies[name] = morsel.value
        return response

    def post_form(self, path: str, data: dict[str, str]) -> httpx.Response:
        return self.request(
            "POST", path, data={"csrfmiddlewaretoken": self.cookies.get("csrftoken", ""), **data}
        )


# --- The work ----------------------------------------------------------------------------------------
def people(count: int, prefix: str = "prod-run") -> list[tuple[str, str]]:
    """Confirmed accounts with credits for four trainings each, and an API token each: (email, token)."""
    from _common import confirmed_user

    from billing.services import credits_grant
    from fluxsite.accounts.services import api_token_create

    made = []
    for i in range(count):
        with contextlib.redirect_stdout(io.StringIO()):  # the console e-mail backend prints the welcome
            user = confirmed_user(f"{prefix}-{i}@example.com")
        credits_grant(user=user, amount=5000, reference=f"{prefix}:topup:{i}")
        _token, secret = api_token_create(user=user, name="prod run", scopes=["read", "train", "generate"])
        made.append((user.email, secret))
    return made


def photos(seed: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    from _common import phone_jpeg

    return [
        ("files", (f"photo-{seed}-{n}.jpg", phone_jpeg(640, 768, seed=seed * 100 + n), "image/jpeg"))
        for n in range(PHOTOS)
    ]


def training_start(stack: Stack, token: str, n: int) -> int:
    """Create, fill and start one training through the API; returns its id."""
    try:
        return _training_start(stack, token, n)
    except httpx.HTTPError as exc:
        raise RunFailed(f"training {n}: {type(exc).__name__} {exc} on {exc.request.url}") from exc


def _training_start(stack: Stack, token: str, n: int) -> int:
    files = photos(n)  # drawn before the first request, not between two
    with api_client(stack, token) as api:
        created = api.post(
            "/trainings", json={"name": f"Prod run {n}"}, headers={"Idempotency-Key": str(uuid.uuid4())}
        )
        check(
            created.status_code == 201,
            f"training create answered {created.status_code}: {created.text[:300]}",
        )
        training_id = created.json()["id"]
        added = api.post(f"/trainings/{training_id}/photos", files=files)
        check(
            added.status_code == 200 and added.json()["ready"],
            f"photos for training {training_id}: {added.status_code} {added.text[:500]}",
        )
        key = str(uuid.uuid4())
        started = api.post(
            f"/trainings/{training_id}/start",
            json={"steps": TRAINING_STEPS},
            headers={"Idempotency-Key": key},
        )
        check(started.status_code == 200, f"start {training_id}: {started.status_code} {started.text[:500]}")
        # The answer lost and the request sent again with its key: the first answer, nothing spent twice.
        again = api.post(
            f"/trainings/{training_id}/start",
            json={"steps": TRAINING_STEPS},
            headers={"Idempotency-Key": key},
        )
        check(again.status_code == 200, f"the repeated start of {training_id} answered {again.status_code}")
        return training_id


def generate(stack: Stack, token: str) -> int:
    """One image with the person's first usable model, through the API; returns the generation id."""
    with api_client(stack, token) as api:
        models = [m for m in api.get("/models").json()["items"] if m["usable"]]
        check(models, "no usable model to generate with")
        answer = api.post(
            "/generations",
            json={"model_id": models[0]["id"], "prompt": "a portrait in soft light", "num_outputs": 1},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        check(
            answer.status_code in (200, 201, 202),
            f"generation answered {answer.status_code}: {answer.text[:300]}",
        )
        return answer.json()["id"]


def checkout(stack: Stack, email: str) -> str:
    """Sign in on the dashboard, buy the first pack at the sandbox's hosted checkout: its session id."""
    from billing.models import CreditPack

    browser = Browser(stack.site)
    browser.request("GET", "/account/login/")
    signed_in = browser.post_form("/account/login/", {"username": email, "password": "bench-password-123"})
    check(signed_in.status_code == 302, f"login answered {signed_in.status_code}: {signed_in.text[:300]}")
    pack = CreditPack.objects.filter(active=True).order_by("amount_cents").first()
    check(pack is not None, "the catalog has no pack")
    assert pack is not None
    started = browser.post_form(f"/billing/checkout/pack/{pack.pk}/", {})
    location = started.headers.get("location", "")
    check(
        started.status_code in (302, 303) and location.startswith(stack.sandbox),
        f"checkout answered {started.status_code} to {location!r}: {started.text[:300]}",
    )
    # The buyer's browser at the hosted page (the sandbox's own cookies; it is plain http).
    with httpx.Client(timeout=30) as outside:
        page = outside.get(location)
        check(page.status_code == 200, f"the hosted checkout page answered {page.status_code}")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        form = re.search(r'<form[^>]+action="([^"]*pay)"', page.text)
        check(token and form, "the hosted checkout page has no pay form")
        assert token is not None and form is not None
        paid = outside.post(
            httpx.URL(location).join(form.group(1)),
            data={"csrfmiddlewaretoken": token.group(1)},
            headers={"Referer": location},
        )
        check(paid.status_code in (302, 303), f"paying answered {paid.status_code}: {paid.text[:300]}")
    return location.rstrip("/").rsplit("/", 1)[-1]


# --- Checks -------------------------------------------------------------------------------------------
def killed_before_create(stack: Stack, job) -> bool:
    """The training failed because its create was claimed and never confirmed, and the vendor indeed
    has no training for it (none carries its webhook): nothing was paid, and it was refunded."""
    import psycopg

    from billing.models import CreditEntry
    from sandbox.replicate.models import SandboxTraining

    if (
        job.replicate_training_id
        or job.error_message != "Replicate never confirmed that the training started."
    ):
        return False
    with psycopg.connect(f"{stack.pg}/{stack.sandbox_db}") as conn:
        found = conn.execute(
            f"SELECT count(*) FROM {SandboxTraining._meta.db_table} WHERE webhook LIKE %s",
            [f"%job={job.pk}"],
        ).fetchone()
    return found == (0,) and CreditEntry.objects.filter(reference=f"refund:{job.credit_reference}").exists()


def sandbox_ids(stack: Stack) -> tuple[list[str], list[str]]:
    """Every training and prediction the sandbox (the vendor) holds: what would have been paid for."""
    import psycopg

    from sandbox.replicate.models import SandboxPrediction, SandboxTraining

    with psycopg.connect(f"{stack.pg}/{stack.sandbox_db}") as conn:
        trainings = [r[0] for r in conn.execute(f"SELECT id FROM {SandboxTraining._meta.db_table}")]
        predictions = [r[0] for r in conn.execute(f"SELECT id FROM {SandboxPrediction._meta.db_table}")]
    return trainings, predictions


def storage_checks(stack: Stack, generation_ids: list[int], tokens: dict[str, str]) -> dict[str, int]:
    import boto3

    from generations.models import Generation
    from training.models import Dataset

    s3 = boto3.client(
        "s3",
        endpoint_url=stack.s3,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
    )
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for o in page.get("Contents", [])
    ]
    by_area = Counter(k.split("/", 1)[0] for k in keys)
    zips = list(Dataset.objects.exclude(zip_name="").values_list("zip_name", flat=True))
    check(
        zips and all(f"private/{z}" in keys for z in zips),
        "a dataset ZIP is missing from the private bucket area",
    )
    local = [p for p in Path(stack.site_env["MEDIA_ROOT"]).rglob("*") if p.is_file()]
    check(not local, f"files were written to local disk instead of S3: {local[:5]}")
    # A generated image: its API URL is signed (no public domain), it downloads, and unsigned it is refused.
    generation = Generation.objects.get(pk=generation_ids[0])
    with api_client(stack, tokens[generation.owner.email]) as api:
        images = api.get(f"/generations/{generation.pk}").json()["images"]
    check(images, "the generation has no images")
    url = images[0]["url"]
    check(
        "X-Amz-Signature=" in url and url.startswith(stack.s3),
        f"the image URL is not a signed S3 URL: {url[:120]}",
    )
    check(httpx.get(url, timeout=20).status_code == 200, "the signed image URL does not download")
    check(httpx.get(url.split("?", 1)[0], timeout=20).status_code == 403, "an unsigned S3 URL downloads")
    return dict(by_area)


def accounting(stack: Stack) -> str:
    """`manage.py credits_check` as an operator runs it, and every spend of ours in the ledger."""
    from django.db.models import Q

    from billing.models import CreditEntry, CreditKind
    from generations.models import Generation
    from training.models import TrainingJob

    out = stack.manage(stack.site_env, "credits_check")  # exits 1 on any drift: manage() raises
    for job in TrainingJob.objects.all():
        # Each run spends under "training:<pk>[:<run>]"; a failed run is refunded under "refund:" + that.
        mine = CreditEntry.objects.filter(
            Q(reference=f"training:{job.pk}")
            | Q(reference__startswith=f"training:{job.pk}:")
            | Q(reference=f"refund:training:{job.pk}")
            | Q(reference__startswith=f"refund:training:{job.pk}:")
        )
        net = sum(mine.values_list("amount", flat=True))
        check(
            mine.filter(kind=CreditKind.SPEND_TRAINING, reference=job.credit_reference).exists()
            and -net == job.cost_credits,
            f"training {job.pk}: ledger {list(mine.values_list('reference', 'amount'))} vs cost {job.cost_credits}",
        )
    for generation in Generation.objects.all():
        entry = CreditEntry.objects.filter(reference=generation.credit_reference).first()
        check(
            entry and -entry.amount == generation.cost_credits,
            f"generation {generation.pk}: spend {entry} vs cost {generation.cost_credits}",
        )
    refunds = CreditEntry.objects.filter(kind=CreditKind.REFUND).exclude(
        reference__startswith="refund:training:"
    )
    check(
        not refunds.exists(),
        f"something else was refunded: {list(refunds.values_list('reference', flat=True))}",
    )
    return out.strip()


# --- The run ---------------------------------------------------------------------------------------------
def run(stack: Stack, args: argparse.Namespace) -> dict[str, str]:
    figures: dict[str, str] = {}
    took = stack.prepare()
    stack.serve(site_workers=2)
    cluster_a = stack.qcluster("qcluster-a")
    cluster_b = stack.qcluster("qcluster-b")

    import django

    django.setup()
    from django.db import close_old_connections

    from billing.models import CheckoutRecord, CheckoutStatus
    from generations.models import Generation
    from training.models import SampleImage, TrainingJob

    S = TrainingJob.Status
    accounts = people(args.users)
    tokens = dict(accounts)

    # Everyone at once: `--trainings` trainings from `--users` people, each over its own connection.
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.trainings) as pool:
        ids = list(
            pool.map(
                lambda n: training_start(stack, accounts[n % len(accounts)][1], n), range(args.trainings)
            )
        )
    figures["start requests (create, 5 photos, start x2) for all"] = f"{time.monotonic() - started:.1f} s"

    def fresh(qs):
        close_old_connections()
        return qs

    # SIGKILL one cluster while trainings are at Replicate and others still on their way there.
    def mid_run():
        at_replicate = fresh(TrainingJob.objects.filter(pk__in=ids)).exclude(replicate_training_id="").count()
        return at_replicate >= max(1, args.trainings // 4)

    wait(mid_run, timeout=args.timeout, what="trainings reaching Replicate", stack=stack)
    stages = Counter(TrainingJob.objects.filter(pk__in=ids).values_list("status", flat=True))
    cluster_a.killed_on_purpose = True
    cluster_a.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    figures["cluster A SIGKILLed at"] = f"{killed_at - started:.1f} s, trainings by stage: {dict(stages)}"
    time.sleep(1)
    check(not cluster_a.alive() and cluster_b.alive(), "cluster A still runs, or cluster B died with it")

    # Generations with the first models that are ready, and a checkout meanwhile.
    def usable_owners():
        done = fresh(TrainingJob.objects.filter(pk__in=ids, status=S.SUCCEEDED)).values_list(
            "owner__email", flat=True
        )
        return sorted(set(done)) if len(set(done)) >= min(3, args.users) else None

    owners = wait(usable_owners, timeout=args.timeout, what="three people's first model", stack=stack)
    generation_ids = [generate(stack, tokens[email]) for email in owners[:3]]
    session_id = checkout(stack, accounts[0][0])

    retried: list[int] = []

    def all_finished():
        close_old_connections()
        jobs = Counter(TrainingJob.objects.filter(pk__in=ids).values_list("status", flat=True))
        for job in TrainingJob.objects.filter(pk__in=ids, status__in=[S.FAILED, S.CANCELED]):
            # The one failure a SIGKILL may cause: the dead worker had claimed the paid create and
            # never sent it. The reconcile looked for it at the vendor, did not find it and refunded
            # it; its owner retries it, as the page offers. Anything else is a failure of the run.
            if job.pk in retried or not killed_before_create(stack, job):
                raise RunFailed(f"training {job.pk} ended {job.status}: {job.error_message}")
            with api_client(stack, tokens[job.owner.email]) as api:
                again = api.post(f"/trainings/{job.pk}/retry", headers={"Idempotency-Key": str(uuid.uuid4())})
            check(
                again.status_code == 200,
                f"retrying {job.pk} answered {again.status_code}: {again.text[:300]}",
            )
            retried.append(job.pk)
            return False
        cells = Counter(SampleImage.objects.filter(job__in=ids).values_list("status", flat=True))
        gens = Counter(Generation.objects.filter(pk__in=generation_ids).values_list("status", flat=True))
        paid = CheckoutRecord.objects.filter(session_id=session_id, status=CheckoutStatus.PAID).exists()
        for failed_status in ("failed", "canceled"):
            check(
                not cells.get(failed_status) and not gens.get(failed_status),
                f"a {failed_status} image: {cells} {gens}",
            )
        return (
            jobs.get(S.SUCCEEDED) == len(ids)
            and sum(cells.values()) == cells.get("succeeded", 0) > 0
            and gens.get("succeeded") == len(generation_ids)
            and paid
        )

    wait(
        all_finished,
        timeout=args.timeout,
        what="every training, sample grid, generation and the checkout",
        stack=stack,
    )
    finished = time.monotonic()
    duration = finished - started
    figures["all finished after"] = f"{duration:.1f} s ({finished - killed_at:.1f} s after the SIGKILL)"
    figures["trainings per minute"] = f"{len(ids) / duration * 60:.1f}"
    ends = sorted(
        (j.finished_at - j.started_at).total_seconds()
        for j in TrainingJob.objects.filter(pk__in=ids)
        if j.finished_at and j.started_at
    )
    if ends:
        figures["a training, start to model (fastest, median, slowest)"] = (
            f"{ends[0]:.0f} s, {ends[len(ends) // 2]:.0f} s, {ends[-1]:.0f} s"
        )

    # No paid call twice, none unknown: the vendor's records against ours.
    vendor_trainings, vendor_predictions = sandbox_ids(stack)
    ours_trainings = list(
        TrainingJob.objects.filter(pk__in=ids).values_list("replicate_training_id", flat=True)
    )
    check(
        sorted(vendor_trainings) == sorted(ours_trainings) and len(set(ours_trainings)) == len(ids),
        f"the sandbox holds {len(vendor_trainings)} trainings, we started {len(ids)} ({len(set(ours_trainings))} ids)",
    )
    ours_predictions = [
        *SampleImage.objects.values_list("replicate_prediction_id", flat=True),
        *Generation.objects.values_list("replicate_prediction_id", flat=True),
    ]
    check(
        sorted(vendor_predictions) == sorted(ours_predictions)
        and len(set(ours_predictions)) == len(ours_predictions),
        f"the sandbox holds {len(vendor_predictions)} predictions, we know {len(ours_predictions)}",
    )
    figures["failed by the SIGKILL before the paid call, refunded, retried"] = str(retried or "none")
    figures["paid calls (sandbox = ours)"] = (
        f"{len(vendor_trainings)} trainings, {len(vendor_predictions)} predictions"
    )
    figures["credits_check"] = accounting(stack)
    figures["objects in S3 by area"] = str(storage_checks(stack, generation_ids, tokens))
    figures["preparation"] = ", ".join(f"{k} {v:.1f} s" for k, v in took.items())
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", default="fluxsite_prod")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--trainings", type=int, default=20)
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=420, help="seconds each wait may take")
    parser.add_argument("--keep", action="store_true", help="keep the databases and the logs")
    args = parser.parse_args()
    per_user = -(-args.trainings // args.users)
    stack = make_stack(
        pg=args.pg,
        redis_url=args.redis,
        db=args.db,
        extra={
            # Sized for this run, not defaults changed: a person may run their share at once, photos are
            # few (and decoded in child processes of the web workers on 2 cores), the sample grid is one
            # prompt at two strengths, and a stage a dead worker held is resumed after one quiet minute.
            "MAX_ACTIVE_TRAININGS_PER_USER": str(per_user),
            "DATASET_MIN_IMAGES": str(PHOTOS),
            "SAMPLE_GRID_PROMPTS": "1",
            "SAMPLE_GRID_STRENGTHS": "0,1.0",
            "PIPELINE_STALE_MINUTES": "1",
            "Q_WORKERS": "2",
            "SANDBOX_TRAINING_SECONDS": "15",
        },
    )
    import os

    os.environ.update(stack.site_env)  # this process reads our database and S3 as the site does
    # A SIGTERM (CI cancelled) ends the run through the same cleanup as a failure.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print(
        f"=== production-like run: {args.trainings} trainings from {args.users} people, 2 clusters ===",
        flush=True,
    )
    began = time.monotonic()
    ok = False
    try:
        figures = run(stack, args)
        ok = True
    except (RunFailed, RuntimeError, KeyboardInterrupt, Exception) as exc:  # every failure gets the logs
        print(f"\nFAILED: {type(exc).__name__}: {exc}\n", flush=True)
        print(stack.report(), flush=True)
    finally:
        stack.close()
        with contextlib.suppress(Exception):
            from django.db import connections

            connections.close_all()
        if ok and not args.keep:
            stack.drop()
            forget(stack)
        elif not ok:
            print(f"\nlogs kept in {stack.work}", flush=True)
    if not ok:
        return 1
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"  {key.ljust(width)}  {value}")
    print(f"=== passed in {time.monotonic() - began:.0f} s ===")
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "prod-run"
    sys.exit(main())
