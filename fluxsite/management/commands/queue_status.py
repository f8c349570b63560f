"""The django-q2 queue's state: queued, running and failed tasks, the oldest queued task's age, and
each cluster's heartbeat (fluxsite.health.queue_state), with the database broker or Redis.

Exits 1 when no cluster has reported within Q_HEARTBEAT_STALE_SECONDS (or `--stale-seconds`): a
stopped worker is an alert for cron or a monitor, not a silence. `--json` prints one JSON object.
"""

from __future__ import annotations

import json
import sys

from django.conf import settings
from django.core.management.base import BaseCommand

from fluxsite.health import queue_state


class Command(BaseCommand):
    help = "Show the task queue (queued, running, failed, oldest queued) and each cluster's heartbeat."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the state as one JSON object.")
        parser.add_argument(
            "--stale-seconds",
            type=int,
            default=None,
            help="A cluster silent for longer is stale (default Q_HEARTBEAT_STALE_SECONDS).",
        )

    def handle(self, *args, **options) -> None:
        limit = options["stale_seconds"] or settings.Q_HEARTBEAT_STALE_SECONDS
        state = queue_state(stale_seconds=limit)
        if options["json"]:
            self.stdout.write(json.dumps(state.as_dict()))
        else:
            oldest = "-" if state.oldest_queued_seconds is None else f"{state.oldest_queued_seconds:.0f} s"
            self.stdout.write(f"broker: {state.broker}")
            self.stdout.write(f"queued: {state.queued} (oldest waiting {oldest})")
            self.stdout.write(f"running: {state.running}")
            self.stdout.write(f"failed: {state.failed} ({state.failed_last_day} in the last 24 h)")
            self.stdout.write(f"clusters: {len(state.clusters)}")
            for beat in state.clusters:
                mark = "STALE" if beat.stale else "ok"
                self.stdout.write(
                    f"  {mark} {beat.host} pid {beat.pid} cluster {beat.cluster_id}: {beat.status}, "
                    f"{beat.workers} worker(s), last beat {beat.seconds_since_beat:.1f} s ago"
                )
        if not state.workers_ok:
            self.stderr.write(f"ALERT: no cluster has reported within {limit} s: tasks are not being run.")
            sys.exit(1)
