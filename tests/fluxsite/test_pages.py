import pytest
from django.urls import path

from tests.helpers import assert_no_inline_script

pytestmark = pytest.mark.django_db


def _boom(request):
    raise RuntimeError("secret internal detail: DATABASE password=hunter2")


urlpatterns = [path("boom/", _boom)]
handler500 = "fluxsite.views.server_error"


def test_an_unknown_url_gets_the_friendly_404_page(alice_client):
    response = alice_client.get("/no/such/page/")
    assert response.status_code == 404
    assert b"We could not find that page" in response.content


def test_an_error_in_a_view_gets_the_500_page_without_details(client, settings):
    settings.ROOT_URLCONF = __name__
    client.raise_request_exception = False
    response = client.get("/boom/")
    assert response.status_code == 500
    assert b"Something went wrong on our side" in response.content
    assert b"hunter2" not in response.content
    assert b"RuntimeError" not in response.content


def test_pages_carry_a_strict_content_security_policy(anon_client):
    policy = anon_client.get("/account/login/")["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "object-src 'none'" in policy


def test_the_layout_uses_our_own_htmx_and_sends_the_csrf_token(alice_client):
    html = alice_client.get("/trainings/").content.decode()
    assert 'src="/static/js/htmx.min.js"' in html
    assert 'hx-headers=\'{"X-CSRFToken": "' in html
    assert_no_inline_script(html)
    assert "style=" not in html
    for label in ("Trainings", "Models", "Generate", "Billing", "credits"):
        assert label in html


def test_the_home_page_sends_people_who_are_signed_in_to_their_trainings(alice_client):
    assert alice_client.get("/")["Location"] == "/trainings/"


def test_the_home_page_shows_a_visitor_what_fluxsite_does_and_what_it_costs(anon_client, catalog, settings):
    from billing.models import CreditPack
    from billing.pricing import generation_cost_credits, training_cost_credits

    response = anon_client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "How it works" in html and "Drop 10-50 photos" in html
    assert 'href="/account/signup/"' in html and 'href="/account/login/"' in html
    for picture in ("photos", "training", "results"):
        assert f'src="/static/img/landing/{picture}.svg"' in html
    packs = list(CreditPack.objects.filter(active=True))
    assert packs and all(pack.name in html for pack in packs)
    assert f"{training_cost_credits(steps=1000)} credits" in html
    assert f"{generation_cost_credits(num_images=1)} credits" in html
    assert f"{settings.SIGNUP_CREDITS} credits" in html
    assert_no_inline_script(html)
    assert "style=" not in html


def test_the_home_page_refuses_a_post(anon_client):
    assert anon_client.post("/").status_code == 405


def test_health_check_answers(anon_client):
    assert anon_client.get("/healthz").json() == {"status": "ok"}
