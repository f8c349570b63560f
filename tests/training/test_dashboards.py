"""Issue 5's pages: start, history, details and the actions on a training.

The pipeline itself runs through the sandbox in test_pipeline.py. Here the views are driven
without a live server: `transaction.on_commit` never fires inside these tests' transaction, so
starting a training enqueues its first task without reaching Replicate. Where a test checks that
the task runs, it captures the enqueue and runs it by hand (django-q2 runs it synchronously).
"""

from __future__ import annotations

import io
import secrets
from datetime import timedelta

import pytest
from django.core.files.storage import storages
from django.urls import reverse
from django.utils import timezone

from billing.models import CreditEntry, CreditKind
from billing.pricing import training_cost_credits
from billing.selectors import balance_for_user
from billing.services import credits_adjust, credits_spend
from fluxsite.integrations import storage
from tests.helpers import cold_queries
from training.models import DatasetImage, TrainingEvent, TrainingJob
from training.services import training_create

S = TrainingJob.Status
PARAMS = {
    "steps": 1000,
    "learning_rate": 0.0004,
    "lora_rank": 16,
    "batch_size": 1,
    "resolution": "512,768,1024",
    "optimizer": "adamw8bit",
    "caption_dropout_rate": 0.05,
    "autocaption": True,
    "autocaption_prefix": "",
    "autocaption_suffix": "",
}


def add_stored_images(job: TrainingJob, count: int) -> list[DatasetImage]:
    """Dataset rows with real (tiny) stored files: the views under test never decode them."""
    rows = []
    for i in range(count):
        base = f"datasets/{job.pk}/{secrets.token_hex(8)}"
        file_name = storage.file_save(
            alias=storage.PRIVATE, name=f"{base}.jpg", content=io.BytesIO(b"photo%d" % i)
        )
        thumb = storage.file_save(
            alias=storage.PRIVATE, name=f"{base}_t.jpg", content=io.BytesIO(b"thumb%d" % i)
        )
        rows.append(
            DatasetImage.objects.create(
                dataset=job.dataset,
                file_name=file_name,
                thumbnail_name=thumb,
                original_name=f"p{i}.jpg",
                width=1024,
                height=1024,
                original_width=2048,
                original_height=2048,
                byte_size=6,
                pixel_sha256=f"{i:064x}",
                dhash=f"{i:016x}",
                caption=f"a photo of [trigger] number {i}",
                position=i,
                warnings=["Blurry."] if i == 0 else [],
            )
        )
    return rows


def make_training(
    owner, *, name: str = "Anna", status: str = S.DRAFT, photos: int = 0, trigger: str = "ohwx_anna", **fields
) -> TrainingJob:
    job = training_create(owner=owner, name=name, trigger_word=trigger, subject_kind="subject")
    if photos:
        add_stored_images(job, photos)
    TrainingJob.objects.filter(pk=job.pk).update(status=status, **fields)
    job.refresh_from_db()
    return job


def set_balance(user, credits: int) -> None:
    """Sign-up grants welcome credits; tests start from a balance they choose."""
    change = credits - balance_for_user(user)
    if change:
        credits_adjust(user=user, amount=change, note="test balance")


def hold_credits(job: TrainingJob, amount: int = 100) -> None:
    """What training_start leaves behind: a spend whose reference the job keeps."""
    set_balance(job.owner, amount)
    credits_spend(
        user=job.owner, amount=amount, reference=f"training:{job.pk}", kind=CreditKind.SPEND_TRAINING
    )
    TrainingJob.objects.filter(pk=job.pk).update(
        credit_reference=f"training:{job.pk}", cost_credits=amount, runs=1
    )
    job.refresh_from_db()


@pytest.fixture
def draft(alice):
    return make_training(alice, photos=10)


