"""The production-like stack as separate processes: what tests/prod/run.py and bench/bench_scale.py start.

    moto's S3 server   every stored file (the public and private storages, signed URLs)
    the sandbox        the outside world (Replicate, Hugging Face, Stripe), its own gunicorn and its
                       own PostgreSQL database, reached only through the vendor base URLs
    gunicorn           the site with production settings (DEBUG off, a real secret, allowed hosts)
    qcluster x N       django-q2 clusters sharing the Redis broker and the site's database

Every process runs in its own session, so stopping one (or SIGKILL-ing it) takes its children too;
`Stack.close()` stops whatever is still running, and its logs are kept for the failure report.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from _common import free_port, psql  # noqa: E402

BUCKET = "fluxsite-prod"
S3_KEY = "prod-run-access-key"
S3_SECRET = "prod-run-secret-key"
BIN = Path(sys.executable).parent


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path
    killed_on_purpose: bool = False  # a run that SIGKILLs it does not count its death as a failure

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole session (gunicorn's and qcluster's children with it)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self, grace: float = 15.0) -> None:
        if self.alive():
            # The main process only: gunicorn's master and qcluster's sentinel stop their own children
            # (a SIGTERM to qcluster's whole group leaves it "stopping" for a long time; docs/deploy.md).
            self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        self.kill(signal.SIGKILL)  # children left behind by a parent that exited on its own
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class Stack:
    """The processes, their addresses and environments. Build with `Stack.start(...)`."""

    pg: str
    redis_url: str
    db: str
    work: Path
    site_port: int = field(default_factory=free_port)
    sandbox_port: int = field(default_factory=free_port)
    moto_port: int = field(default_factory=free_port)
    processes: list[Process] = field(default_factory=list)
    site_env: dict[str, str] = field(default_factory=dict)
    sandbox_env: dict[str, str] = field(default_factory=dict)

    @property
    def site(self) -> str:
        return f"http://127.0.0.1:{self.site_port}"

    @property
    def sandbox(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    @property
    def s3(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def sandbox_db(self) -> str:
        return f"{self.db}_sandbox"

    # --- Environments -------------------------------------------------------------------------------
    def environments(self, extra: dict[str, str]) -> None:
        """The site's production environment and the sandbox's. Secrets are made for this run and
        shared where the vendor and we must agree (API tokens, webhook signing secrets)."""
        from cryptography.fernet import Fernet

        shared = {
            "REPLICATE_API_TOKEN": "r8_" + secrets.token_hex(16),
            "REPLICATE_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
            "HF_TOKEN": "hf_" + secrets.token_hex(16),
            "STRIPE_SECRET_KEY": "sk_test_" + secrets.token_hex(16),
            "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(16),
        }
        base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST"))}
        base.update(DJANGO_SETTINGS_MODULE="fluxsite.settings", PYTHONUNBUFFERED="1", LOG_LEVEL="WARNING")
        for name in ("DATABASE_URL", "REDIS_URL", "S3_BUCKET", "SANDBOX_MODE", "DEBUG", "CI"):
            base.pop(name, None)
        self.site_env = {
            **base,
            **shared,
            "DEBUG": "false",
            "SANDBOX_MODE": "false",
            "SECRET_KEY": secrets.token_urlsafe(60),
            "ALLOWED_HOSTS": "127.0.0.1",
            "SITE_URL": self.site,
            # No TLS proxy in front here: the sandbox's webhooks come over plain http. Browsers' requests
            # carry X-Forwarded-Proto: https as a TLS proxy would add (docs/deploy.md).
            "SECURE_SSL_REDIRECT": "false",
            "DATABASE_URL": f"{self.pg}/{self.db}",
            "DB_CONN_MAX_AGE": "60",
            "REDIS_URL": self.redis_url,
            "S3_BUCKET": BUCKET,
            "S3_ENDPOINT_URL": self.s3,
            "S3_REGION": "us-east-1",
            "S3_ACCESS_KEY_ID": S3_KEY,
            "S3_SECRET_ACCESS_KEY": S3_SECRET,
            "SIGNED_URL_SECONDS": "600",
            "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "REPLICATE_BASE_URL": f"{self.sandbox}/sandbox/replicate",
            "HF_ENDPOINT": f"{self.sandbox}/sandbox/hf",
            "STRIPE_API_BASE": f"{self.sandbox}/sandbox/stripe",
            "REPLICATE_DOWNLOADS_FROM_API_HOST": "true",
            "FLUXSITE_VAR_DIR": str(self.work / "site-var"),
            "MEDIA_ROOT": str(self.work / "site-media"),  # must stay empty: every file goes to S3
            **extra,
        }
        self.sandbox_env = {
            **base,
            **shared,
            "DEBUG": "true",
            "SANDBOX_MODE": "true",
            "SITE_URL": self.sandbox,
            "SANDBOX_STRIPE_WEBHOOK_URL": f"{self.site}/billing/webhooks/stripe/",
            "DATABASE_URL": f"{self.pg}/{self.sandbox_db}",
            "SANDBOX_TRAINING_SECONDS": extra.get("SANDBOX_TRAINING_SECONDS", "15"),
            "SANDBOX_PREDICTION_SECONDS": "1",
            "SANDBOX_HF_ROOT": str(self.work / "sandbox-hf"),
            "FLUXSITE_VAR_DIR": str(self.work / "sandbox-var"),
            "MEDIA_ROOT": str(self.work / "sandbox-media"),
        }

    # --- Processes ----------------------------------------------------------------------------------
    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Process:
        log = self.work / f"{name}.log"
        handle = log.open("wb")
        popen = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        handle.close()
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def manage(self, env: dict[str, str], *args: str, timeout: float = 300) -> str:
        """Run a management command to completion; raise with its output if it fails."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"manage.py {' '.join(args)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
        return done.stdout

    def gunicorn(self, name: str, port: int, env: dict[str, str], workers: int, threads: int = 4) -> Process:
        # The settings docs/deploy.md gives, but for the bind address.
        return self.spawn(
            name,
            [
                str(BIN / "gunicorn"),
                "fluxsite.wsgi",
                f"--bind=127.0.0.1:{port}",
                f"--workers={workers}",
                "--worker-class=gthread",
                f"--threads={threads}",
                f"--worker-connections={2 * threads}",
                "--timeout=120",
                "--graceful-timeout=30",
                "--limit-request-line=8190",
                "--forwarded-allow-ips=127.0.0.1",
                "--log-level=warning",
            ],
            env,
        )

    def qcluster(self, name: str) -> Process:
        return self.spawn(name, [sys.executable, "manage.py", "qcluster"], self.site_env)

    def prepare(self) -> dict[str, float]:
        """Fresh databases and Redis, the bucket, migrations, static files and the catalog. Returns
        the seconds each step took."""
        import boto3
        import redis

        took: dict[str, float] = {}
        start = time.monotonic()
        for name in (self.db, self.sandbox_db):
            psql(self.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        psql(self.pg, f'CREATE DATABASE "{self.db}"')
        redis.Redis.from_url(self.redis_url).flushdb()
        took["databases"] = time.monotonic() - start

        moto = self.spawn(
            "moto",
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.moto_port)],
            os.environ.copy(),
        )
        self._wait_http(moto, f"{self.s3}/moto-api/")
        boto3.client(
            "s3",
            endpoint_url=self.s3,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        ).create_bucket(Bucket=BUCKET)

        # One `migrate` as a deployment runs it, with collectstatic beside it; the sandbox's database is a
        # copy of the new one (the same apps, so the same schema and the sandbox's own seeded prices),
        # which halves the slowest step of the preparation.
        from concurrent.futures import ThreadPoolExecutor

        def timed(env: dict[str, str], *args: str) -> float:
            began = time.monotonic()
            self.manage(env, *args)
            return time.monotonic() - began

        with ThreadPoolExecutor(2) as pool:
            migrate = pool.submit(timed, self.site_env, "migrate", "--noinput", "-v0")
            static = pool.submit(timed, self.site_env, "collectstatic", "--noinput", "-v0")
            took["migrate"], took["collectstatic"] = migrate.result(), static.result()
        psql(self.pg, f'CREATE DATABASE "{self.sandbox_db}" TEMPLATE "{self.db}"')
        # The sandbox's Stripe knows these prices (its own migration seeds them): the catalog we sell.
        self.manage(self.site_env, "catalog_seed", str(ROOT / "sandbox" / "stripe" / "catalog.json"))
        return took

    def serve(self, site_workers: int = 2) -> None:
        sandbox = self.gunicorn("sandbox", self.sandbox_port, self.sandbox_env, workers=1, threads=32)
        site = self.gunicorn("site", self.site_port, self.site_env, workers=site_workers)
        self._wait_http(sandbox, f"{self.sandbox}/healthz")
        self._wait_http(site, f"{self.site}/healthz")

    def _wait_http(self, process: Process, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not process.alive():
                raise RuntimeError(f"{process.name} exited ({process.popen.returncode}):\n{process.tail()}")
            try:
                if httpx.get(url, timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{process.name} did not answer {url} within {timeout:.0f} s:\n{process.tail()}")

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def report(self) -> str:
        return "\n".join(
            f"--- {p.name} ({'running' if p.alive() else f'exit {p.popen.returncode}'}), last lines of {p.log}:\n"
            f"{p.tail()}"
            for p in self.processes
        )

    def drop(self) -> None:
        for name in (self.db, self.sandbox_db):
            with contextlib.suppress(subprocess.CalledProcessError):
                psql(self.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_stack(*, pg: str, redis_url: str, db: str, extra: dict[str, str]) -> Stack:
    """A stack in a new work folder (logs, local state); `forget()` removes the folder."""
    work = Path(tempfile.mkdtemp(prefix=f"fluxsite-{db}-"))
    stack = Stack(pg=pg, redis_url=redis_url, db=db, work=work)
    stack.environments(extra)
    return stack


def forget(stack: Stack) -> None:
    shutil.rmtree(stack.work, ignore_errors=True)
