"""Issue 19: the developer API's list endpoints at 1 and 200 objects (queries constant), and
GET /api/v1/trainings/{id} through gunicorn against the dashboard's training page, as a ratio.

    .venv/bin/python bench/bench_api.py [--pg postgres://postgres@127.0.0.1:5432] [--rows 200]
        [--workers 2] [--connections 16] [--seconds 8] [--redis redis://127.0.0.1:6379/6]

A throwaway PostgreSQL database `bench_api` gets one signed-in user with an API token, first with one
row of each kind (bench_pages.py's data, plus webhook endpoints and deliveries), then `--rows`. Each
list endpoint is called in this process at both sizes with `limit=100` and its queries counted (they
must not grow with the rows). Then gunicorn serves production settings (bench_gunicorn.py's set-up)
and `wrk` drives the API's training read (bearer token) and the dashboard's training page (session
cookie) in turn: requests per second, p50 and p99, and the API's figures divided by the page's.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import table, verdict, wait_for_healthz  # noqa: E402
from bench_gunicorn import gunicorn_start, gunicorn_stop, production_setup, seed, static_collect, wrk  # noqa: E402

DB = "bench_api"
LISTS = (
    "/api/v1/trainings",
    "/api/v1/models",
    "/api/v1/models/{model}/images",
    "/api/v1/ledger",
    "/api/v1/webhooks",
    "/api/v1/webhooks/{endpoint}/deliveries",
)


def webhooks_grow(user, n: int) -> int:
    """Up to 10 endpoints (the most a person may have) and `n` deliveries on the first; its id."""
    from fluxsite.accounts.models import WebhookDelivery, WebhookEndpoint
    from fluxsite.accounts.services.webhooks import ENDPOINTS_MAX

    have = WebhookEndpoint.objects.filter(owner=user).count()
    WebhookEndpoint.objects.bulk_create(
        [
            WebhookEndpoint(
                owner=user, url=f"https://hooks.example.com/{i}", events=["training.failed"], secret="whsec_x"
            )
            for i in range(have, min(n, ENDPOINTS_MAX))
        ]
    )
    first = WebhookEndpoint.objects.filter(owner=user).order_by("pk").first()
    assert first is not None
    done = first.deliveries.count()
    WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(endpoint=first, event_id=f"msg_{i}", type="training.failed", payload={"i": i})
            for i in range(done, n)
        ]
    )
    return first.pk


def list_queries(secret: str, paths: list[str]) -> dict[str, int]:
    """Each list's queries at limit=100, through the real URL conf and middleware (in process)."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(SERVER_NAME="127.0.0.1")
    headers = {"Authorization": f"Bearer {secret}"}
    client.get("/api/v1/balance", secure=True, headers=headers)  # the token's first use writes last_used_at
    counts = {}
    for path in paths:
        with CaptureQueriesContext(connection) as captured:
            answer = client.get(path, {"limit": 100}, secure=True, headers=headers)
        if answer.status_code != 200:
            raise SystemExit(f"{path} answered {answer.status_code}: {answer.content[:300]!r}")
        counts[path] = len(captured)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/6")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("needs wrk (Debian's package `wrk`)")

    env, var_dir = production_setup(
        args.pg,
        args.redis,
        DB,
        "fluxsite-bench-api-",
        RATELIMIT_ENABLE="false",  # the bench measures the endpoint, not the limiter's 429s
    )
    import bench_pages

    from fluxsite.accounts.models import User
    from fluxsite.accounts.services import api_token_create

    state: dict = {}
    cookie, training_id, model_id = seed(1, state)
    user = User.objects.get(email="bench@example.com")
    _, secret = api_token_create(user=user, name="bench", scopes=["read"])
    endpoint_id = webhooks_grow(user, 1)
    paths = [p.format(model=model_id, endpoint=endpoint_id) for p in LISTS]
    one = list_queries(secret, paths)
    bench_pages._grow(user, state, args.rows)
    webhooks_grow(user, args.rows)
    many = list_queries(secret, paths)
    table(
        f"API lists at limit=100: queries with 1 and {args.rows} objects",
        ["endpoint", "1 object", f"{args.rows} objects", "constant"],
        [[p, str(one[p]), str(many[p]), verdict(one[p] == many[p])] for p in paths],
    )

    static_collect(env)
    server, base = gunicorn_start(env, args.workers)
    targets = [
        ("api", f"/api/v1/trainings/{training_id}", "", (f"Authorization: Bearer {secret}",)),
        ("page", f"/trainings/{training_id}/", cookie, ()),
    ]
    results: dict[str, dict] = {}
    try:
        if not wait_for_healthz(base):
            raise SystemExit(
                f"gunicorn did not start: {server.stderr.read().decode() if server.stderr else ''}"
            )
        for _label, path, session, headers in targets:
            sent = {"X-Forwarded-Proto": "https", **dict(h.split(": ", 1) for h in headers)}
            if session:
                sent["Cookie"] = f"sessionid={session}"
            answer = httpx.get(base + path, headers=sent, timeout=10)
            if answer.status_code != 200:
                raise SystemExit(f"{path} answered {answer.status_code}: the bench would measure an error")
        for label, path, session, headers in targets:
            wrk(base + path, session, args.connections, 2, headers)  # warm the workers
            results[label] = wrk(base + path, session, args.connections, args.seconds, headers)
    finally:
        gunicorn_stop(server)
        shutil.rmtree(var_dir, ignore_errors=True)
    api, page = results["api"], results["page"]
    table(
        f"GET /api/v1/trainings/{{id}} vs the dashboard's training page, gunicorn {args.workers} workers x 4 "
        f"threads, production settings, {args.rows} rows, wrk {args.connections} connections x {args.seconds} s",
        ["target", "req/s", "p50 ms", "p99 ms", "non-2xx"],
        [
            [label, f"{r['rps']:.0f}", f"{r['p50']:.1f}", f"{r['p99']:.1f}", str(r["errors"])]
            for label, r in results.items()
        ]
        + [
            [
                "api / page",
                f"{api['rps'] / page['rps']:.2f}",
                f"{api['p50'] / page['p50']:.2f}",
                f"{api['p99'] / page['p99']:.2f}",
                "",
            ]
        ],
    )


if __name__ == "__main__":
    main()
