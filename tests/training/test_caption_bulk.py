"""Issue 16, item 7: find and replace across captions, download them (ZIP of .txt or CSV), import
them back; and the bad input of that part (empty, too long, wrong format, markup).

Through the real views. The photos are rows only (their pixels play no part in captions): the
upload path has its own tests.
"""

from __future__ import annotations

import csv
import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from training.models import DatasetImage, TrainingJob
from training.services import CAPTION_MAX

pytestmark = pytest.mark.django_db
Source = DatasetImage.CaptionSource


def _photos(training, rows: list[tuple[str, str]]) -> list[DatasetImage]:
    """Photo rows named and captioned as given, in that order."""
    return DatasetImage.objects.bulk_create(
        [
            DatasetImage(
                dataset=training.dataset,
                file_name=f"datasets/{training.pk}/{i}.jpg",
                thumbnail_name=f"datasets/{training.pk}/{i}_t.jpg",
                original_name=name,
                width=512,
                height=512,
                original_width=512,
                original_height=512,
                byte_size=1000,
                pixel_sha256=f"{i:064x}",
                dhash=f"{i:016x}",
                caption=caption,
                caption_source=Source.PERSON if caption else Source.NONE,
                position=i,
            )
            for i, (name, caption) in enumerate(rows, start=1)
        ]
    )


def _captions(training) -> list[str]:
    return list(training.dataset.images.order_by("position").values_list("caption", flat=True))


def _replace(client, training, find, replace="", *, case=True, apply=False, expected=None, htmx=True):
    data = {"find": find, "replace": replace}
    if case:
        data["case_sensitive"] = "on"
    if apply:
        data["apply"] = "1"
    if expected is not None:
        data["expected"] = str(expected)
    headers = {"HX-Request": "true"} if htmx else {}
    return client.post(reverse("training:captions_replace", args=[training.pk]), data, headers=headers)


def _import(client, training, name: str, data: bytes, **extra):
    return client.post(
        reverse("training:captions_import", args=[training.pk]),
        {"file": SimpleUploadedFile(name, data)},
        headers={"HX-Request": "true"},
        **extra,
    )


def _export(client, training, fmt: str):
    return client.get(reverse("training:captions_export", args=[training.pk]) + f"?format={fmt}")


# --- Find and replace --------------------------------------------------------------------------
def test_the_preview_counts_occurrences_and_captions_and_changes_nothing(alice_client, training):
    _photos(training, [("a.jpg", "a cat and a cat"), ("b.jpg", "a cat"), ("c.jpg", "a dog")])
    response = _replace(alice_client, training, "cat", "lion")
    assert response.status_code == 200
    assert "Replaces 3 occurrences in 2 captions." in response.content.decode()
    assert 'name="expected" value="3"' in response.content.decode()  # the apply button carries the count
    assert _captions(training) == ["a cat and a cat", "a cat", "a dog"]


def test_applying_replaces_marks_the_changed_captions_as_the_persons_and_refreshes_the_grid(
    alice_client, training
):
    images = _photos(training, [("a.jpg", "a cat"), ("b.jpg", "a dog"), ("c.jpg", "a cat, tabby")])
    DatasetImage.objects.filter(pk=images[0].pk).update(caption_source=Source.MODEL, caption_model="o/m:v")
    DatasetImage.objects.filter(pk=images[1].pk).update(caption_source=Source.MODEL, caption_model="o/m:v")
    response = _replace(alice_client, training, "cat", "lion", apply=True, expected=2)
    assert response.status_code == 200
    assert "Done: replaced 2 occurrences in 2 captions." in response.content.decode()
    assert response["HX-Trigger"] == "dataset-changed"
    rows = list(
        training.dataset.images.order_by("position").values_list("caption", "caption_source", "caption_model")
    )
    assert rows == [("a lion", "person", ""), ("a dog", "model", "o/m:v"), ("a lion, tabby", "person", "")]


def test_the_case_sensitive_toggle(alice_client, training):
    _photos(training, [("a.jpg", "Cat cat CAT")])
    assert "Replaces 1 occurrence in 1 caption." in _replace(alice_client, training, "cat").content.decode()
    _replace(alice_client, training, "cat", "dog", case=False, apply=True, expected=3)
    assert _captions(training) == ["dog dog dog"]