# --- Every view: login, owner, method ----------------------------------------------------------------
VIEWS = {  # name: (allowed methods, a method that must be refused)
    "training:detail": ("get", "post"),
    "training:row_status": ("get", "post"),
    "training:start": ("get", "put"),
    "training:estimate": ("get", "post"),
    "training:cancel": ("get", "put"),
    "training:retry": ("post", "get"),
    "training:duplicate": ("post", "get"),
    "training:samples": ("get", "post"),
    "training:samples_rerun": ("post", "get"),
}


@pytest.mark.parametrize("name", VIEWS)
def test_an_anonymous_visitor_is_sent_to_log_in(anon_client, draft, name):
    method = VIEWS[name][0]
    response = getattr(anon_client, method)(reverse(name, args=[draft.pk]))
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))


@pytest.mark.parametrize("name", VIEWS)
def test_bob_gets_404_for_alices_training(bob_client, draft, name):
    method = VIEWS[name][0]
    response = getattr(bob_client, method)(reverse(name, args=[draft.pk]))
    assert response.status_code == 404
    assert TrainingJob.objects.count() == 1  # nothing was duplicated for bob either


@pytest.mark.parametrize("name", VIEWS)
def test_a_wrong_method_is_refused(alice_client, draft, name):
    method = VIEWS[name][1]
    assert getattr(alice_client, method)(reverse(name, args=[draft.pk])).status_code == 405


# --- Start ------------------------------------------------------------------------------------------
def test_the_start_page_shows_the_form_the_estimate_and_the_balance(alice_client, alice, draft):
    from training.services import training_estimate

    set_balance(alice, 777)
    body = alice_client.get(reverse("training:start", args=[draft.pk])).content.decode()

    credits, dollars = training_estimate(steps=1000)
    assert f"{credits} credits" in body and f"${dollars}" in body
    assert "777 credits" in body
    assert 'name="learning_rate"' in body and "Start training" in body
    assert f'hx-get="/trainings/{draft.pk}/estimate/"' in body and 'hx-trigger="change' in body


def test_a_preset_fills_the_fields_and_its_cost(alice_client, draft):
    from training.services import training_estimate

    url = reverse("training:start", args=[draft.pk])
    page = alice_client.get(url, {"preset": "style"}).content.decode()
    fragment = alice_client.get(url, {"preset": "quick"}, headers={"hx-request": "true"})

    assert 'value="1500"' in page and 'value="0.0003"' in page
    body = fragment.content.decode()
    assert "<html" not in body and 'value="300"' in body and 'value="8"' in body
    assert 'hx-swap-oob="true"' in body and f"{training_estimate(steps=300)[0]} credits" in body


def test_the_estimate_follows_the_steps(alice_client, draft):
    from training.services import training_estimate

    url = reverse("training:estimate", args=[draft.pk])
    body = alice_client.get(url, {"steps": "2500"}).content.decode()
    assert f"{training_estimate(steps=2500)[0]} credits" in body and "2500 steps" in body
    assert "Enter 3-6000 steps" in alice_client.get(url, {"steps": "abc"}).content.decode()
    assert "Enter 3-6000 steps" in alice_client.get(url, {"steps": "9000"}).content.decode()


def test_starting_with_enough_credits_holds_them_and_runs_the_first_task(
    alice_client, alice, draft, django_capture_on_commit_callbacks
):
    set_balance(alice, 5000)
    cost = training_cost_credits(steps=1000)

    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        response = alice_client.post(
            reverse("training:start", args=[draft.pk]), {**PARAMS, "preset": "subject"}
        )

    assert response.status_code == 302 and response["Location"] == reverse("training:detail", args=[draft.pk])
    draft.refresh_from_db()
    assert draft.status == S.INITIALIZING and draft.cost_credits == cost and draft.params["steps"] == 1000
    spend = CreditEntry.objects.get(reference=f"training:{draft.pk}")
    assert spend.amount == -cost and balance_for_user(alice) == 5000 - cost
    advance = [c for c in enqueued if c.__qualname__.startswith("_enqueue_advance")]
    assert len(advance) == 1
    advance[0]()  # the django-q2 task, synchronous here: the initializing stage passes to the ZIP stage
    draft.refresh_from_db()
    assert draft.status == S.ZIP_CREATION


