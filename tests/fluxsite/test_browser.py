import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_visitor_signs_up_in_a_real_browser_without_csp_errors(live_server, browser_page, tmp_path):
    page = browser_page
    page.goto(f"{live_server.url}/account/signup/")
    page.fill("#id_email", "dora@example.com")
    page.fill("#id_password1", "an-unusual-passphrase-for-dora")
    page.fill("#id_password2", "an-unusual-passphrase-for-dora")
    page.click("button[type=submit]")
    # Sign-up mails a verification link and signs nobody in (fluxsite.accounts); logging in works
    # before the address is verified.
    page.wait_for_url(f"{live_server.url}/account/signup/sent/")
    page.goto(f"{live_server.url}/account/login/")
    page.fill("#id_username", "dora@example.com")
    page.fill("#id_password", "an-unusual-passphrase-for-dora")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/trainings/")
    nav = page.locator("nav.mainnav").inner_text()
    assert "Trainings" in nav and "Billing" in nav and "credits" in nav
    assert page.evaluate("typeof htmx") == "object"
    page.screenshot(path=str(tmp_path / "trainings.png"))
    assert page.errors == []  # no CSP violation, and a Permissions-Policy Chromium fully understands