def test_find_and_replace_are_plain_text_never_a_pattern(alice_client, training):
    _photos(training, [("a.jpg", "a (cat) . cat"), ("b.jpg", "1+1")])
    _replace(alice_client, training, "(cat)", r"\1 \g<0>", apply=True, expected=1)
    _replace(alice_client, training, "+", "*", apply=True, expected=1)
    assert _captions(training) == [r"a \1 \g<0> . cat", "1*1"]


def test_applying_is_refused_when_the_captions_changed_since_the_preview(alice_client, training):
    _photos(training, [("a.jpg", "a cat"), ("b.jpg", "a cat")])
    response = _replace(alice_client, training, "cat", "dog", apply=True, expected=1)
    assert response.status_code == 400
    assert "changed since the preview" in response.content.decode()
    assert _captions(training) == ["a cat", "a cat"]


def test_a_replacement_that_would_pass_the_limit_is_refused_and_one_at_the_limit_is_not(
    alice_client, training
):
    _photos(training, [("long.jpg", "x" * (CAPTION_MAX - 4) + " ab"), ("short.jpg", "ab")])
    # At the limit: "ab" -> "abc" makes the long caption exactly CAPTION_MAX.
    response = _replace(alice_client, training, "ab", "abc", apply=True, expected=2)
    assert response.status_code == 200, response.content
    assert len(_captions(training)[0]) == CAPTION_MAX
    # Past it: refused whole, the short caption untouched too, and the photo named.
    preview = _replace(alice_client, training, "abc", "abcd")
    assert "Refused: 1 caption would be longer than 1000 characters (long.jpg)" in preview.content.decode()
    assert 'name="apply"' not in preview.content.decode()
    response = _replace(alice_client, training, "abc", "abcd", apply=True, expected=2)
    assert response.status_code == 400
    assert _captions(training)[1] == "abc" and len(_captions(training)[0]) == CAPTION_MAX


def test_an_empty_search_is_a_form_error_not_a_500(alice_client, training):
    _photos(training, [("a.jpg", "a cat")])
    response = _replace(alice_client, training, "")
    assert response.status_code == 400
    assert "This field is required" in response.content.decode()


def test_a_replacement_with_markup_is_stored_as_text_and_escaped_on_the_page(alice_client, training):
    _photos(training, [("a.jpg", "a cat")])
    _replace(alice_client, training, "cat", "<script>alert(1)</script>\nx", apply=True, expected=1)
    assert _captions(training) == ["a <script>alert(1)</script> x"]  # the line break became a space
    page = alice_client.get(reverse("training:dataset", args=[training.pk])).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_without_htmx_the_replace_answers_the_whole_page(alice_client, training):
    _photos(training, [("a.jpg", "a cat")])
    response = _replace(alice_client, training, "cat", htmx=False)
    assert response.status_code == 200
    assert "Replaces 1 occurrence in 1 caption." in response.content.decode()
    assert 'id="dataset-grid"' in response.content.decode()


# --- Download --------------------------------------------------------------------------------------
def test_the_zip_download_names_each_txt_like_its_photo_sanitised_and_unique(alice_client, training):
    _photos(
        training,
        [
            ("IMG 0001.JPG", "first"),
            ("img 0001.jpeg", "second, same name but for the case"),
            ("photos.zip › beach/../sun.png", "from a zip"),
            ("…", ""),
            ("été à Paris.heic", "accents"),
        ],
    )
    response = _export(alice_client, training, "zip")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == f'attachment; filename="captions-{training.pk}.zip"'
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        members = {name: archive.read(name).decode() for name in archive.namelist()}
    assert members == {
        "IMG_0001.txt": "first",
        "img_0001_2.txt": "second, same name but for the case",
        "sun.txt": "from a zip",
        "photo.txt": "",
        "été_à_Paris.txt": "accents",
    }


