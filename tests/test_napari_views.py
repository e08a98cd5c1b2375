"""What a researcher sees in the napari widget (issue 15, items 10, 12, 13), in a real viewer under
an X server (xvfb-run): distinct documented colours and an error layer, Compare from an ensemble's
member probabilities without a network, a first view that is not cut off, short layer names, the
card's threshold before a result, "loading model", a quick Cancel, exports, and whole error texts.

Screenshots go to the test's temporary folder (printed; ``pytest -s`` shows the path).
"""

from __future__ import annotations

import csv
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari", reason="the napari extra is not installed (pip install -e '.[napari]')")
if not os.environ.get("DISPLAY"):
    pytest.skip("napari needs an X server: run the tests under xvfb-run -a", allow_module_level=True)

from napari.utils.colormaps.standardize_color import transform_color  # noqa: E402

from metaseg_viewer import inference  # noqa: E402
from metaseg_viewer.evaluation import score_against  # noqa: E402
from metaseg_viewer.inference import Predictor  # noqa: E402
from metaseg_viewer.scan import Scan  # noqa: E402
from metaseg_viewer.segment import lesion_rows  # noqa: E402
from metaseg_napari import _results, _widget  # noqa: E402
from metaseg_napari._choice import card_settings  # noqa: E402
from metaseg_napari._layers import COLOURS, RESULT_KEY  # noqa: E402
from metaseg_napari._widget import SegmentationWidget  # noqa: E402

PLUGIN = "metaseg-viewer"
SLICE, TRUTH = "synthetic FLAIR slice", "synthetic FLAIR slice true mask"


def docked(viewer, model: str = "auto", image: str = SLICE) -> SegmentationWidget:
    widget = SegmentationWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Lesion segmentation", area="right")
    widget.image_combo.setCurrentText(image)
    widget.model_combo.setCurrentIndex(widget.model_combo.findData(model))
    return widget


def on_screen_with_sample(make_napari_viewer, model: str) -> tuple:
    """A shown 1400x900 viewer with the synthetic FLAIR slice and the widget docked for ``model``."""
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    viewer.open_sample(PLUGIN, "flair_slice")
    return viewer, docked(viewer, model)


def segment(widget: SegmentationWidget, qtbot) -> None:
    widget.segment(whole_stack=True)
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=180_000)


def colour_of(layer, value: int) -> np.ndarray:
    return np.asarray(layer.get_color(value))[:3]


def rgb(name: str) -> np.ndarray:
    return transform_color(COLOURS[name])[0][:3]


def test_truth_prediction_and_errors_have_their_documented_colours(make_napari_viewer, qtbot, tmp_path: Path) -> None:
    viewer, widget = on_screen_with_sample(make_napari_viewer, "attention-unet")
    segment(widget, qtbot)
    truth, pred = viewer.layers[TRUTH], viewer.layers["pred: attention-unet (synthetic FLAIR slice)"]
    assert np.allclose(colour_of(truth, 1), rgb("truth")) and np.allclose(colour_of(pred, 1), rgb("attention-unet"))
    assert len(set(COLOURS[k] for k in ("truth", "prediction", "unetpp", "attention-unet", "first model only",
                                        "second model only"))) == 6  # each its own colour
    assert all(name in widget.legend.text() and COLOURS[name] in widget.legend.text() for name in COLOURS)
    qtbot.wait(300)
    viewer.screenshot(str(tmp_path / "truth_and_prediction.png"), canvas_only=True, flash=False)

    widget.truth_combo.setCurrentText(TRUTH)
    scores = widget.score()
    errors = viewer.layers["errors: attention-unet (synthetic FLAIR slice)"]
    p, t = pred.data != 0, truth.data != 0
    assert scores == score_against(p[None], t[None])
    for value, region, name in ((1, p & t, "true positive"), (2, p & ~t, "false positive"),
                                (3, ~p & t, "false negative")):
        assert np.array_equal(errors.data == value, region)
        assert np.allclose(colour_of(errors, value), rgb(name))
    assert (errors.data == 1).any() and widget.score_label.text().startswith("Dice")
    truth.visible = pred.visible = False
    shot = close_up(viewer, widget, qtbot, tmp_path / "errors.png")[..., :3].astype(int)  # where the errors are
    green = np.abs(shot - rgb("true positive") * 255).sum(axis=-1) < 90
    assert green.sum() > 100  # the true positives show in their colour
    print(f"screenshots: {tmp_path / 'truth_and_prediction.png'} {tmp_path / 'errors.png'}")


