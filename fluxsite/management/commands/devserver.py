from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the web server on 127.0.0.1:8000 and one django-q2 worker together; Ctrl-C stops both."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000")

    def handle(self, *args, **options) -> None:
        python = sys.executable
        mode = "sandbox (no real services are called)" if settings.SANDBOX_MODE else "real services"
        self.stdout.write(f"Fluxsite on http://{options['addr']}/ against {mode}. Ctrl-C stops it.")
        procs = [
            subprocess.Popen([python, "manage.py", "runserver", options["addr"], "--noreload"]),
            subprocess.Popen([python, "manage.py", "qcluster"]),
        ]

        def stop(*_args) -> None:
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            for proc in procs:
                try:
                    proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()

        def stop_and_exit(*_args: object) -> None:
            stop()
            sys.exit(0)

        signal.signal(signal.SIGTERM, stop_and_exit)
        try:
            while all(proc.poll() is None for proc in procs):
                time.sleep(0.5)
            self.stderr.write("One of the processes stopped; stopping the other.")
        except KeyboardInterrupt:
            pass
        finally:
            stop()
        os._exit(0)