def test_the_csv_download_is_injection_safe_and_has_a_bom(alice_client, training):
    formulas = ['=HYPERLINK("http://x")', "+1", "-1", "@SUM(A1)"]
    _photos(training, [(f"p{i}.jpg", f) for i, f in enumerate(formulas)] + [("q.jpg", 'a "quoted", caption')])
    response = _export(alice_client, training, "csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0] == ["file", "caption"]
    assert rows[1:] == [[f"p{i}", "'" + f] for i, f in enumerate(formulas)] + [["q", 'a "quoted", caption']]


def test_an_unknown_download_format_is_a_400(alice_client, training):
    assert _export(alice_client, training, "xlsx").status_code == 400


def test_a_downloaded_csv_imported_again_changes_nothing(alice_client, training):
    _photos(training, [("a.jpg", "=1+1"), ("b.jpg", "plain"), ("c.jpg", "-dash")])
    exported = _export(alice_client, training, "csv").content
    response = _import(alice_client, training, "captions.csv", exported)
    assert response.status_code == 200
    assert "0 captions updated, 3 unchanged." in response.content.decode()
    assert _captions(training) == ["=1+1", "plain", "-dash"]


# --- Import --------------------------------------------------------------------------------------
def test_a_csv_import_matches_by_file_stem_and_reports_what_it_could_not_use(alice_client, training):
    images = _photos(training, [("IMG_1.jpg", "old one"), ("IMG_2.jpg", "old two"), ("IMG_3.jpg", "keep")])
    DatasetImage.objects.filter(pk=images[0].pk).update(caption_source=Source.MODEL, caption_model="o/m:v")
    body = (
        b"file,caption\r\n"
        b"img_1.jpg,new one\r\n"  # the photo's name with its extension, in another case
        b"IMG_2,new two\r\n"
        b"IMG_3,\r\n"  # empty: never clears a caption
        b"nobody.jpg,lost\r\n"
        b"IMG_2,again\r\n"
        b"IMG_1,too,many\r\n"
    )
    response = _import(alice_client, training, "c.csv", body)
    assert response.status_code == 200
    text = response.content.decode()
    assert "2 captions updated, 0 unchanged." in text
    assert "1 empty caption skipped" in text
    assert "No photo of that name: nobody.jpg." in text
    assert "IMG_2: appears twice; the first one was used." in text
    assert "Line 7: 3 columns, not 2" in text
    assert response["HX-Trigger"] == "dataset-changed"
    rows = list(
        training.dataset.images.order_by("position").values_list("caption", "caption_source", "caption_model")
    )
    assert rows == [("new one", "person", ""), ("new two", "person", ""), ("keep", "person", "")]


def test_a_utf16_csv_with_its_bom_is_read_like_a_caption_file(alice_client, training):
    _photos(training, [("a.jpg", "")])
    body = "file,caption\r\na,café au lait\r\n".encode("utf-16")  # with the BOM, as Excel writes it
    response = _import(alice_client, training, "c.csv", body)
    assert response.status_code == 200
    assert _captions(training) == ["café au lait"]


def test_a_utf16_csv_without_a_bom_is_read_too(alice_client, training):
    _photos(training, [("a.jpg", "")])
    response = _import(alice_client, training, "c.csv", 'a,"thé, noir"\r\n'.encode("utf-16-le"))
    assert response.status_code == 200
    assert _captions(training) == ["thé, noir"]


def test_a_zip_import_matches_txt_members_by_stem(alice_client, training):
    _photos(training, [("Beach.jpg", ""), ("Sun.jpg", "old"), ("Rain.jpg", "stays")])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("folder/beach.txt", "a beach".encode("utf-16"))
        archive.writestr("Sun.txt", b"\xef\xbb\xbfthe sun\r\n")
        archive.writestr("__MACOSX/._Sun.txt", b"junk")
        archive.writestr("cloud.txt", b"no such photo")
        archive.writestr("Rain.jpg", b"not a caption")
    response = _import(alice_client, training, "captions.zip", out.getvalue())
    assert response.status_code == 200
    text = response.content.decode()
    assert "2 captions updated" in text and "No photo of that name: cloud." in text
    assert "Rain.jpg: not a .txt file, skipped." in text
    assert _captions(training) == ["a beach", "the sun", "stays"]


def test_an_imported_caption_over_the_limit_is_cut_with_a_notice(alice_client, training):
    _photos(training, [("a.jpg", "")])
    response = _import(alice_client, training, "c.csv", f"a,{'y' * (CAPTION_MAX + 50)}\n".encode())
    assert f"Cut to {CAPTION_MAX} characters: a.jpg." in response.content.decode()
    assert _captions(training) == ["y" * CAPTION_MAX]


def test_imported_markup_is_plain_text_escaped_on_the_page(alice_client, training):
    _photos(training, [("a.jpg", "")])
    _import(alice_client, training, "c.csv", b'a,"<img src=x onerror=alert(1)>"\n')
    assert _captions(training) == ["<img src=x onerror=alert(1)>"]
    page = alice_client.get(reverse("training:dataset", args=[training.pk])).content.decode()
    assert "<img src=x onerror" not in page


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("c.zip", b"PK\x03\x04 damaged", "This ZIP archive is damaged"),
        ("c.bin", bytes(range(256)) * 4, "neither a ZIP of .txt captions nor a CSV"),
        ("c.csv", b'a,"unterminated\x00', "neither a ZIP of .txt captions nor a CSV"),
    ],
)
def test_a_file_in_the_wrong_format_gets_a_clear_message_not_a_500(
    alice_client, training, name, data, message
):
    _photos(training, [("a.jpg", "keep")])
    response = _import(alice_client, training, name, data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert _captions(training) == ["keep"]


def test_the_import_size_limit_holds_at_the_limit_and_refuses_past_it(alice_client, training, settings):
    settings.DATASET_CAPTIONS_IMPORT_MAX_BYTES = 2000
    _photos(training, [("a.jpg", "")])
    at_limit = b"a," + b"z" * 1997 + b"\n"
    assert len(at_limit) == 2000
    assert _import(alice_client, training, "c.csv", at_limit).status_code == 200
    assert _captions(training) == ["z" * CAPTION_MAX]
    response = _import(alice_client, training, "c.csv", at_limit + b"\n")
    assert response.status_code == 413
    assert "we stopped reading it there" in response.content.decode()


def test_a_body_declared_over_the_limit_is_refused_before_it_is_read(alice_client, training, settings):
    settings.DATASET_CAPTIONS_IMPORT_MAX_BYTES = 2000
    response = alice_client.generic(
        "POST",
        reverse("training:captions_import", args=[training.pk]),
        b"",  # the body is never read: the declared length decides
        content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(2000 + 2 * 1024 * 1024),
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 413
    assert "nothing was imported" in response.content.decode()


def test_the_row_limit_holds_at_the_limit_and_refuses_past_it(alice_client, training, settings):
    settings.DATASET_CAPTIONS_IMPORT_MAX_ROWS = 5
    _photos(training, [("a.jpg", "")])
    rows = "file,caption\n" + "".join(f"n{i},x\n" for i in range(4)) + "a,at the limit\n"
    response = _import(alice_client, training, "c.csv", rows.encode())
    assert response.status_code == 200 and _captions(training) == ["at the limit"]
    response = _import(alice_client, training, "c.csv", (rows + "a,past\n").encode())
    assert response.status_code == 400
    assert "more than 5 rows" in response.content.decode()
    assert _captions(training) == ["at the limit"]


def test_a_zip_with_more_files_than_the_row_limit_is_refused_before_reading_them(
    alice_client, training, settings
):
    settings.DATASET_CAPTIONS_IMPORT_MAX_ROWS = 3
    _photos(training, [("a.jpg", "")])

    def archive(count: int) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zf:
            for i in range(count):
                zf.writestr("a.txt" if i == 0 else f"n{i}.txt", "from the zip")
        return out.getvalue()

    assert _import(alice_client, training, "c.zip", archive(3)).status_code == 200
    response = _import(alice_client, training, "c.zip", archive(4))
    assert response.status_code == 400 and "holds 4 files; the most we read is 3" in response.content.decode()


def test_a_caption_file_in_a_zip_over_its_size_is_skipped_with_a_reason(alice_client, training):
    _photos(training, [("a.jpg", ""), ("b.jpg", "")])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.txt", "x" * 10_001)
        zf.writestr("b.txt", "fine")
    text = _import(alice_client, training, "c.zip", out.getvalue()).content.decode()
    assert "a.txt: 10,001 bytes, over the 10,000 a caption file may have; skipped." in text
    assert _captions(training) == ["", "fine"]


# --- Who may do what -------------------------------------------------------------------------------
def test_a_started_training_refuses_edits_but_its_captions_can_be_downloaded(alice_client, training):
    _photos(training, [("a.jpg", "a cat")])
    TrainingJob.objects.filter(pk=training.pk).update(status=TrainingJob.Status.SUCCEEDED)
    response = _replace(alice_client, training, "cat", "dog", apply=True, expected=1)
    assert response.status_code == 400 and "has started" in response.content.decode()
    response = _import(alice_client, training, "c.csv", b"a,dog\n")
    assert response.status_code == 400 and "has started" in response.content.decode()
    assert _captions(training) == ["a cat"]
    assert _export(alice_client, training, "csv").status_code == 200
    page = alice_client.get(reverse("training:dataset", args=[training.pk])).content.decode()
    assert "Find and replace" not in page and "?format=csv" in page


def test_another_users_dataset_is_a_404_for_every_bulk_action(bob_client, training):
    _photos(training, [("a.jpg", "a cat")])
    assert _replace(bob_client, training, "cat", "dog", apply=True).status_code == 404
    assert _import(bob_client, training, "c.csv", b"a,dog\n").status_code == 404
    assert _export(bob_client, training, "zip").status_code == 404
    assert _captions(training) == ["a cat"]


def test_the_anonymous_visitor_is_sent_to_log_in_and_wrong_methods_are_refused(
    client, alice_client, training
):
    for name in ("captions_replace", "captions_import", "captions_export"):
        response = client.get(reverse(f"training:{name}", args=[training.pk]))
        assert response.status_code == 302 and "/login" in response["Location"]
    for name in ("captions_replace", "captions_import"):
        assert alice_client.get(reverse(f"training:{name}", args=[training.pk])).status_code == 405
    assert alice_client.post(reverse("training:captions_export", args=[training.pk])).status_code == 405


def test_the_import_checks_the_csrf_token(alice, training):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    _photos(training, [("a.jpg", "keep")])
    response = strict.post(
        reverse("training:captions_import", args=[training.pk]),
        {"file": SimpleUploadedFile("c.csv", b"a,x\n")},
    )
    assert response.status_code == 403
    assert _captions(training) == ["keep"]


def test_replacing_and_importing_cost_the_same_queries_for_2_and_50_photos(alice_client, training):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries(count: int) -> tuple[int, int, int]:
        DatasetImage.objects.filter(dataset=training.dataset).delete()
        _photos(training, [(f"p{i}.jpg", "a cat") for i in range(count)])
        with CaptureQueriesContext(connection) as replaced:
            assert (
                _replace(alice_client, training, "cat", "dog", apply=True, expected=count).status_code == 200
            )
        body = "".join(f"p{i},a bird\n" for i in range(count)).encode()
        with CaptureQueriesContext(connection) as imported:
            assert _import(alice_client, training, "c.csv", body).status_code == 200
        with CaptureQueriesContext(connection) as exported:
            assert _export(alice_client, training, "zip").status_code == 200
        assert set(_captions(training)) == {"a bird"}
        return len(replaced), len(imported), len(exported)

    queries(2)  # warm the session and content types out of the count
    assert queries(2) == queries(50)


def test_too_many_files_in_one_import_is_a_clear_400(alice_client, training, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    response = alice_client.post(
        reverse("training:captions_import", args=[training.pk]),
        {"file": [SimpleUploadedFile(f"c{i}.csv", b"a,x\n") for i in range(3)]},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 400
    assert "import one captions file at a time" in response.content.decode()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_replacements_applied_at_once_from_the_same_preview_change_the_captions_once(alice):
    """Under the dataset's row lock the second sees the first's result, so its preview no longer
    holds and it is refused; without the lock both would read "cat" and both would apply."""
    from tests.helpers import run_concurrently
    from training.services import DatasetError, dataset_captions_replace, training_create

    job = training_create(owner=alice, name="Anna", trigger_word="ohwx_anna", subject_kind="subject")
    _photos(job, [(f"p{i}.jpg", "a cat") for i in range(5)])

    def apply(_i: int):
        return dataset_captions_replace(
            dataset=job.dataset, find="cat", replace="cat and a cat", case_sensitive=True, expected=5
        )

    results = run_concurrently(apply, 4)
    assert sum(not isinstance(r, Exception) for r in results) == 1, results
    assert all(isinstance(r, DatasetError) for r in results if isinstance(r, Exception)), results
    assert set(_captions(job)) == {"a cat and a cat"}
