"""Upload handling that stops reading as soon as a limit is passed.

Django's own limits act after a file has been received (and spooled to disk). This handler, put
first for the dataset upload view, counts each file's bytes as they arrive and skips the rest of
a file the moment it passes DATASET_MAX_FILE_BYTES, so an oversize file costs only the limit.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile


class FileSizeLimitHandler(FileUploadHandler):
    """Skips any file over the per-file limit while it streams in; remembers which, for the verdicts."""

    def __init__(self, request=None, *, limit: int | None = None) -> None:
        super().__init__(request)
        self.limit = settings.DATASET_MAX_FILE_BYTES if limit is None else limit
        self.skipped: list[str] = []
        self._received = 0

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self._received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self._received += len(raw_data)
        if self._received > self.limit:
            self.skipped.append(self.file_name or "unnamed")
            raise SkipFile()  # Django reads past the rest of this file without storing it
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handler stores the file


def declared_length_over(request, *, limit: int | None = None) -> int | None:
    """The request's declared body length when it is over what one upload may carry (`limit`
    bytes of files, by default DATASET_MAX_TOTAL_BYTES), else None."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    files = settings.DATASET_MAX_TOTAL_BYTES if limit is None else limit
    allowance = files + 1024 * 1024  # the multipart framing around the files
    return length if length > allowance else None
