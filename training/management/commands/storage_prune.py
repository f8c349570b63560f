"""Delete what storage no longer needs: old dataset ZIPs and temporary files. Safe to run twice.

- Dataset ZIPs built more than DATASET_ZIP_KEEP_DAYS days ago, unless their training is queued or
  running or would need the ZIP on retry (training.services.dataset_zips_prune), and orphaned ZIPs
  as old; a training that starts later builds its ZIP again.
- Temporary files older than TEMP_FILES_KEEP_DAYS days: images staged to start a generation from
  (generations.services.input_images_prune), and the scratch folders our workers make in the
  system's temporary folder (weights downloads, Hub uploads) that a killed worker left behind.

Both storages go through Django's storage API, so this works on local files and on S3/R2 alike.
`--dry-run` lists what would be deleted and deletes nothing. Scheduled daily (cron or django-q2).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from generations.services import input_images_prune
from training.services import dataset_zips_prune

# The prefixes of the scratch folders and files our code makes with tempfile (models_app's
# weights and publishing, the Replicate downloader): nothing else in the temporary folder is ours.
SCRATCH_PREFIXES = ("fluxsite-weights-", "fluxsite-publish-")


def scratch_prune(*, folder: Path, older_than_seconds: float, dry_run: bool) -> list[str]:
    """Our own leftovers in `folder` last modified before `older_than_seconds` (a time.time())."""
    pruned = []
    for path in sorted(folder.iterdir()):
        if not path.name.startswith(SCRATCH_PREFIXES):
            continue
        try:
            if path.lstat().st_mtime >= older_than_seconds:
                continue
            if not dry_run:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        except FileNotFoundError:  # a worker finished with it meanwhile
            continue
        pruned.append(str(path))
    return pruned


class Command(BaseCommand):
    help = "Delete dataset ZIPs and temporary files older than the configured number of days."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="List what would be deleted; delete nothing."
        )
        parser.add_argument(
            "--zip-days", type=int, default=None, help="Override DATASET_ZIP_KEEP_DAYS for this run."
        )
        parser.add_argument(
            "--temp-days", type=int, default=None, help="Override TEMP_FILES_KEEP_DAYS for this run."
        )
        parser.add_argument(
            "--scratch-dir",
            default=None,
            help="The temporary folder to clean (default: the system's, as tempfile uses it).",
        )

    def handle(self, *args, dry_run: bool = False, **options) -> None:
        zip_days = settings.DATASET_ZIP_KEEP_DAYS if options["zip_days"] is None else options["zip_days"]
        temp_days = settings.TEMP_FILES_KEEP_DAYS if options["temp_days"] is None else options["temp_days"]
        if zip_days < 1 or temp_days < 1:
            raise CommandError("Keep at least one day of ZIPs and temporary files (a day is the unit).")
        now = timezone.now()
        verb = "would delete" if dry_run else "deleted"
        zips = dataset_zips_prune(older_than=now - timedelta(days=zip_days), dry_run=dry_run)
        inputs = input_images_prune(older_than=now - timedelta(days=temp_days), dry_run=dry_run)
        scratch = scratch_prune(
            folder=Path(options["scratch_dir"] or tempfile.gettempdir()),
            older_than_seconds=time.time() - temp_days * 86400,
            dry_run=dry_run,
        )
        for kind, names in (("dataset zip", zips), ("staged input", inputs), ("scratch", scratch)):
            for name in names:
                self.stdout.write(f"{verb} {kind}: {name}")
        self.stdout.write(
            f"{verb} {len(zips)} dataset ZIP(s) older than {zip_days} day(s), {len(inputs)} staged input "
            f"image(s) and {len(scratch)} scratch item(s) older than {temp_days} day(s)."
        )
