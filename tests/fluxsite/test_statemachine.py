"""The one state-machine helper (fluxsite.statemachine): tested once, on PostgreSQL with threads,
since that is where trainings, generations and models race."""

from __future__ import annotations

import pytest

from fluxsite.statemachine import backoff_seconds, transition
from tests.helpers import run_concurrently
from training.models import TrainingJob
from training.services import training_create

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.mark.postgres
def test_of_many_racing_transitions_exactly_one_moves_the_row(alice):
    job = training_create(owner=alice, name="Race", trigger_word="ohwx_race", subject_kind="subject")
    S = TrainingJob.Status

    def attempt(i: int) -> bool:
        mine = TrainingJob.objects.get(pk=job.pk)  # each thread holds its own, soon stale, copy
        return transition(mine, S.DRAFT, S.FAILED if i % 2 else S.CANCELED, error_message=f"thread {i}")

    results = run_concurrently(attempt, 8)
    assert results.count(True) == 1 and results.count(False) == 7, results
    job.refresh_from_db()
    winner = results.index(True)
    assert job.error_message == f"thread {winner}"
    assert job.status == (S.FAILED if winner % 2 else S.CANCELED)


def test_a_lost_transition_returns_false_and_shows_the_winner(alice):
    job = training_create(owner=alice, name="Stale", trigger_word="ohwx_stale", subject_kind="subject")
    stale = TrainingJob.objects.get(pk=job.pk)
    S = TrainingJob.Status
    assert transition(job, S.DRAFT, S.CANCELED)
    before = stale.updated_at
    assert not transition(stale, (S.DRAFT, S.INITIALIZING), S.FAILED)
    assert stale.status == S.CANCELED and stale.updated_at >= before  # read again: the winner's row


def test_a_transition_sets_updated_at_and_the_given_fields(alice):
    job = training_create(owner=alice, name="Fields", trigger_word="ohwx_fields", subject_kind="subject")
    before = job.updated_at
    assert transition(job, TrainingJob.Status.DRAFT, TrainingJob.Status.CANCELED, error_message="bye")
    assert job.error_message == "bye" and job.updated_at > before


@pytest.mark.parametrize("attempt", [1, 2, 3, 6, 12])
def test_backoff_doubles_with_half_jitter_and_respects_its_cap(attempt):
    delays = [backoff_seconds(attempt, base=30, cap=900) for _ in range(200)]
    full = min(30 * 2 ** (attempt - 1), 900)
    assert all(full / 2 <= d <= full for d in delays)
    assert max(delays) - min(delays) > full / 10  # jittered, not one value
