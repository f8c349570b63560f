"""The shared test helpers: a check that misses what it looks for would let every test using it pass."""

from __future__ import annotations

import threading

import pytest

from tests.helpers import assert_no_inline_script, inline_scripts, run_concurrently, wait_for, wait_until


@pytest.mark.parametrize(
    "html",
    [
        "<script>alert(1)</script>",
        '<script nonce="r4nd0m">alert(1)</script>',
        '<script type="module">import "x"</script>',
        '<script type="application/json">{"a": 1}</script>',
        "<SCRIPT>alert(1)</SCRIPT>",
        '<script\ndefer nonce="x">alert(1)</script>',
        '<button onclick="go()">Go</button>',
        '<img src="x.png" onerror="steal()">',
        '<body onload="init()">',
        '<svg><rect onmouseover="x()"/></svg>',
        '<a href="javascript:alert(1)">x</a>',
    ],
)
def test_inline_script_is_found_in_every_shape(html):
    assert inline_scripts(html)
    with pytest.raises(AssertionError, match="inline script"):
        assert_no_inline_script(html)


@pytest.mark.parametrize(
    "html",
    [
        '<script src="/static/js/htmx.min.js" defer></script>',
        '<script defer src="/static/js/generate.js"></script>',
        '<p>Write onclick="x" in a paragraph, or &lt;script&gt; as text.</p>',
        '<div data-onclick="x" hx-on="y">no handler attribute</div>',
        '<textarea name="caption">&lt;script&gt;alert(1)&lt;/script&gt;</textarea>',
    ],
)
def test_external_scripts_and_text_are_not_inline_script(html):
    assert inline_scripts(html) == []
    assert_no_inline_script(html.encode())


def test_wait_until_returns_the_last_value_whether_or_not_it_was_reached():
    values = iter(range(100))
    assert wait_until(lambda: next(values), lambda v: v == 3, interval=0) == 3
    assert wait_until(lambda: "never", lambda v: False, timeout=0.05, interval=0.01) == "never"
    assert wait_for(lambda: True) is True
    assert wait_for(lambda: False, timeout=0.05, interval=0.01) is False


def test_run_concurrently_releases_the_threads_together_and_returns_results_and_exceptions():
    inside = threading.Barrier(3, timeout=5)  # passes only if all three run at the same time

    def act(i: int):
        inside.wait()
        if i == 1:
            raise ValueError(i)
        return i * 10

    results = run_concurrently(act, 3)
    assert results[0] == 0 and results[2] == 20 and isinstance(results[1], ValueError)
