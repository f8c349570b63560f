"""Layout facts at phone (390 px, touch) and desktop (1280 px) width, measured in Debian's Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client

from tests.journeys.conftest import AXE_RUN, AXE_SOURCE  # axe-core, vendored for the tests

# Pictures of what these tests saw, to look at (var/ is kept out of git).
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots" / "layout"
SHOTS.mkdir(parents=True, exist_ok=True)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = {
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
    "desktop": {"viewport": {"width": 1280, "height": 800}},
}
# Every visible link, button, summary and form control on the page, with its box (a checkbox's
# target is its label).
TARGETS = """() => [...document.querySelectorAll(
    'header a, header button, header summary, main a.button, main button, main summary, main input:not([type=hidden]), main select')]
  .filter(e => e.offsetParent !== null || e.tagName === 'SUMMARY')
  .map(e => e.matches('input[type=checkbox], input[type=radio]') ? (e.closest('label') || e) : e)
  .map(e => { const r = e.getBoundingClientRect();
              return {what: e.outerHTML.slice(0, 90), width: r.width, height: r.height}; })
  .filter(t => t.width > 0 && t.height > 0)"""
# Elements sticking out of the window on the right (a table cut at the edge), scroll regions excepted.
WIDER_THAN_WINDOW = """() => [...document.querySelectorAll('body *')]
  .filter(e => e.checkVisibility() && !e.closest('.table-wrap, pre') && e.getBoundingClientRect().right > window.innerWidth + 1)
  .map(e => e.outerHTML.slice(0, 200))"""


def _context(_chromium, width: str, live_server, user=None):
    context = _chromium.new_context(**WIDTHS[width])
    if user is not None:
        client = Client()
        client.force_login(user)
        context.add_cookies(
            [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
        )
    page = context.new_page()
    page.errors = []
    page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.set_default_timeout(15000)
    return context, page


@pytest.fixture
def phone(_chromium, live_server, alice):
    context, page = _context(_chromium, "phone", live_server, alice)
    yield page
    context.close()


@pytest.fixture
def desktop(_chromium, live_server, alice):
    context, page = _context(_chromium, "desktop", live_server, alice)
    yield page
    context.close()


def _header_height(page) -> float:
    return page.locator("header.topbar").bounding_box()["height"]


def test_on_a_phone_the_navigation_takes_one_row_and_opens_as_a_menu(live_server, phone):
    phone.goto(f"{live_server.url}/trainings/")
    assert _header_height(phone) < 70  # one row: a 44 px menu button and the padding
    trainings = phone.get_by_role("link", name="Trainings", exact=True)
    assert not trainings.is_visible()

    phone.get_by_text("Menu").click()

    assert trainings.is_visible()
    for name in ("Models", "Generate", "Billing"):
        box = phone.locator("nav.mainnav").get_by_role("link", name=name).bounding_box()
        assert box["height"] >= 44 and box["width"] >= 200  # a whole row of the menu under a thumb
    assert phone.get_by_role("button", name="Log out").bounding_box()["height"] >= 44
    assert phone.errors == []


def test_the_phone_menu_opens_without_javascript(_chromium, live_server, alice):
    context = _chromium.new_context(**WIDTHS["phone"], java_script_enabled=False)
    client = Client()
    client.force_login(alice)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )
    page = context.new_page()
    page.goto(f"{live_server.url}/trainings/")
    page.get_by_text("Menu").click()
    assert page.get_by_role("link", name="Models").is_visible()
    context.close()


def test_on_a_desktop_the_navigation_is_one_row_of_links_with_no_menu_button(live_server, desktop):
    desktop.goto(f"{live_server.url}/trainings/")
    assert _header_height(desktop) < 70
    assert not desktop.get_by_text("Menu").is_visible()
    for name in ("Trainings", "Models", "Generate", "Billing"):
        assert desktop.locator("nav.mainnav").get_by_role("link", name=name).is_visible()
    assert desktop.get_by_role("button", name="Log out").is_visible()
    assert desktop.errors == []


def test_a_visitor_on_a_phone_sees_the_header_in_one_row(_chromium, live_server):
    context, page = _context(_chromium, "phone", live_server)
    page.goto(f"{live_server.url}/account/login/")
    assert _header_height(page) < 70
    assert page.evaluate(WIDER_THAN_WINDOW) == []
    context.close()


def _alice_has_rows(alice) -> None:
    """A training with a long name, an API token and ledger rows: every table of her pages has a row."""
    from fluxsite.accounts.services import api_token_create
    from training.services import training_create

    for n in range(3):
        training_create(
            owner=alice,
            name=f"Portraits by the sea, take {n}",
            trigger_word=f"ohwx_sea_{n}",
            subject_kind="subject",
        )
    api_token_create(user=alice, name="my laptop's upload script", scopes=["read", "train"])


@pytest.mark.parametrize("path", ["/trainings/", "/billing/", "/account/"])
def test_on_a_phone_tables_scroll_inside_their_card_and_the_page_does_not(live_server, phone, alice, path):
    _alice_has_rows(alice)
    phone.goto(f"{live_server.url}{path}")

    assert phone.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    assert phone.evaluate(WIDER_THAN_WINDOW) == []
    regions = phone.locator(".table-wrap")
    assert regions.count() >= 1
    for n in range(regions.count()):
        region = regions.nth(n)
        assert region.get_attribute("tabindex") == "0" and region.get_attribute("aria-label")
        box = region.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    assert phone.errors == []


def test_a_table_region_takes_the_keyboard_focus_and_shows_it(live_server, desktop, alice):
    _alice_has_rows(alice)
    desktop.goto(f"{live_server.url}/trainings/")
    region = desktop.locator(".table-wrap").first
    region.focus()
    desktop.keyboard.press("Shift+Tab")
    desktop.keyboard.press("Tab")  # focus by keyboard, so :focus-visible applies
    outline = region.evaluate("e => [document.activeElement === e, getComputedStyle(e).outlineStyle]")
    assert outline == [True, "solid"]


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_landing_page_fits_the_window_with_thumb_sized_buttons(_chromium, live_server, catalog, width):
    context, page = _context(_chromium, width, live_server)
    page.goto(f"{live_server.url}/")
    assert page.get_by_role("heading", name="How it works").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    assert page.evaluate(WIDER_THAN_WINDOW) == []
    assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    if width == "phone":
        small = [t for t in page.evaluate(TARGETS) if t["height"] < 44]
        assert small == []
    page.screenshot(path=str(SHOTS / f"{width}-landing.png"), full_page=True)
    page.evaluate(AXE_SOURCE)
    assert page.evaluate(AXE_RUN) == []
    assert page.errors == []
    context.close()


def _small_targets(page) -> list[dict]:
    return [t for t in page.evaluate(TARGETS) if t["height"] < 44 or t["width"] < 44]


def test_on_a_phone_the_dataset_page_has_thumb_sized_targets_and_opens_the_camera_roll(
    live_server, phone, alice, alice_client
):
    from django.urls import reverse

    from tests.training.conftest import add_photos
    from training.services import training_create

    job = training_create(owner=alice, name="Anna", trigger_word="ohwx_anna", subject_kind="subject")
    add_photos(alice_client, job, 2)
    phone.goto(f"{live_server.url}{reverse('training:dataset', args=[job.pk])}")

    accept = phone.locator("#upload-input").get_attribute("accept").split(",")
    assert "image/*" in accept and ".heic" in accept and ".heif" in accept
    assert (
        phone.locator("#upload-input").get_attribute("capture") is None
    )  # the camera roll, not only the camera
    assert _small_targets(phone) == []
    caption = phone.locator(".thumb textarea").first
    box = caption.bounding_box()
    assert box["height"] >= 44 and box["width"] >= 140
    assert caption.evaluate("e => parseFloat(getComputedStyle(e).fontSize)") >= 16  # no zoom on focus
    assert phone.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    phone.screenshot(path=str(SHOTS / "phone-dataset.png"), full_page=True)
    assert phone.errors == []


def test_on_a_phone_the_trainings_list_has_thumb_sized_targets(live_server, phone, alice):
    _alice_has_rows(alice)
    phone.goto(f"{live_server.url}/trainings/")
    assert _small_targets(phone) == []
    phone.screenshot(path=str(SHOTS / "phone-trainings.png"), full_page=True)


def test_times_follow_the_browsers_time_zone_from_the_second_page_on(_chromium, live_server, alice):
    from datetime import UTC, datetime

    from training.models import TrainingJob
    from training.services import training_create

    job = training_create(owner=alice, name="Sea", trigger_word="ohwx_sea", subject_kind="subject")
    TrainingJob.objects.filter(pk=job.pk).update(created_at=datetime(2026, 7, 1, 12, 0, tzinfo=UTC))
    context = _chromium.new_context(**WIDTHS["desktop"], timezone_id="Asia/Tokyo")
    client = Client()
    client.force_login(alice)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )
    page = context.new_page()
    page.goto(f"{live_server.url}/trainings/")  # site.js remembers the zone in a cookie
    assert {c["name"]: c["value"] for c in context.cookies()}.get("tz") == "Asia/Tokyo"
    page.reload()
    assert page.locator("#training-rows time").inner_text() == "1 Jul 2026, 21:00"
    context.close()


def test_a_button_is_disabled_while_its_htmx_request_runs(live_server, desktop):
    held = []
    desktop.route("**/account/tokens/", lambda route: held.append(route))
    desktop.goto(f"{live_server.url}/account/")
    desktop.fill("#api-tokens input[name=name]", "laptop")
    button = desktop.get_by_role("button", name="Create token")
    button.click()
    desktop.wait_for_function("document.querySelector('#api-tokens form button[type=submit]').disabled")
    assert held and button.get_attribute("aria-busy") == "true"
    held[0].continue_()
    desktop.get_by_text("Copy it now").wait_for()
    assert desktop.get_by_role("button", name="Create token").is_enabled()


def test_a_button_of_an_ordinary_form_is_disabled_once_its_form_is_sent(live_server, desktop, alice):
    from django.urls import reverse

    from training.services import training_create

    job = training_create(owner=alice, name="Sea", trigger_word="ohwx_sea", subject_kind="subject")
    sent = []

    # A 204 answer keeps the browser on the page, as a slow server would while the request runs.
    def hold(route) -> None:
        sent.append(route.request.method)
        route.fulfill(status=204)

    desktop.route("**/duplicate/", hold)
    desktop.goto(f"{live_server.url}{reverse('training:dataset', args=[job.pk])}")
    button = desktop.get_by_role("button", name="Duplicate")
    button.click()
    desktop.wait_for_function("document.querySelector('button[data-busy]') !== null")
    assert sent == ["POST"] and button.is_disabled()
    assert desktop.get_by_role("button", name="Apply to all").is_enabled()  # only the sent form's buttons
    assert desktop.errors == []


UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]):not([type=submit]), select, textarea')]
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby'))
  .map(e => e.outerHTML.slice(0, 120))"""


def test_every_field_of_the_pages_a_new_person_uses_has_a_label(live_server, desktop, alice, alice_client):
    from django.urls import reverse

    from tests.training.conftest import add_photos
    from training.services import training_create

    job = training_create(owner=alice, name="Anna", trigger_word="ohwx_anna", subject_kind="subject")
    add_photos(alice_client, job, 1)
    pages = [
        "/trainings/",
        reverse("training:new"),
        reverse("training:dataset", args=[job.pk]),
        reverse("training:start", args=[job.pk]),
        "/models/",
        reverse("generations:generate"),
        "/billing/",
        "/account/",
    ]
    unlabelled = {}
    for path in pages:
        desktop.goto(f"{live_server.url}{path}")
        if found := desktop.evaluate(UNLABELLED):
            unlabelled[path] = found
    assert unlabelled == {}