def close_up(viewer, widget, qtbot, path: Path) -> np.ndarray:
    """Zoom in on the largest lesion and save the canvas as ``path``; returns its pixels."""
    widget.jump_to_lesion(0)
    viewer.camera.zoom *= 3
    qtbot.wait(300)
    return viewer.screenshot(str(path), canvas_only=True, flash=False)


def test_compare_after_an_ensemble_takes_its_members_and_runs_no_network(make_napari_viewer, qtbot,
                                                                         monkeypatch, tmp_path: Path) -> None:
    viewer, widget = on_screen_with_sample(make_napari_viewer, "ensemble")
    segment(widget, qtbot)
    assert {"pred: ensemble (synthetic FLAIR slice)", "prob: ensemble (synthetic FLAIR slice)"} <= set(
        layer.name for layer in viewer.layers)
    scan = Scan(pixels=viewer.layers[SLICE].data[None])
    expected = {m: Predictor.load(m, batch_size=_results.CPU_BATCH_SIZE).predict(scan)
                for m in ("unetpp", "attention-unet")}

    def no_network(*_args, **_kwargs):
        pytest.fail("Compare ran a network although the ensemble's members' probabilities were there")

    monkeypatch.setattr(_widget, "run_model", no_network)
    monkeypatch.setattr(inference, "network_probabilities", no_network)
    widget.compare()
    assert not widget.is_busy()  # nothing to wait for: no worker was started
    for model, prediction in expected.items():
        layer = viewer.layers[f"pred: {model} (synthetic FLAIR slice)"]
        assert np.array_equal(layer.data != 0, prediction.mask[0])  # as the network alone gives it
        assert layer.metadata[RESULT_KEY].threshold == card_settings(model).threshold
        assert np.allclose(colour_of(layer, 1), rgb(model)) and layer.contour == 2
    disagreement = viewer.layers["disagree: unetpp vs attention-unet (synthetic FLAIR slice)"]
    a, b = expected["unetpp"].mask[0], expected["attention-unet"].mask[0]
    assert np.array_equal(disagreement.data == 1, a & ~b) and np.array_equal(disagreement.data == 2, ~a & b)
    assert np.allclose(colour_of(disagreement, 1), rgb("first model only"))
    assert np.allclose(colour_of(disagreement, 2), rgb("second model only"))
    assert widget.compare_label.text().endswith("from the ensemble's members (no network ran)")
    for name in ("pred: ensemble (synthetic FLAIR slice)", TRUTH):
        viewer.layers[name].visible = False
    close_up(viewer, widget, qtbot, tmp_path / "compare.png")
    print(f"screenshot: {tmp_path / 'compare.png'}")


def test_first_view_shows_the_whole_image_after_docking_and_after_the_first_result(make_napari_viewer, qtbot,
                                                                                   monkeypatch, tmp_path: Path) -> None:
    viewer, widget = on_screen_with_sample(make_napari_viewer, "attention-unet")
    qtbot.wait(500)

    def whole_image_in_view() -> bool:
        height, width = viewer.window._qt_viewer.canvas.size
        extent = viewer.layers.extent.world
        size = (extent[1] - extent[0])[-2:] * viewer.camera.zoom
        centre = (extent[1] + extent[0])[-2:] / 2
        return width > 300 and bool((size <= np.array([height, width]) + 1).all()) and np.allclose(
            viewer.camera.center[-2:], centre, atol=1)

    assert whole_image_in_view()
    viewer.screenshot(str(tmp_path / "first_view.png"), canvas_only=False, flash=False)
    viewer.camera.zoom *= 4  # the user zoomed in before the first result
    truth = viewer.layers[TRUTH].data != 0
    monkeypatch.setattr(_widget, "run_model", lambda *_a, **_k: oracle(truth))
    segment(widget, qtbot)
    assert whole_image_in_view()
    print(f"screenshot: {tmp_path / 'first_view.png'}")


def oracle(truth: np.ndarray):
    """A 'model' whose probabilities are the true mask (a 2-D image or a volume), no network."""
    from metaseg_viewer.prediction import Prediction

    stack = truth if truth.ndim == 3 else truth[None]
    return Prediction.from_probabilities(np.where(stack, 0.9, 0.0), card_settings("attention-unet"), truth.ndim == 3,
                                         model_name="attention-unet", model_version="test")


