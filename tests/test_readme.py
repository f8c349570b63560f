"""The README's "Where things live" table is true file by file: every module it names exists, and
every module of every app is named in its folder's row."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = [
    "fluxsite",
    "fluxsite/accounts",
    "fluxsite/integrations",
    "billing",
    "models_app",
    "generations",
    "training",
    "api",
    "backoffice",
]
NOT_LISTED = {"__init__.py", "apps.py", "wsgi.py", "asgi.py"}


def table() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Where things live") : text.index("## Production")]
    rows = {}
    for line in section.splitlines():
        match = re.match(r"\| `([^`]+)/`(?:, `[^`]+`)? \| (.*) \|$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def named_paths(folder: str, row: str) -> list[Path]:
    """Paths the row names: `x.py`, `sub/`, `sub/x.py` relative to the folder, nested lists too."""
    paths = []
    for name in re.findall(r"`([\w/.-]+)`", row):
        if name.endswith((".py", "/")) and not name.startswith("."):
            paths.append(name)
    return [ROOT / folder / p for p in paths]


def test_every_module_the_table_names_exists():
    rows = table()
    assert set(APPS) <= set(rows), rows.keys()
    missing = []
    for folder, row in rows.items():
        if folder not in APPS:
            continue
        for path in named_paths(folder, row):
            candidates = [
                path,
                *(
                    path.parent / sub / path.name
                    for sub in ("services", "management/commands", "templatetags")
                ),
            ]
            if not any(c.exists() for c in candidates):
                missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"the README names modules that do not exist: {missing}"


def test_every_module_of_every_app_is_in_its_row():
    rows = table()
    unnamed = []
    for folder in APPS:
        base = ROOT / folder
        for path in base.rglob("*.py"):
            relative = path.relative_to(base)
            if "migrations" in relative.parts or path.name in NOT_LISTED:
                continue
            if folder == "fluxsite" and relative.parts[0] in ("accounts", "integrations"):
                continue
            if path.stem not in rows[folder] and path.name not in rows[folder]:
                unnamed.append(str(path.relative_to(ROOT)))
    assert not unnamed, f"add these modules to the README's table: {unnamed}"
