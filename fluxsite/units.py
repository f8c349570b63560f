"""Times, sizes and durations as people read them: one way each, for every page.

Times are shown in the person's time zone (fluxsite.middleware.TimezoneMiddleware activates it from
the `tz` cookie that static/js/site.js sets), in one format; durations in seconds, minutes and hours;
sizes through Django's `filesizeformat` (KB, MB, GB).
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString

TIME_FORMAT = "j M Y, H:i"  # 4 Dec 2026, 19:05
TIME_FORMAT_SECONDS = "j M Y, H:i:s"  # for logs, where events seconds apart must be told apart


def time_html(value: datetime | None, *, seconds: bool = False) -> SafeString | str:
    """A `<time>` element: the machine-readable instant (UTC, ISO 8601) and the local text."""
    if value is None:
        return ""
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    text = date_format(local, TIME_FORMAT_SECONDS if seconds else TIME_FORMAT)
    return format_html('<time datetime="{}">{}</time>', value.isoformat(), text)


def duration_text(seconds: float | int | None) -> str:
    """Short enough for a timeline cell: "45 s", "3 min 20 s", "1 h 05 min"."""
    if seconds is None:
        return ""
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
