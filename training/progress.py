"""Reading progress out of the trainer's logs, and drawing the loss curve.

The trainer (replicate/flux-fine-tuner, ai-toolkit underneath) prints tqdm bars; Replicate turns
carriage returns into newlines, so the log holds one line per refresh:

    flux_train_replicate:  10%|█         | 100/1000 [01:41<15:12,  1.01s/it, lr: 4.0e-04 loss: 4.123e-01]

Other N/M bars (captioning, loading checkpoints) are not training progress and are ignored.

Other trainers print the same ai-toolkit bar under another label (qwen/qwen-image-lora-trainer:
the job name `qwen_lora_<unix time>`, docs/trainers-research.md): `label` is that label's pattern,
from the trainer's registry entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

FLUX_LABEL = r"flux_train_replicate"
_BAR = (
    r":\s*(?P<pct>\d+)%\|[^|]*\|\s*(?P<step>\d+)/(?P<total>\d+)\s*"
    r"\[(?P<elapsed>[\d:]+)<(?P<eta>[\d:?]+),\s*(?P<rate>[\d.]+)(?P<unit>s/it|it/s)"
    r"(?:,\s*lr:\s*(?P<lr>[-+\d.eE]+))?(?:\s*loss:\s*(?P<loss>[-+\d.eE]+|nan|inf))?"
)
_TRAIN_LINE = re.compile(FLUX_LABEL + _BAR)


def _line_pattern(label: str) -> re.Pattern[str]:
    return _TRAIN_LINE if label == FLUX_LABEL else re.compile(label + _BAR)


@dataclass(frozen=True)
class Progress:
    step: int = 0
    total: int = 0
    seconds_per_step: float | None = None
    eta_seconds: int | None = None
    loss: float | None = None
    loss_history: list[tuple[int, float]] = field(default_factory=list)

    @property
    def percent(self) -> int:
        return int(self.step * 100 / self.total) if self.total else 0


def _seconds(clock: str) -> int | None:
    if "?" in clock:
        return None
    seconds = 0
    for part in clock.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds


def progress_from_logs(logs: str | None, *, label: str = FLUX_LABEL) -> Progress:
    """The latest training progress in `logs`, with the loss at each step seen (by step, no repeats).
    `label` is a pattern for the training bar's label (the FLUX trainer's by default)."""
    if not logs:
        return Progress()
    pattern = _line_pattern(label)
    history: dict[int, float] = {}
    last = None
    for line in logs.replace("\r", "\n").splitlines():
        match = pattern.search(line)
        if not match:
            continue
        last = match
        loss = match.group("loss")
        if loss is not None:
            try:
                value = float(loss)
            except ValueError:
                continue
            if value == value and value not in (float("inf"), float("-inf")):
                history[int(match.group("step"))] = value
    if last is None:
        return Progress()
    rate = float(last.group("rate"))
    seconds_per_step = rate if last.group("unit") == "s/it" else (1 / rate if rate else None)
    loss_value = history.get(int(last.group("step")))
    return Progress(
        step=int(last.group("step")),
        total=int(last.group("total")),
        seconds_per_step=seconds_per_step,
        eta_seconds=_seconds(last.group("eta")),
        loss=loss_value,
        loss_history=sorted(history.items()),
    )


def loss_chart_svg(points: list[tuple[int, float]], *, width: int = 600, height: int = 180) -> SafeString:
    """An inline SVG line chart of loss over steps (no script, no inline style: CSS classes only).

    The drawing stretches to its card's whole width at any height the stylesheet gives it
    (`preserveAspectRatio="none"`, strokes that do not scale), so its labels are HTML around it:
    text inside a stretched SVG would be squashed, and unreadably small on a phone.
    """
    if len(points) < 2:
        return mark_safe("")  # noqa: S308  (a constant empty string)
    steps = [p[0] for p in points]
    losses = [p[1] for p in points]
    x0, x1 = min(steps), max(steps)
    y0, y1 = min(losses), max(losses)
    if y1 == y0:
        y1 = y0 + 1e-9
    if x1 == x0:
        x1 = x0 + 1
    pad = 4  # room for the stroke at the edges

    def sx(step: int) -> float:
        return (step - x0) * width / (x1 - x0)

    def sy(loss: float) -> float:
        return height - pad - (loss - y0) * (height - 2 * pad) / (y1 - y0)

    coords = " ".join(f"{sx(s):.1f},{sy(v):.1f}" for s, v in points)
    return format_html(
        '<div class="loss-plot">'
        '<span class="y-max">{top}</span><span class="y-min">{low}</span>'
        '<svg viewBox="0 0 {w} {h}" width="100%" height="100%" preserveAspectRatio="none" role="img"'
        ' aria-label="Training loss from step {a} to {b}, from {first} to {last}">'
        '<line class="axis" x1="0" y1="{h}" x2="{w}" y2="{h}"/>'
        '<line class="axis" x1="0" y1="0" x2="0" y2="{h}"/>'
        '<polyline class="line" points="{coords}"/></svg>'
        '<span class="x-min">step {a}</span><span class="x-max">step {b}</span></div>',
        w=width,
        h=height,
        a=x0,
        b=x1,
        top=f"{y1:.3g}",
        low=f"{y0:.3g}",
        first=f"{losses[0]:.3g}",
        last=f"{losses[-1]:.3g}",
        coords=coords,
    )
