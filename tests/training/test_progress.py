from tests.helpers import assert_no_inline_script
from training.progress import loss_chart_svg, progress_from_logs

LOGS = """\
Downloading weights
captioning:  50%|#####     | 5/10 [00:05<00:05,  1.00it/s]
flux_train_replicate:   0%|          | 0/1000 [00:00<?, ?it/s]
flux_train_replicate:  10%|█         | 100/1000 [01:41<15:12,  1.01s/it, lr: 4.0e-04 loss: 4.123e-01]
flux_train_replicate:  10%|█         | 100/1000 [01:41<15:12,  1.01s/it, lr: 4.0e-04 loss: 4.123e-01]
loading checkpoint shards: 100%|##########| 3/3 [00:02<00:00,  1.20it/s]
flux_train_replicate:  20%|██        | 200/1000 [03:20<12:00,  1.25it/s, lr: 4.0e-04 loss: 3.500e-01]
"""


def test_it_reads_the_latest_training_step_speed_eta_and_loss():
    progress = progress_from_logs(LOGS)
    assert (progress.step, progress.total, progress.percent) == (200, 1000, 20)
    assert progress.seconds_per_step == 1 / 1.25
    assert progress.eta_seconds == 12 * 60
    assert progress.loss == 0.35


def test_it_keeps_one_loss_per_step_and_ignores_other_progress_bars():
    progress = progress_from_logs(LOGS)
    assert progress.loss_history == [(100, 0.4123), (200, 0.35)]


def test_it_handles_carriage_returns_and_empty_logs():
    assert progress_from_logs(None).step == 0
    assert progress_from_logs("").percent == 0
    cr = (
        "flux_train_replicate:   5%|5    | 50/1000 [00:50<15:50,  1.00s/it, lr: 4.0e-04 loss: 5.000e-01]\r"
        "flux_train_replicate:   6%|6    | 60/1000 [01:00<15:40,  1.00s/it, lr: 4.0e-04 loss: 4.900e-01]"
    )
    assert progress_from_logs(cr).step == 60


def test_a_bar_without_a_loss_still_gives_progress():
    progress = progress_from_logs(
        "flux_train_replicate:   0%|          | 3/1000 [00:03<?, ?it/s]".replace("?it/s", "1.0s/it")
    )
    assert progress.step == 3 and progress.loss is None and progress.eta_seconds is None


def test_the_loss_chart_is_an_inline_svg_without_styles_or_scripts():
    svg = str(loss_chart_svg([(100, 0.41), (200, 0.35), (300, 0.30)]))
    assert "<svg" in svg and "<polyline" in svg
    assert "style=" not in svg
    assert_no_inline_script(svg)
    assert loss_chart_svg([(1, 0.5)]) == ""


def test_the_loss_chart_stretches_to_its_cards_width_with_its_labels_outside_the_drawing():
    chart = str(loss_chart_svg([(100, 0.41), (200, 0.35), (300, 0.30)]))
    svg = chart[chart.index("<svg") : chart.index("</svg>")]
    assert 'viewBox="0 0 600 180"' in svg and 'width="100%"' in svg and 'preserveAspectRatio="none"' in svg
    assert "<text" not in svg  # squashed by the stretch: the labels are HTML
    for label in ("0.41", "0.3", "step 100", "step 300"):
        assert f">{label}</span>" in chart
    # The line spans the whole drawing, first step at the left edge and last at the right.
    points = svg.split('points="')[1].split('"')[0].split()
    assert points[0].startswith("0.0,") and points[-1].startswith("600.0,")
