"""Journeys: what a person does, in Debian's Chromium, at desktop (1280 px) and phone (390 px, touch)
width, against the live server, the sandbox and (where work runs in the background) a real django-q2
worker in its own process.

Every page a journey visits goes through `Journey.visit()`, which
- saves a screenshot under var/screenshots/<test>/<width>-<nn>-<name>.png (var/ is kept out of git;
  the README names the folder),
- runs axe-core (tests/journeys/vendor, injected by Playwright, never served) and fails on any serious
  or critical violation,
- fails when the page scrolls sideways (the document wider than the window),
and every journey fails on any console error, which is where Chromium reports Content-Security-Policy
violations.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CHROMIUM_ARGS  # noqa: F401  (the same browser flags as every browser test)

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "screenshots"
AXE_SOURCE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()
AXE_RUN = """axe.run(document, {resultTypes: ["violations"]}).then(r => r.violations
  .filter(v => v.impact === "serious" || v.impact === "critical")
  .map(v => ({id: v.id, impact: v.impact, help: v.help,
              nodes: v.nodes.slice(0, 4).map(n => n.target.join(" ") + " :: " + (n.failureSummary || ""))})))"""

WIDTHS = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}


@dataclass
class Journey:
    page: Any  # playwright.sync_api.Page
    width: str
    folder: Path
    base_url: str
    errors: list[str] = field(default_factory=list)
    visited: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base_url}{path}"

    def goto(self, path: str, name: str) -> None:
        self.page.goto(self.url(path))
        self.visit(name)

    def visit(self, name: str) -> None:
        """Check the page the browser shows now, and keep its picture."""
        page = self.page
        page.wait_for_load_state("load")
        self.visited.append(name)
        shot = (
            self.folder
            / f"{self.width}-{len(self.visited):02d}-{re.sub(r'[^a-z0-9]+', '-', name.lower())}.png"
        )
        page.screenshot(path=str(shot), full_page=True)
        if os.environ.get("JOURNEY_NO_AXE"):
            return
        if not page.evaluate("typeof window.axe === 'object'"):
            page.evaluate(AXE_SOURCE)
        violations = page.evaluate(AXE_RUN)
        assert not violations, f"{name} ({self.width}): accessibility violations {violations}"
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} ({self.width}): the page scrolls sideways by {overflow} px"
        assert not self.errors, f"{name} ({self.width}): console errors {self.errors}"


@pytest.fixture(params=list(WIDTHS))
def journey(request, _chromium, live_server):
    width = request.param
    context = _chromium.new_context(**WIDTHS[width])
    page = context.new_page()
    page.set_default_timeout(15000)
    folder = SCREENSHOTS / re.sub(r"\[.*\]$", "", request.node.name)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{width}-*.png"):
        old.unlink()
    trip = Journey(page=page, width=width, folder=folder, base_url=live_server.url)
    page.on("console", lambda msg: trip.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: trip.errors.append(str(exc)))
    yield trip
    context.close()
    assert not trip.errors, f"console errors during the journey: {trip.errors}"