def test_the_slider_shows_the_card_threshold_before_the_first_result(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "flair_slice")
    widget = docked(viewer)
    shown = {}
    for model in ("auto", "unetpp", "attention-unet", "ensemble"):
        widget.model_combo.setCurrentIndex(widget.model_combo.findData(model))
        shown[model] = widget.threshold.value()
    cards = {m: round(card_settings(m).threshold * 100) for m in ("unetpp", "attention-unet", "ensemble")}
    assert shown == {"auto": cards["ensemble"], **cards}  # Auto on a FLAIR layer: the ensemble
    assert widget.threshold_label.text() == f"{card_settings('ensemble').threshold:.2f}"
    assert cards["attention-unet"] != cards["ensemble"]  # the slider did move


def test_progress_says_loading_model_then_cancel_stops_within_two_seconds(make_napari_viewer, qtbot,
                                                                           monkeypatch) -> None:
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "flair_volume")
    widget = docked(viewer, "unetpp", image="synthetic FLAIR volume")
    widget.precision_combo.setCurrentText("fp32")  # the slowest network calls
    monkeypatch.setattr(_results, "_predictors", {})  # not loaded yet
    release, load = threading.Event(), Predictor.load

    def slow_load(*args, **kwargs):
        release.wait(30)
        return load(*args, **kwargs)

    monkeypatch.setattr(Predictor, "load", slow_load)
    widget.segment(whole_stack=True)
    qtbot.waitUntil(lambda: widget.progress.format() == "loading model U-Net++ (FLAIR)…", timeout=10_000)
    release.set()
    qtbot.waitUntil(lambda: widget.progress.value() > 0, timeout=60_000)  # loaded; the slices are running
    assert widget.progress.format() == "%p%"
    started = time.perf_counter()
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=60_000)
    assert time.perf_counter() - started < 2.0
    assert [layer.name for layer in viewer.layers] == ["synthetic FLAIR volume", "synthetic FLAIR volume true mask"]


def test_lesion_table_and_scores_export(make_napari_viewer, qtbot, monkeypatch, tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "flair_volume")
    widget = docked(viewer, "attention-unet", image="synthetic FLAIR volume")
    truth = viewer.layers["synthetic FLAIR volume true mask"].data != 0
    monkeypatch.setattr(_widget, "run_model", lambda *_a, **_k: oracle(truth))
    segment(widget, qtbot)
    layer = viewer.layers[widget.result_combo.currentText()]
    seg = layer.metadata[RESULT_KEY]
    saved = widget.export_lesions(str(tmp_path / "lesions.csv"))
    with open(saved, newline="") as f:
        table = list(csv.DictReader(f))
    rows = lesion_rows(seg.scan, layer.data != 0, seg.probabilities)
    assert len(table) == len(rows) >= 1 and [int(r["size_px"]) for r in table] == [r["size_px"] for r in rows]
    assert widget.export_scores(str(tmp_path / "early.json")) is None  # nothing scored yet: said, not written
    assert "Score against" in widget.message_label.text() and not (tmp_path / "early.json").exists()
    widget.truth_combo.setCurrentText("synthetic FLAIR volume true mask")
    scores = widget.score()
    written = json.loads(Path(widget.export_scores(str(tmp_path / "scores.json"))).read_text())
    assert written["dice"] == scores["dice"] > 0.99 and written["lesions"] == scores["lesions"]
    assert written["truth"] == "synthetic FLAIR volume true mask" and written["model"] == "attention-unet"
    widget.threshold.setValue(95)  # the score is now out of date: not exported as if it were current
    assert widget.export_scores(str(tmp_path / "stale.json")) is None and not (tmp_path / "stale.json").exists()


def test_an_error_is_shown_whole_in_the_widget(make_napari_viewer, qtbot, monkeypatch) -> None:
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "flair_slice")
    widget = docked(viewer)
    long = ("weights could not be read: " + "the file ends before its header says it should; " * 4
            + "\naccepted: the shipped weights or a checkpoint with its card beside it")

    def broken(*_args, **_kwargs):
        raise RuntimeError(long)

    monkeypatch.setattr(_widget, "run_model", broken)
    segment(widget, qtbot)
    assert widget.message_label.text() == f"Segmentation failed: {long}"
    assert widget.message_label.wordWrap() and widget.stack_button.isEnabled()
