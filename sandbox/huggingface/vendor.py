"""The Hub's own answers, as kept in sandbox/vendor/huggingface/*.json (see the README there).

The stand-in builds its answers from these examples: `body()` starts from the vendor's example
and puts the stand-in's values in place of the example's, and `conform()` refuses any field that
the vendor's material does not have. A field added to the stand-in from belief rather than from
the vendor then fails loudly (VendorDrift, a 500 from the stand-in) instead of teaching the tests
something the real Hub never sends.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

VENDOR_DIR = Path(__file__).resolve().parents[1] / "vendor" / "huggingface"


class VendorDriftError(Exception):
    """The stand-in was about to send a field that no vendor material shows."""


@cache
def material(name: str) -> dict:
    return json.loads((VENDOR_DIR / f"{name}.json").read_text())


def example(name: str, case: str) -> dict:
    """One recorded answer ({"status", "headers", "body"}), as a copy the caller may change."""
    return copy.deepcopy(material(name)["examples"][case])


def conform(value: Any, templates: list[Any], where: str) -> None:
    """Raise VendorDriftError if `value` has a key that none of `templates` has, at any depth.

    Templates are merged: a dict may use the keys of any of them, a list item may follow any item of
    any of them. Values are not compared (the stand-in's ids and URLs differ from the recordings).
    """
    dicts = [t for t in templates if isinstance(t, dict)]
    lists = [t for t in templates if isinstance(t, list)]
    if isinstance(value, dict) and dicts:
        for key, item in value.items():
            subs = [t[key] for t in dicts if key in t]
            if not subs:
                raise VendorDriftError(f"{where}.{key}: no such field in the vendor's material")
            conform(item, subs, f"{where}.{key}")
    elif isinstance(value, list) and lists:
        items = [item for t in lists for item in t]
        if items:
            for item in value:
                conform(item, items, f"{where}[]")


def body(source: str, case: str, /, **values: Any) -> dict:
    """The vendor's example body for `case`, with `values` in place of the example's own.

    Positional-only arguments, so that a field may be called `name`.
    """
    result = example(source, case)["body"]
    for key, value in values.items():
        if key not in result:
            raise VendorDriftError(f"{source}.{case}.{key}: no such field in the vendor's example")
        conform(value, [result[key]], f"{source}.{case}.{key}")
        result[key] = value
    return result


def bodies(name: str, *cases: str) -> list[Any]:
    return [example(name, case)["body"] for case in cases]
