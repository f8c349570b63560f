"""Issue 20 item 3: how the site and the pipeline scale with processes, measured in one run.

    .venv/bin/python bench/bench_scale.py [--pg postgres://postgres@127.0.0.1:5432] [--db bench_scale]
        [--redis redis://127.0.0.1:6379/14] [--rows 200] [--connections 16] [--seconds 5]
        [--trainings 10]

The production-like stack of tests/prod/stack.py (production settings, PostgreSQL, Redis, moto's S3,
the sandbox in its own process), then:

1. Pages: bench_gunicorn.py's signed-in user with `--rows` of everything; gunicorn with 1, 2 and 4
   workers (gthread, 4 threads each) in turn; wrk (bench_gunicorn.wrk) drives each page with
   `--connections` keep-alive connections for `--seconds`: requests per second, p50 and p99, and the
   ratio of requests per second against 1 worker.
2. Pipeline: `--trainings` trainings started at once through the API (tests/prod/run.py's client),
   with 1 and then 2 `qcluster` processes (Q_WORKERS=2 each) consuming the shared Redis queue:
   trainings per minute from the first start to the last sample grid, and the ratio 2 vs 1.

On 2 cores the ceiling is about 2x: see the printed note for what limits each figure.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import table  # noqa: E402
from bench_gunicorn import wrk  # noqa: E402

from tests.prod.run import people, training_start, wait  # noqa: E402
from tests.prod.stack import Stack, forget, make_stack  # noqa: E402

PAGES = [
    ("healthz", "/healthz"),
    ("training_list", "/trainings/"),
    ("models", "/models/"),
    ("billing", "/billing/"),
]


def pages(stack: Stack, args: argparse.Namespace) -> dict[int, dict[str, dict]]:
    import bench_gunicorn
    import httpx
    from django.db import connections

    with contextlib.redirect_stdout(io.StringIO()):  # the console e-mail backend prints the welcome
        cookie, training_id, _model_id = bench_gunicorn.seed(args.rows)
    connections.close_all()
    paths = [*PAGES, ("training_detail", f"/trainings/{training_id}/")]
    results: dict[int, dict[str, dict]] = {}
    for workers in (1, 2, 4):
        server = stack.gunicorn(f"site-{workers}w", stack.site_port, stack.site_env, workers=workers)
        try:
            stack._wait_http(server, f"{stack.site}/healthz")
            headers = {"Cookie": f"sessionid={cookie}", "X-Forwarded-Proto": "https"}
            for _label, path in paths:
                answer = httpx.get(stack.site + path, headers=headers, timeout=20)
                if answer.status_code != 200:
                    raise SystemExit(
                        f"{path} answered {answer.status_code}: the bench would measure an error page"
                    )
            results[workers] = {}
            for label, path in paths:
                wrk(stack.site + path, cookie, args.connections, 1)  # warm every worker
                results[workers][label] = wrk(stack.site + path, cookie, args.connections, args.seconds)
        finally:
            server.stop()
            stack.processes.remove(server)
    return results


def pipeline(stack: Stack, args: argparse.Namespace, clusters: int, round_no: int) -> dict[str, float]:
    """Start `--trainings` trainings at once with `clusters` qclusters running; trainings per minute."""
    from django.db import close_old_connections

    from training.models import SampleImage, TrainingJob

    workers = [stack.qcluster(f"qcluster-r{round_no}-{n}") for n in range(clusters)]
    try:
        accounts = people(-(-args.trainings // 4), prefix=f"scale-{round_no}")
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=args.trainings) as pool:
            ids = list(
                pool.map(
                    lambda n: training_start(stack, accounts[n % len(accounts)][1], round_no * 1000 + n),
                    range(args.trainings),
                )
            )
        requested = time.monotonic() - started

        def done() -> bool:
            close_old_connections()
            ok = TrainingJob.objects.filter(pk__in=ids, status=TrainingJob.Status.SUCCEEDED).count() == len(
                ids
            )
            cells = SampleImage.objects.filter(job__in=ids)
            return ok and cells.exists() and not cells.exclude(status=SampleImage.Status.SUCCEEDED).exists()

        wait(done, timeout=600, what=f"{len(ids)} trainings with {clusters} cluster(s)", stack=stack)
        took = time.monotonic() - started
    finally:
        for worker in workers:
            worker.stop()
            stack.processes.remove(worker)
    return {"seconds": took, "requests": requested, "per_minute": len(ids) / took * 60}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", default="bench_scale")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--trainings", type=int, default=10)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("needs wrk (Debian's package `wrk`)")
    stack = make_stack(
        pg=args.pg,
        redis_url=args.redis,
        db=args.db,
        extra={
            # As in tests/prod/run.py: four trainings a person at once, five photos, a 1 x 2 grid; a
            # short sandbox training (5 s) so the figure is our pipeline's, not the stand-in's sleep.
            "MAX_ACTIVE_TRAININGS_PER_USER": "4",
            "DATASET_MIN_IMAGES": "5",
            "SAMPLE_GRID_PROMPTS": "1",
            "SAMPLE_GRID_STRENGTHS": "0,1.0",
            "Q_WORKERS": "2",
            "SANDBOX_TRAINING_SECONDS": "5",
        },
    )
    os.environ.update(stack.site_env)
    try:
        stack.prepare()
        import django

        django.setup()
        page_results = pages(stack, args)
        stack.serve(site_workers=2)
        rounds = {n: pipeline(stack, args, clusters=n, round_no=n) for n in (1, 2)}
    except BaseException:
        print(stack.report())
        raise
    finally:
        stack.close()
        from django.db import connections

        connections.close_all()
    stack.drop()
    forget(stack)

    rows = []
    for label, _path in [*PAGES, ("training_detail", "")]:
        one = page_results[1][label]
        for workers, by_page in page_results.items():
            r = by_page[label]
            rows.append(
                [
                    label,
                    str(workers),
                    f"{r['rps']:.0f}",
                    f"{r['p50']:.1f}",
                    f"{r['p99']:.1f}",
                    f"{r['rps'] / one['rps']:.2f}",
                    str(r["errors"]),
                ]
            )
    table(
        f"pages through gunicorn (gthread, 4 threads a worker), production settings, {args.rows} rows, "
        f"wrk {args.connections} connections x {args.seconds} s",
        ["page", "workers", "req/s", "p50 ms", "p99 ms", "req/s vs 1 worker", "non-2xx"],
        rows,
    )
    one = rounds[1]
    table(
        f"pipeline: {args.trainings} trainings at once through the API, each to its model and 1 x 2 sample grid",
        ["clusters", "django-q2 workers", "start requests s", "all done s", "trainings/min", "vs 1 cluster"],
        [
            [
                str(n),
                str(2 * n),
                f"{r['requests']:.1f}",
                f"{r['seconds']:.1f}",
                f"{r['per_minute']:.1f}",
                f"{r['per_minute'] / one['per_minute']:.2f}",
            ]
            for n, r in rounds.items()
        ],
    )
    print(
        f"\n{os.cpu_count()} CPUs here (load average {os.getloadavg()[0]:.1f} at the end: other jobs on the"
        " machine make every figure noisy), shared by wrk, PostgreSQL, Redis, moto and the sandbox. Pages are"
        " CPU-bound Python: past one worker per core, more workers only queue for the same cores. The"
        " pipeline is mostly waiting (on the stand-in's training time, its predictions, S3 and the"
        " Hub), so a second cluster helps until the cores are busy with the uploads' photo decoding,"
        " the ZIPs and the weights' hashing. On a bigger machine both grow with the cores until"
        " PostgreSQL's connections or the vendor's rate limits are the limit."
    )


if __name__ == "__main__":
    main()
