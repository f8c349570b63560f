"""The authentication backend reads the session's user as Django's ModelBackend does."""

from __future__ import annotations

from django.contrib.auth.backends import ModelBackend

from fluxsite.accounts.backends import UserBackend


def _fields(user):
    return {f.attname: getattr(user, f.attname) for f in user._meta.concrete_fields}


def test_it_reads_the_sessions_user_as_model_backend_does(alice, bob, django_assert_num_queries):
    ours, django = UserBackend(), ModelBackend()
    for user in (alice, bob):
        with django_assert_num_queries(1):
            read = ours.get_user(user.pk)
        assert read is not None and _fields(read) == _fields(django.get_user(user.pk))
    by_text = ours.get_user(str(alice.pk))
    assert by_text is not None and by_text.pk == alice.pk  # a session may hold the id as text


def test_an_inactive_missing_or_garbled_user_is_nobody(alice):
    backend = UserBackend()
    assert backend.get_user(alice.pk + 1000) is None
    assert backend.get_user("not-an-id") is None
    assert backend.get_user(10**30) is None
    type(alice).objects.filter(pk=alice.pk).update(is_active=False)
    assert backend.get_user(alice.pk) is None


def test_a_logged_in_page_knows_its_user_and_a_logged_out_one_does_not(alice_client, anon_client):
    assert alice_client.get("/trainings/").status_code == 200
    assert anon_client.get("/trainings/").status_code == 302
