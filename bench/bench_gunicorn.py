"""Issue 15: the dashboard pages through gunicorn with production settings, against /healthz.

    .venv/bin/python bench/bench_gunicorn.py [--pg postgres://postgres@127.0.0.1:5432] [--rows 200]
        [--workers 2] [--connections 16] [--seconds 8] [--redis redis://127.0.0.1:6379/6]

A throwaway PostgreSQL database `bench_gunicorn` gets one signed-in user with `--rows` of each kind
(trainings, events, models, generations, ledger entries; bench_pages.py's data), then gunicorn serves
the real WSGI application with DEBUG off, a real secret, allowed hosts, the Redis cache, the
README's worker settings (gthread, 4 threads, 8 connections a worker) and `--workers` processes. `wrk` (Debian's package)
drives each URL with `--connections` keep-alive connections for `--seconds`, sending the
`X-Forwarded-Proto: https` a TLS proxy adds. For each page: requests per second, p50/p99 latency,
and server CPU per request (user + system time of the gunicorn workers read from /proc before and
after, divided by the requests served), then the ratios against /healthz measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, free_port, psql, table, wait_for_healthz  # noqa: E402

DB = "bench_gunicorn"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime of the process (all its threads)
    return total / CLOCK_TICKS


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, cookie: str, connections: int, seconds: int, headers: tuple[str, ...] = ()) -> dict:
    """wrk against `url` signed in by `cookie` (or by `headers`, e.g. an API token's), as a TLS proxy
    would forward it: requests, req/s, p50/p99 in ms, non-2xx answers."""
    sent = [f"Cookie: sessionid={cookie}", *headers] if cookie else list(headers)
    out = subprocess.run(
        [
            "wrk",
            "--latency",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            *[arg for header in sent for arg in ("-H", header)],
            "-H",
            "X-Forwarded-Proto: https",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    served = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": served,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "p99": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "errors": int(bad.group(1)) if bad else 0,
    }


def seed(rows: int, state: dict | None = None) -> tuple[str, int, int]:
    """Migrate, make the user and its rows, sign it in: (session key, training id, model id).
    `state` (bench_pages._grow's) is kept in the caller's dict, to grow the rows later."""
    from importlib import import_module

    import bench_pages
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    user = bench_pages._user()
    state = {} if state is None else state
    bench_pages._grow(user, state, rows)
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[-1]
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.save()
    return store.session_key or "", state["training"].pk, state["model"].pk


def production_env(pg: str, redis_url: str, db: str, var_dir: str) -> dict[str, str]:
    """The environment of a production deployment (DEBUG off, real secrets, PostgreSQL, Redis)."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "fluxsite.settings",
        "DATABASE_URL": f"{pg}/{db}",
        "REDIS_URL": redis_url,
        "DEBUG": "false",
        "SANDBOX_MODE": "false",
        "SECRET_KEY": secrets.token_urlsafe(60),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SITE_URL": "https://127.0.0.1",
        "REPLICATE_API_TOKEN": "r8_bench",
        "HF_TOKEN": "hf_bench",
        "STRIPE_SECRET_KEY": "sk_test_bench",
        "STRIPE_WEBHOOK_SECRET": "whsec_bench",
        "REPLICATE_WEBHOOK_SECRET": "whsec_YmVuY2gtcmVwbGljYXRlLWtleQ==",
        "FIELD_ENCRYPTION_KEYS": "YmVuY2gtZmllbGQtZW5jcnlwdGlvbi1rZXktMDEyMzQ=",
        "FLUXSITE_VAR_DIR": var_dir,
        "MEDIA_ROOT": str(Path(var_dir) / "media"),
        "LOG_LEVEL": "WARNING",
        "DB_CONN_MAX_AGE": "600",
    }


def production_setup(
    pg: str, redis_url: str, db: str, prefix: str, **extra: str
) -> tuple[dict[str, str], str]:
    """A fresh database `db`, an empty Redis, this process set up as a production deployment's
    (production_env, plus `extra` variables): (its environment, its var dir). Then seed, then
    `static_collect(env)` and `gunicorn_start(env, ...)`."""
    var_dir = tempfile.mkdtemp(prefix=prefix)
    env = {**production_env(pg, redis_url, db, var_dir), **extra}
    os.environ.update(env)
    psql(pg, f"DROP DATABASE IF EXISTS {db}")
    psql(pg, f"CREATE DATABASE {db}")
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    return env, var_dir


def static_collect(env: dict[str, str]) -> None:
    """Close this process's connections (gunicorn's workers open their own) and collect the static
    files production serves from their manifest."""
    from django.db import connections

    connections.close_all()
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )


def gunicorn_start(env: dict[str, str], workers: int) -> tuple[subprocess.Popen, str]:
    """gunicorn serving the project with the README's settings (gthread, 4 threads): (process, base URL)."""
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "fluxsite.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            f"--workers={workers}",
            "--worker-class=gthread",
            "--threads=4",
            "--worker-connections=8",
            "--timeout=120",
            "--log-level=warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return server, f"http://127.0.0.1:{port}"


def gunicorn_stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        server.kill()


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

    env, var_dir = production_setup(args.pg, args.redis, DB, "fluxsite-bench-gunicorn-")
    cookie, training_id, model_id = seed(args.rows)
    static_collect(env)

    server, base = gunicorn_start(env, args.workers)
    pages = [
        ("healthz", "/healthz"),
        ("training_list", "/trainings/"),
        ("training_detail", f"/trainings/{training_id}/"),
        ("models", "/models/"),
        ("model_detail", f"/models/{model_id}/"),
        ("gallery", "/models/gallery/"),
        ("billing", "/billing/"),
    ]
    results: dict[str, dict] = {}
    try:
        if not wait_for_healthz(base):
            raise SystemExit(
                f"gunicorn did not start: {server.stderr.read().decode() if server.stderr else ''}"
            )
        headers = {"Cookie": f"sessionid={cookie}", "X-Forwarded-Proto": "https"}
        for _label, path in pages:
            answer = httpx.get(base + path, headers=headers, timeout=10)
            if answer.status_code != 200:
                raise SystemExit(
                    f"{path} answered {answer.status_code}: the bench would measure an error page"
                )
        workers = children(server.pid)
        for label, path in pages:
            wrk(base + path, cookie, args.connections, 2)  # warm every worker's caches and connections
            before = cpu_seconds(workers)
            result = wrk(base + path, cookie, args.connections, args.seconds)
            result["cpu_ms"] = (cpu_seconds(workers) - before) * 1000 / max(result["requests"], 1)
            results[label] = result
    finally:
        gunicorn_stop(server)
        shutil.rmtree(var_dir, ignore_errors=True)

    health = results["healthz"]
    rows = []
    for label, r in results.items():
        rows.append(
            [
                label,
                f"{r['rps']:.0f}",
                f"{r['p50']:.1f}",
                f"{r['p99']:.1f}",
                f"{r['cpu_ms']:.2f}",
                f"{r['rps'] / health['rps']:.3f}",
                str(r["errors"]),
            ]
        )
    table(
        f"gunicorn, {args.workers} workers x 4 threads, production settings, PostgreSQL + Redis, "
        f"{args.rows} rows, wrk {args.connections} connections x {args.seconds} s",
        ["page", "req/s", "p50 ms", "p99 ms", "server CPU ms/req", "req/s vs /healthz", "non-2xx"],
        rows,
    )


if __name__ == "__main__":
    main()
