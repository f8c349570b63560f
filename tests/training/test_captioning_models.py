"""Reading the captioning models' real output shapes (sandbox/vendor/replicate/cog/*.predict.json)."""

from __future__ import annotations

import pytest

from training.captioning_models import MODELS, CaptionOutputError, caption_as_tags, missing_inputs

FLORENCE = MODELS["lucataco/florence-2-large"]
LLAVA = MODELS["yorickvp/llava-13b"]


def test_florence_answers_with_a_python_dict_string_not_json():
    # As its predict.py returns it: str(parsed_answer), single quotes and all.
    text = str({"<MORE_DETAILED_CAPTION>": "The image shows a dog's toy on a mat."})
    assert text.startswith("{'<MORE")
    assert FLORENCE.parse_output({"img": None, "text": text}) == "The image shows a dog's toy on a mat."


@pytest.mark.parametrize(
    "output",
    [
        {"img": None, "text": "<MORE_DETAILED_CAPTION>The image shows"},
        {"img": None, "text": "__import__('os').system('true')"},  # never evaluated: literals only
        {"img": None, "text": "['a list']"},
        {"img": None, "text": "{'<OD>': {'bboxes': [], 'labels': []}}"},
        {"img": None},
        ["a", "list"],
        None,
    ],
)
def test_florence_outputs_outside_its_format_are_refused(output):
    with pytest.raises(CaptionOutputError):
        FLORENCE.parse_output(output)


def test_llava_joins_its_streamed_text_pieces_and_accepts_a_plain_string():
    assert LLAVA.parse_output(["A", " woman", " smiling", "."]) == "A woman smiling."
    assert LLAVA.parse_output("A woman smiling.") == "A woman smiling."
    for output in ({"text": "x"}, [1, 2], None):
        with pytest.raises(CaptionOutputError):
            LLAVA.parse_output(output)


def test_the_inputs_we_send_are_in_each_models_schema():
    florence = {"image": 1, "task_input": 1, "text_input": 1}
    llava = {"image": 1, "prompt": 1, "top_p": 1, "temperature": 1, "max_tokens": 1}
    assert missing_inputs(FLORENCE, florence) == [] and missing_inputs(LLAVA, llava) == []
    assert missing_inputs(LLAVA, {"image": 1, "prompt": 1}) == ["max_tokens", "temperature"]


def test_a_sentence_becomes_short_tags():
    assert caption_as_tags("A woman with a red scarf and a black hat on a bench.") == (
        "woman, red scarf, black hat on a bench"
    )


def test_the_price_per_photo_comes_from_run_seconds_hardware_price_and_margin(settings):
    settings.CAPTION_PRICE_MARGIN = "1.5"
    settings.CREDIT_VALUE_CENTS = 1
    # 3 s x $0.000225 x 1.5 = 0.10 cents → 1 credit; 4 s x $0.0014 x 1.5 = 0.84 cents → 1 credit
    assert FLORENCE.price_per_photo == 1 and LLAVA.price_per_photo == 1
    settings.CAPTION_PRICE_MARGIN = "10"
    assert LLAVA.price_per_photo == 6  # 5.6 cents, rounded up


def test_the_inspection_checklist_is_read_from_the_first_json_object_with_every_key_typed():
    from training.captioning_models import inspection_parse

    pieces = [
        "Sure",
        "!",
        ' {"people":',
        " 2,",
        ' "face_visible": true, "face_covered": false,',
        ' "text_or_watermark": false, "heavy_filter": true}',
        " Hope this helps.",
    ]
    assert inspection_parse(pieces) == {
        "people": 2,
        "face_visible": True,
        "face_covered": False,
        "text_or_watermark": False,
        "heavy_filter": True,
    }
    for bad in (
        ["no json here"],
        [
            '{"people": "two", "face_visible": true, "face_covered": false, "text_or_watermark": false, '
            '"heavy_filter": false}'
        ],
        [
            '{"people": true, "face_visible": true, "face_covered": false, "text_or_watermark": false, '
            '"heavy_filter": false}'
        ],
        ['{"people": 1}'],
        ["[1, 2]"],
        ["{broken"],
    ):
        with pytest.raises(CaptionOutputError):
            inspection_parse(bad)