def test_starting_without_enough_credits_says_so_and_links_to_billing(alice_client, alice, draft):
    set_balance(alice, 3)

    response = alice_client.post(reverse("training:start", args=[draft.pk]), PARAMS)

    body = response.content.decode()
    assert response.status_code == 402
    assert "your balance is 3" in body and f'href="{reverse("billing:overview")}"' in body
    draft.refresh_from_db()
    assert draft.status == S.DRAFT and balance_for_user(alice) == 3
    assert not CreditEntry.objects.filter(reference__startswith="training:").exists()


def test_a_refused_start_is_a_form_error(alice_client, alice):
    set_balance(alice, 5000)
    job = make_training(alice, photos=2)

    response = alice_client.post(reverse("training:start", args=[job.pk]), PARAMS)

    assert response.status_code == 400
    assert "add at least 8 more to train" in response.content.decode()
    assert balance_for_user(alice) == 5000


def test_invalid_parameters_are_shown_and_nothing_is_held(alice_client, alice, draft):
    set_balance(alice, 5000)
    response = alice_client.post(reverse("training:start", args=[draft.pk]), {**PARAMS, "steps": "2"})
    assert response.status_code == 400 and "greater than or equal to 3" in response.content.decode()
    assert balance_for_user(alice) == 5000


def test_a_started_training_has_no_start_page(alice_client, alice):
    job = make_training(alice, status=S.ZIP_CREATION)
    response = alice_client.get(reverse("training:start", args=[job.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("training:detail", args=[job.pk])


# --- Cancel and retry -----------------------------------------------------------------------------------
def test_cancel_asks_first_then_refunds(alice_client, alice):
    job = make_training(alice, status=S.ZIP_CREATION, photos=10)
    hold_credits(job, 120)
    assert balance_for_user(alice) == 0

    confirm = alice_client.get(reverse("training:cancel", args=[job.pk]))
    assert confirm.status_code == 200 and "120 credits" in confirm.content.decode()
    job.refresh_from_db()
    assert job.status == S.ZIP_CREATION

    response = alice_client.post(reverse("training:cancel", args=[job.pk]))

    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == S.CANCELED and balance_for_user(alice) == 120
    body = alice_client.get(reverse("training:detail", args=[job.pk])).content.decode()
    assert "Your 120 credits were refunded" in body


def test_a_finished_training_cannot_be_canceled(alice_client, alice):
    job = make_training(alice, status=S.SUCCEEDED)
    response = alice_client.post(reverse("training:cancel", args=[job.pk]), follow=True)
    assert "Only a running training can be canceled" in response.content.decode()
    job.refresh_from_db()
    assert job.status == S.SUCCEEDED


def test_retry_holds_the_credits_again_and_resumes_the_failed_stage(alice_client, alice):
    job = make_training(
        alice,
        status=S.FAILED,
        photos=10,
        failed_stage=S.ZIP_CREATION,
        params=PARAMS,
        error_message="The dataset ZIP could not be written.",
        error_category="file_error",
    )
    hold_credits(job, 50)
    from billing.services import credits_refund

    credits_refund(spend_reference=f"training:{job.pk}")
    assert balance_for_user(alice) == 50

    response = alice_client.post(reverse("training:retry", args=[job.pk]))

    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == S.ZIP_CREATION and job.error_message == "" and balance_for_user(alice) == 0
    assert CreditEntry.objects.filter(reference=f"training:{job.pk}:2", amount=-50).exists()


def test_retry_without_credits_links_to_billing(alice_client, alice):
    job = make_training(alice, status=S.FAILED, failed_stage=S.ZIP_CREATION, params=PARAMS, cost_credits=50)
    set_balance(alice, 0)
    body = alice_client.post(reverse("training:retry", args=[job.pk]), follow=True).content.decode()
    assert "your balance is 0" in body and f'href="{reverse("billing:overview")}"' in body
    job.refresh_from_db()
    assert job.status == S.FAILED


# --- Duplicate ---------------------------------------------------------------------------------------
def test_duplicate_copies_settings_photos_and_captions_to_new_files(alice_client, alice):
    job = make_training(
        alice, status=S.SUCCEEDED, photos=3, params=PARAMS, preset="subject", description="My sister"
    )
    originals = list(job.dataset.images.all())

    response = alice_client.post(reverse("training:duplicate", args=[job.pk]))

    copy = TrainingJob.objects.exclude(pk=job.pk).get()
    assert response.status_code == 302 and response["Location"] == reverse("training:dataset", args=[copy.pk])
    assert (copy.name, copy.trigger_word, copy.subject_kind, copy.description) == (
        "Anna (copy)",
        "ohwx_anna",
        "subject",
        "My sister",
    )
    assert copy.status == S.DRAFT and copy.params == PARAMS and copy.preset == "subject"
    assert copy.duplicated_from == job and copy.owner == alice
    copies = list(copy.dataset.images.all())
    private = storages["private"]
    assert [c.caption for c in copies] == [o.caption for o in originals]
    assert [c.warnings for c in copies] == [o.warnings for o in originals]
    for original, duplicate in zip(originals, copies, strict=True):
        assert (
            duplicate.file_name != original.file_name and duplicate.thumbnail_name != original.thumbnail_name
        )
        assert duplicate.file_name.startswith(f"datasets/{copy.pk}/")
        assert private.open(duplicate.file_name).read() == private.open(original.file_name).read()
        assert private.open(duplicate.thumbnail_name).read() == private.open(original.thumbnail_name).read()
    # Deleting the copy's photo leaves the original's file alone.
    alice_client.post(reverse("training:image_delete", args=[copy.pk, copies[0].pk]))
    assert private.exists(originals[0].file_name)


def test_a_duplicate_whose_photo_is_missing_leaves_nothing_behind(alice_client, alice):
    job = make_training(alice, status=S.FAILED, photos=2)
    last = job.dataset.images.last()
    assert last is not None
    storages["private"].delete(last.file_name)

    response = alice_client.post(reverse("training:duplicate", args=[job.pk]), follow=True)

    assert "could not be copied" in response.content.decode()
    assert TrainingJob.objects.count() == 1 and DatasetImage.objects.count() == 2


# --- History -------------------------------------------------------------------------------------------
def _names(response) -> list[str]:
    return [t.name for t in response.context["trainings"]]


def test_the_history_filters_searches_and_sorts(alice_client, alice, bob):
    make_training(alice, name="Rex", status=S.SUCCEEDED, trigger="ohwx_dog")
    make_training(alice, name="Anna", status=S.FAILED, trigger="ohwx_sister")
    make_training(alice, name="Zoe", status=S.REPLICATE_TRAINING, trigger="ohwx_zoe")
    make_training(alice, name="Bert", status=S.CANCELED, trigger="ohwx_bert")
    make_training(alice, name="Draft one", trigger="ohwx_draft")
    make_training(bob, name="Bobby", status=S.SUCCEEDED, trigger="ohwx_anna")
    url = reverse("training:list")

    assert _names(alice_client.get(url)) == ["Draft one", "Bert", "Zoe", "Anna", "Rex"]
    assert _names(alice_client.get(url, {"sort": "oldest"})) == ["Rex", "Anna", "Zoe", "Bert", "Draft one"]
    assert _names(alice_client.get(url, {"sort": "name"})) == ["Anna", "Bert", "Draft one", "Rex", "Zoe"]
    assert _names(alice_client.get(url, {"status": "active"})) == ["Zoe"]
    assert _names(alice_client.get(url, {"status": "succeeded"})) == ["Rex"]
    assert _names(alice_client.get(url, {"status": "failed"})) == ["Anna"]
    assert _names(alice_client.get(url, {"status": "canceled"})) == ["Bert"]
    assert _names(alice_client.get(url, {"status": "draft"})) == ["Draft one"]
    assert _names(alice_client.get(url, {"q": "ANN"})) == ["Anna"]
    assert _names(alice_client.get(url, {"q": "sister"})) == ["Anna"]  # the trigger word matches too
    assert _names(alice_client.get(url, {"status": "bogus", "sort": "bogus"})) == _names(
        alice_client.get(url)
    )
    assert "No training matches" in alice_client.get(url, {"q": "nobody"}).content.decode()


def test_the_history_has_twenty_at_a_time_and_a_more_link(alice_client, alice):
    make_training(alice, name="t00")
    TrainingJob.objects.bulk_create(
        [TrainingJob(owner=alice, name=f"t{i:02d}", trigger_word="ohwx_t") for i in range(1, 45)]
    )
    url = reverse("training:list")

    first = alice_client.get(url, {"sort": "name"})
    second = alice_client.get(url + "?" + first.context["page"].next_query)
    third = alice_client.get(url + "?" + second.context["page"].next_query, HTTP_HX_REQUEST="true")

    assert _names(first) == [f"t{i:02d}" for i in range(20)]
    assert _names(second) == [f"t{i:02d}" for i in range(20, 40)]
    body = third.content.decode()
    assert [f"t{i:02d}" for i in range(39, 46) if f">t{i:02d}<" in body] == [
        f"t{i:02d}" for i in range(40, 45)
    ]
    # The htmx answer is the rows and the "more" link, out of band; the last page has no link.
    assert "<html" not in body and 'hx-swap-oob="true"' in body and "More trainings" not in body
    assert "sort=name" in first.context["page"].next_query
    assert 'hx-target="#training-rows"' in first.content.decode()


def _count_queries(client, url) -> int:
    response, queries = cold_queries(client, url)
    assert response.status_code == 200
    return queries


def test_the_history_costs_the_same_queries_for_1_or_200_trainings(alice_client, alice):
    job = make_training(alice, status=S.REPLICATE_TRAINING, photos=2)
    url = reverse("training:list")
    with_one = _count_queries(alice_client, url)

    statuses = [S.DRAFT, S.SUCCEEDED, S.FAILED, S.REPLICATE_TRAINING, S.CANCELED]
    TrainingJob.objects.bulk_create(
        [
            TrainingJob(owner=alice, name=f"n{i}", trigger_word="ohwx_n", status=statuses[i % 5])
            for i in range(199)
        ]
    )
    with_200 = _count_queries(alice_client, url)

    assert with_one == with_200
    assert job.pk  # the row with photos is still counted right
    assert "<td>2</td>" in alice_client.get(url, {"q": "Anna"}).content.decode()


def test_active_rows_poll_their_status_until_it_is_over(alice_client, alice):
    running = make_training(
        alice, name="Running", status=S.REPLICATE_TRAINING, progress_step=250, progress_total=1000
    )
    done = make_training(alice, name="Done", status=S.SUCCEEDED)
    page = alice_client.get(reverse("training:list")).content.decode()
    assert f'hx-get="{reverse("training:row_status", args=[running.pk])}"' in page
    assert f'hx-get="{reverse("training:row_status", args=[done.pk])}"' not in page

    live = alice_client.get(reverse("training:row_status", args=[running.pk]), headers={"hx-request": "true"})
    assert (
        live.status_code == 200
        and "25%" in live.content.decode()
        and 'hx-trigger="every 3s"' in live.content.decode()
    )

    TrainingJob.objects.filter(pk=running.pk).update(status=S.SUCCEEDED)
    final = alice_client.get(
        reverse("training:row_status", args=[running.pk]), headers={"hx-request": "true"}
    )
    assert (
        final.status_code == 286
        and "Succeeded" in final.content.decode()
        and "hx-get" not in final.content.decode()
    )


# --- Details ----------------------------------------------------------------------------------------------
def _running(alice, **fields) -> TrainingJob:
    now = timezone.now()
    stage_times = {
        "initializing": {
            "started": (now - timedelta(minutes=10)).isoformat(),
            "ended": (now - timedelta(minutes=9, seconds=58)).isoformat(),
        },
        "zip_creation": {
            "started": (now - timedelta(minutes=9, seconds=58)).isoformat(),
            "ended": (now - timedelta(minutes=9, seconds=40)).isoformat(),
        },
        "replicate_training": {"started": (now - timedelta(minutes=9, seconds=40)).isoformat()},
    }
    defaults = dict(
        status=S.REPLICATE_TRAINING,
        photos=10,
        params=PARAMS,
        preset="subject",
        cost_credits=252,
        cost_estimate_dollars="1.68",
        credit_reference="training:x",
        stage_times=stage_times,
        progress_step=420,
        progress_total=1000,
        seconds_per_step=1.12,
        eta_seconds=650,
        current_loss=0.1234,
        replicate_training_id="r8abc",
        loss_history=[[s, 0.5 - s / 3000] for s in range(10, 430, 10)],
    )
    defaults.update(fields)
    return make_training(alice, **defaults)  # type: ignore[arg-type]  # the test's own keyword mix


def test_the_detail_page_shows_progress_timeline_parameters_and_costs(alice_client, alice):
    job = _running(alice)
    TrainingEvent.objects.create(
        job=job,
        stage="zip_creation",
        level="warning",
        category="network",
        message="Storage was slow.",
        hint="It will be retried.",
        attempt=2,
    )

    body = alice_client.get(reverse("training:detail", args=[job.pk])).content.decode()

    assert '<progress id="training-progress" max="1000" value="420">' in body and "Step 420 of 1000" in body
    assert "1.12 s/step" in body and "about 10 min 50 s" in body and "0.1234" in body
    assert "<svg" in body and "polyline" in body  # the loss curve
    assert "18 s" in body and "2 s" in body  # the finished stages' durations
    assert 'aria-current="step"' in body and "Training on Replicate" in body
    assert "LoRA rank" in body and "Portrait / subject" in body
    assert "252 credits" in body and "$1.68" in body and "known when Replicate finishes" in body
    assert "Storage was slow." in body and "It will be retried." in body and "(attempt 2)" in body
    assert reverse("training:cancel", args=[job.pk]) in body
    assert f'hx-get="{reverse("training:detail", args=[job.pk])}?since=' in body


def test_the_status_fragment_polls_until_the_training_is_over(alice_client, alice):
    job = _running(alice)
    url = reverse("training:detail", args=[job.pk])

    live = alice_client.get(url, headers={"hx-request": "true"})
    assert (
        live.status_code == 200
        and "<html" not in live.content.decode()
        and "every 3s" in live.content.decode()
    )

    TrainingJob.objects.filter(pk=job.pk).update(status=S.SUCCEEDED, predict_time=1200, progress_step=1000)
    final = alice_client.get(url, headers={"hx-request": "true"})
    body = final.content.decode()
    assert final.status_code == 286 and "Succeeded" in body and "hx-get" not in body


def test_the_status_fragment_refreshes_the_cost_card_when_the_gpu_cost_arrives(alice_client, alice):
    job = _running(alice)
    url = reverse("training:detail", args=[job.pk])
    page = alice_client.get(url).content.decode()
    assert (
        page.count('id="training-cost"') == 1
        and 'hx-swap-oob="true"' not in page.split('id="training-cost"')[1][:40]
    )

    last = TrainingEvent.objects.create(job=job, stage="replicate_training", message="Training.")
    quiet = alice_client.get(url, {"since": last.pk}, headers={"hx-request": "true"}).content.decode()
    assert 'id="training-cost"' not in quiet  # nothing happened: the card cannot have changed

    TrainingJob.objects.filter(pk=job.pk).update(status=S.SUCCEEDED, predict_time=1200, progress_step=1000)
    job.refresh_from_db()
    final = alice_client.get(url, {"since": last.pk}, headers={"hx-request": "true"})
    body = final.content.decode()
    assert final.status_code == 286
    cost_card = body.split('id="training-cost" hx-swap-oob="true">')[1].split("</section>")[0]
    assert f"${job.actual_cost_dollars}" in cost_card and "20 min 00 s of GPU" in cost_card
    assert "known when Replicate finishes" not in cost_card


def test_a_failed_training_shows_the_error_its_hint_the_refund_and_retry(alice_client, alice):
    job = _running(
        alice,
        status=S.FAILED,
        failed_stage=S.REPLICATE_TRAINING,
        error_category="file_error",
        error_message="The trainer failed: no images found.",
        error_hint="Check your photos.",
        predict_time=100.0,
    )

    body = alice_client.get(reverse("training:detail", args=[job.pk])).content.decode()

    assert "failed at “Training on Replicate”" in body
    assert "no images found" in body and "Check your photos." in body
    assert "Your 252 credits were refunded." in body
    assert (
        reverse("training:retry", args=[job.pk]) in body
        and reverse("training:cancel", args=[job.pk]) not in body
    )
    assert f"${job.actual_cost_dollars}" in body  # predict_time × price


def test_a_succeeded_training_links_its_model(alice_client, alice):
    from models_app.models import LoraModel

    job = _running(alice, status=S.SUCCEEDED)
    model = LoraModel.objects.create(
        owner=alice,
        name="Anna",
        slug="anna",
        trigger_word="ohwx_anna",
        weights_file_name="w.safetensors",
        weights_size=1,
        weights_sha256="0" * 64,
        training=job,
    )
    body = alice_client.get(reverse("training:detail", args=[job.pk])).content.decode()
    assert reverse("models_app:detail", args=[model.pk]) in body and "Open the model" in body


def test_the_live_fragment_sends_only_the_events_after_the_last_one_the_page_has(alice_client, alice):
    job = _running(alice)
    first, second = (
        TrainingEvent.objects.create(job=job, stage="initializing", message=text) for text in ("One.", "Two.")
    )
    url = reverse("training:detail", args=[job.pk])

    page = alice_client.get(url).content.decode()
    assert "One." in page and "Two." in page and f"?since={second.pk}" in page

    third = TrainingEvent.objects.create(job=job, stage="replicate_training", message="Three.")
    live = alice_client.get(url, {"since": second.pk}, headers={"hx-request": "true"}).content.decode()
    # The status card and the new event only, appended to the log out of band; the next poll
    # asks after the new one.
    assert "Three." in live and "One." not in live and "Two." not in live
    assert 'hx-swap-oob="beforeend:#training-events"' in live and f"?since={third.pk}" in live
    quiet = alice_client.get(url, {"since": third.pk}, headers={"hx-request": "true"}).content.decode()
    assert "hx-swap-oob" not in quiet and "Three." not in quiet and f"?since={third.pk}" in quiet
    del first


def test_the_event_log_shows_the_latest_50_and_pages_back(alice_client, alice):
    job = _running(alice)
    TrainingEvent.objects.bulk_create(
        [TrainingEvent(job=job, stage="replicate_training", message=f"event {i:03d}.") for i in range(120)]
    )
    url = reverse("training:detail", args=[job.pk])

    page = alice_client.get(url)
    body = page.content.decode()
    assert "event 119." in body and "event 070." in body and "event 069." not in body
    assert body.index("event 070.") < body.index("event 119.")  # oldest of the page first
    earlier = alice_client.get(url + "?" + page.context["page"].next_query, headers={"hx-request": "true"})
    rows = earlier.content.decode()
    assert "event 069." in rows and "event 020." in rows and "event 070." not in rows and "<html" not in rows
    assert 'hx-swap="afterbegin"' in rows and "Earlier events" in rows


def test_the_detail_page_costs_the_same_queries_for_1_or_200_events(alice_client, alice):
    job = _running(alice)
    TrainingEvent.objects.create(job=job, stage="initializing", message="Started.")
    url = reverse("training:detail", args=[job.pk])
    with_one = _count_queries(alice_client, url)

    TrainingEvent.objects.bulk_create(
        [TrainingEvent(job=job, stage="replicate_training", message=f"event {i}") for i in range(199)]
    )
    with_200 = _count_queries(alice_client, url)

    assert with_one == with_200


# --- Admin ------------------------------------------------------------------------------------------------
def test_staff_see_trainings_events_and_webhooks_and_can_reconcile(staff_client, alice):
    from training.models import ReplicateWebhook

    job = _running(alice)
    TrainingEvent.objects.create(job=job, stage="initializing", message="Started.")
    ReplicateWebhook.objects.create(webhook_id="msg_1", replicate_id="r8abc", payload={"id": "r8abc"})

    assert (
        staff_client.get(
            reverse("admin:training_trainingjob_changelist"), {"status__exact": "replicate_training"}
        ).status_code
        == 200
    )
    change = staff_client.get(reverse("admin:training_trainingjob_change", args=[job.pk])).content.decode()
    assert "Started." in change
    assert staff_client.get(reverse("admin:training_trainingevent_changelist")).status_code == 200
    assert (
        staff_client.get(reverse("admin:training_replicatewebhook_changelist"), {"q": "r8abc"}).status_code
        == 200
    )

    # A draft nobody touches: reconcile finds nothing to do, and says so.
    response = staff_client.post(
        reverse("admin:training_trainingjob_changelist"),
        {"action": "reconcile_now", "_selected_action": [job.pk]},
        follow=True,
    )
    assert "Reconciled: 0 polled at Replicate, 0 resumed, 0 failed and refunded." in response.content.decode()


# --- In a real browser --------------------------------------------------------------------------------------
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_live_detail_page_renders_under_the_csp_and_keeps_polling(
    live_server, browser_page, alice, tmp_path
):
    """Set SCREENSHOTS_DIR to keep the pictures (for a human looking at the layout)."""
    import os

    from tests.conftest import PASSWORD

    job = _running(alice)
    TrainingEvent.objects.create(job=job, stage="initializing", message="Training started: 252 credits held.")
    TrainingEvent.objects.create(
        job=job,
        stage="zip_creation",
        level="warning",
        category="network",
        message="Storage was slow to answer.",
        hint="This is usually brief; it will be retried.",
        attempt=2,
    )
    page = browser_page
    page.goto(f"{live_server.url}{reverse('accounts:login')}")
    page.fill("input[name=username]", alice.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(f"{live_server.url}{reverse('training:list')}")

    page.goto(f"{live_server.url}{reverse('training:detail', args=[job.pk])}")
    assert page.locator("progress#training-progress").get_attribute("value") == "420"
    assert page.locator(".loss-chart svg polyline").count() == 1
    TrainingJob.objects.filter(pk=job.pk).update(progress_step=600)
    page.locator("label[for=training-progress]").filter(has_text="Step 600 of 1000").wait_for(timeout=10_000)
    shots = os.environ.get("SCREENSHOTS_DIR") or str(tmp_path)
    page.screenshot(path=f"{shots}/training-detail.png", full_page=True)
    page.goto(f"{live_server.url}{reverse('training:list')}")
    page.screenshot(path=f"{shots}/training-list.png", full_page=True)
    page.goto(f"{live_server.url}{reverse('training:start', args=[make_training(alice, photos=10).pk])}")
    page.click("text=Quick test")
    page.locator("#estimate").filter(has_text="300 steps").wait_for(timeout=10_000)
    page.screenshot(path=f"{shots}/training-start.png", full_page=True)
    assert not [e for e in page.errors if "Content Security Policy" in e], page.errors
