"""Malformed query strings and ids on every kind of page: a clear answer (4xx or the page), never a 500."""

import pytest

pytestmark = pytest.mark.django_db

URLS = [
    "/trainings/?page=abc&sort=zzz&status=nope&q=%00",
    "/trainings/?page=-5",
    "/models/generate/?model=abc",
    "/models/generate/?model=99999&again=xyz",
    "/billing/?page=-1",
    "/billing/?page=abc",
    "/models/gallery/?page=99999",
    "/models/gallery/?page=x",
    "/billing/checkout/success/?session_id=%00",
    "/trainings/99999/",
    "/trainings/99999/estimate/?steps=abc",
    "/models/99999/",
    "/files/garbage",
    "/models/p/not-a-uuid/",
    "/account/reset/xx/yy/",
]


@pytest.mark.parametrize("url", URLS)
def test_a_malformed_address_never_gets_a_500(alice_client, url):
    r = alice_client.get(url)
    assert r.status_code < 500, (url, r.status_code)


def test_malformed_numbers_in_forms_never_get_a_500(alice_client, alice):
    from training.services import training_create

    job = training_create(owner=alice, name="x", trigger_word="ohwx_x", subject_kind="subject")
    for q in ["abc", "-1", "99999999999", ""]:
        r = alice_client.get(f"/trainings/{job.pk}/estimate/?steps={q}")
        assert r.status_code < 500, (q, r.status_code)
    for data in [{"steps": "abc"}, {"steps": "1e9"}, {}]:
        r = alice_client.post(f"/trainings/{job.pk}/start/", data)
        assert r.status_code < 500, (data, r.status_code)
    r = alice_client.post("/models/generate/", {"model": "abc", "prompt": "x", "num_outputs": "99"})
    assert r.status_code < 500


def test_a_nul_byte_in_the_address_is_a_400_with_a_message(alice_client):
    response = alice_client.get("/billing/checkout/success/?session_id=cs_%00x")
    assert response.status_code == 400 and b"not allowed" in response.content
