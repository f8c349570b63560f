"""Benchmark the Stripe webhook endpoint under duplicate-heavy concurrent delivery.

1,000 signed deliveries (700 distinct checkout.session.completed events, 300 duplicates, shuffled)
from several concurrent senders (threads with httpx) against gunicorn serving the real app on a free
127.0.0.1 port, on a throwaway PostgreSQL database `bench_billing`. Reported: p50/p99 time to the 2xx
answer, the same for /healthz in the same run, their ratios, and after a real `qcluster` drained
the tasks, the ledger checked against the expected total. Everything is set up and torn down here.

    .venv/bin/python bench/bench_webhooks.py [--pg postgres://postgres@127.0.0.1:5432] [--senders 8]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import stripe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import free_port, psql, wait_for_healthz  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
SECRET = "whsec_bench_secret_" + uuid.uuid4().hex
DB = "bench_billing"


def psql_count(base: str, sql: str) -> int:
    out = subprocess.run(
        ["psql", f"{base}/{DB}", "-tA", "-c", sql], check=True, capture_output=True, text=True
    )
    return int(out.stdout.strip())


def manage(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "manage.py", *args], cwd=ROOT, env=env, check=check, capture_output=True, text=True
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def hammer(base_url: str, jobs: list, senders: int, send) -> list[float]:
    """Run the jobs from `senders` threads, each with its own httpx client; returns latencies (s)."""
    latencies: list[float] = []
    lock = threading.Lock()
    queue = list(enumerate(jobs))
    failures: list[str] = []

    def sender() -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            while True:
                with lock:
                    if not queue:
                        return
                    _, job = queue.pop()
                started = time.perf_counter()
                response = send(client, job)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if not 200 <= response.status_code < 300:
                        failures.append(f"{response.status_code} {response.text[:100]}")

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise SystemExit(f"{len(failures)} non-2xx answers, e.g. {failures[:3]}")
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432"))
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--duplicates", type=float, default=0.3)
    args = parser.parse_args()

    env = {
        **os.environ,
        "DATABASE_URL": f"{args.pg}/{DB}",
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "DEBUG": "true",
        "SANDBOX_MODE": "true",
        "LOG_LEVEL": "WARNING",
        "SIGNUP_CREDITS": "500",
        "DB_CONN_MAX_AGE": "60",
    }
    psql(args.pg, f"DROP DATABASE IF EXISTS {DB}")
    psql(args.pg, f"CREATE DATABASE {DB}")
    server = None
    try:
        manage(env, "migrate", "--noinput")
        manage(env, "catalog_seed", "sandbox/stripe/catalog.json")  # no migration inserts prices
        setup = manage(
            env,
            "shell",
            "-c",
            (
                "from fluxsite.accounts.services import user_sign_up; from billing.models import CreditPack;"
                "from billing.selectors import balance_for_user;"
                "u = user_sign_up(email='bench@example.com', password='bench-password-123');"
                "p = CreditPack.objects.get(stripe_price_id='price_sandbox_pack_1000');"
                "print(u.pk, p.pk, p.credits, balance_for_user(u))"
            ),
        )
        # The starting balance is read, not assumed: welcome credits wait for a verified address.
        user_id, pack_id, pack_credits, start_balance = (int(x) for x in setup.stdout.split()[-4:])

        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [
                str(Path(PY).parent / "gunicorn"),
                "fluxsite.wsgi",
                "-b",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--threads",
                "8",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if not wait_for_healthz(base_url):
            raise SystemExit("the server did not start")

        distinct = round(args.deliveries * (1 - args.duplicates))
        events = []
        for i in range(distinct):
            session_id = f"cs_bench_{i}_{uuid.uuid4().hex[:8]}"
            events.append(
                {
                    "id": f"evt_bench_{uuid.uuid4().hex}",
                    "object": "event",
                    "api_version": "2025-03-31.basil",
                    "created": int(time.time()),
                    "livemode": False,
                    "type": "checkout.session.completed",
                    "data": {
                        "object": {
                            "id": session_id,
                            "object": "checkout.session",
                            "mode": "payment",
                            "status": "complete",
                            "payment_status": "paid",
                            "client_reference_id": str(user_id),
                            "metadata": {"user_id": str(user_id), "pack_id": str(pack_id)},
                            "customer": None,
                            "payment_intent": f"pi_bench_{i}",
                            "amount_total": 1000,
                            "currency": "usd",
                        }
                    },
                }
            )
        deliveries = [json.dumps(e) for e in events]
        deliveries += [random.choice(deliveries) for _ in range(args.deliveries - distinct)]
        random.shuffle(deliveries)

        def send_webhook(client: httpx.Client, payload: str) -> httpx.Response:
            header = stripe.WebhookSignature.generate_signature_header(payload, SECRET)
            return client.post(
                "/billing/webhooks/stripe/",
                content=payload.encode(),
                headers={"Stripe-Signature": header, "Content-Type": "application/json"},
            )

        def send_health(client: httpx.Client, _: object) -> httpx.Response:
            return client.get("/healthz")

        hammer(base_url, [None] * 50, args.senders, send_health)  # warm both workers' connections
        t0 = time.perf_counter()
        reference = hammer(base_url, [None] * args.deliveries, args.senders, send_health)
        t1 = time.perf_counter()
        webhooks = hammer(base_url, deliveries, args.senders, send_webhook)
        t2 = time.perf_counter()

        # The real worker drains the ORM queue; we watch the events table until every one is done.
        drain_started = time.perf_counter()
        worker = subprocess.Popen(
            [PY, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if (
                    psql_count(args.pg, "SELECT count(*) FROM billing_stripeevent WHERE status = 'received'")
                    == 0
                ):
                    break
                time.sleep(0.2)
        finally:
            worker.terminate()
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
        drained = time.perf_counter() - drain_started
        check = manage(
            env,
            "shell",
            "-c",
            (
                "from billing.models import CreditEntry, StripeEvent, Wallet;"
                f"w = Wallet.objects.get(user_id={user_id});"
                "print(w.balance, CreditEntry.objects.filter(kind='billing.credits.purchased').count(),"
                " StripeEvent.objects.count(), StripeEvent.objects.filter(status='processed').count())"
            ),
        )
        balance, purchases, stored, processed = (int(x) for x in check.stdout.split()[-4:])
        credits_check = manage(env, "credits_check", check=False)

        ms = lambda s: s * 1000  # noqa: E731
        rp50, rp99 = percentile(reference, 50), percentile(reference, 99)
        wp50, wp99 = percentile(webhooks, 50), percentile(webhooks, 99)
        expected = start_balance + distinct * pack_credits
        print(
            f"deliveries: {args.deliveries} ({distinct} distinct, {args.deliveries - distinct} duplicates), "
            f"{args.senders} concurrent senders, gunicorn 2 workers x 8 threads, PostgreSQL"
        )
        print(
            f"/healthz reference: p50 {ms(rp50):.1f} ms  p99 {ms(rp99):.1f} ms  mean {ms(statistics.mean(reference)):.1f} ms"
            f"  ({args.deliveries / (t1 - t0):.0f} req/s)"
        )
        print(
            f"webhook:            p50 {ms(wp50):.1f} ms  p99 {ms(wp99):.1f} ms  mean {ms(statistics.mean(webhooks)):.1f} ms"
            f"  ({args.deliveries / (t2 - t1):.0f} req/s)"
        )
        print(f"ratio webhook/healthz: p50 x{wp50 / rp50:.2f}  p99 x{wp99 / rp99:.2f}")
        print(f"worker drain (qcluster, 2 workers): {drained:.1f} s")
        print(
            f"stored events {stored} (expected {distinct}), processed {processed}, purchase entries {purchases}, "
            f"balance {balance} (expected {expected}); credits_check exit {credits_check.returncode}"
        )
        ok = stored == distinct and processed == distinct and purchases == distinct and balance == expected
        ok = ok and credits_check.returncode == 0
        print("LEDGER OK" if ok else "LEDGER MISMATCH")
        if not ok:
            sys.exit(1)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
        psql(args.pg, f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


if __name__ == "__main__":
    main()
