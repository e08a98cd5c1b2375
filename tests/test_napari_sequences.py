"""The napari widget chooses the model by MRI sequence, in a real viewer under xvfb-run: the
sequence menu offers the T1c family, a layer named ``*_t1ce`` (or with a DICOM description
saying so) gets the T1c model and the status line says why, a FLAIR model forced on a ``*_t1c``
layer is warned about, and Compare runs the chosen family's networks only.

The T1c weights are provisional: nothing here depends on their accuracy, only that they are
offered, run and reported.
"""

from __future__ import annotations

import os

import pytest

napari = pytest.importorskip("napari", reason="the napari extra is not installed (pip install -e '.[napari]')")
if not os.environ.get("DISPLAY"):
    pytest.skip("napari needs an X server: run the tests under xvfb-run -a", allow_module_level=True)

from napari.utils.notifications import notification_manager  # noqa: E402
from qtpy.QtCore import Qt  # noqa: E402

from metaseg_viewer.registry import FAMILIES  # noqa: E402
from metaseg_viewer.samples import make_slice  # noqa: E402
from metaseg_napari._choice import AUTO  # noqa: E402
from metaseg_napari._widget import RESULT_KEY, SegmentationWidget  # noqa: E402

PLUGIN = "metaseg-viewer"
T1C = make_slice(256, seed=3, sequence="t1c").image


def docked(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = SegmentationWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


def entries(combo) -> list:
    return [combo.itemData(i) for i in range(combo.count())]


def messages_since(before: int) -> list[str]:
    return [str(n.message) for n in notification_manager.records[before:]]


def test_sequence_menu_offers_the_t1c_family_and_filters_the_models(make_napari_viewer) -> None:
    _, widget = docked(make_napari_viewer)
    assert entries(widget.sequence_combo) == [AUTO, "flair", "t1c"]
    assert entries(widget.model_combo) == [AUTO, *FAMILIES["flair"], *FAMILIES["t1c"]]  # Auto: every family
    widget.sequence_combo.setCurrentIndex(widget.sequence_combo.findData("t1c"))
    assert entries(widget.model_combo) == [AUTO, "t1c-attention-unet"]
    assert widget.model_combo.itemText(1) == "Attention U-Net (T1c)"
    assert "meningioma" in widget.model_combo.itemData(1, Qt.ToolTipRole)  # what it was trained on
    assert "nothing to compare" in widget.compare_button.text()
    widget.sequence_combo.setCurrentIndex(widget.sequence_combo.findData("flair"))
    assert entries(widget.model_combo) == [AUTO, *FAMILIES["flair"]]
    assert widget.compare_button.text() == "Compare U-Net++ (FLAIR) and Attention U-Net (FLAIR)"


def test_a_layer_named_t1ce_gets_the_t1c_model_and_the_widget_says_why(make_napari_viewer, qtbot) -> None:
    viewer, widget = docked(make_napari_viewer)
    viewer.open_sample(PLUGIN, "t1c_slice")  # the T1c sample opens; a user's own file is named as scanners do
    viewer.add_image(viewer.layers["synthetic T1c slice"].data, name="P7_t1ce")
    widget.image_combo.setCurrentText("P7_t1ce")
    widget.segment(whole_stack=True)  # sequence and model on Auto
    status = widget.choice_label.text()
    assert "P7_t1ce: Attention U-Net (T1c), trained for contrast-enhanced T1 (T1c)" in status
    assert "file name says 't1ce'" in status and "⚠" not in status
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=180_000)
    layer = viewer.layers["pred: t1c-attention-unet (P7_t1ce)"]
    assert layer.metadata[RESULT_KEY].model == "t1c-attention-unet"


def test_dicom_description_in_the_layer_metadata_picks_t1c_too(make_napari_viewer, qtbot) -> None:
    viewer, widget = docked(make_napari_viewer)
    viewer.add_image(T1C, name="IM0001", metadata={"series_description": "AX T1 POST GD"})
    widget.image_combo.setCurrentText("IM0001")
    widget.segment(whole_stack=True)
    assert "Attention U-Net (T1c)" in widget.choice_label.text()
    assert "DICOM SeriesDescription says" in widget.choice_label.text()
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=180_000)


def test_a_flair_model_forced_on_a_t1c_layer_runs_with_a_visible_warning(make_napari_viewer, qtbot) -> None:
    viewer, widget = docked(make_napari_viewer)
    viewer.add_image(T1C, name="case_t1c")
    widget.image_combo.setCurrentText("case_t1c")
    widget.model_combo.setCurrentIndex(widget.model_combo.findData("attention-unet"))
    before = len(notification_manager.records)
    widget.segment(whole_stack=True)
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=180_000)
    warned = [m for m in messages_since(before) if "attention-unet is a FLAIR model" in m]
    assert warned and "contrast-enhanced T1 (T1c)" in warned[0]  # a notification, not a refusal
    assert "the model you chose" in widget.choice_label.text() and "⚠" in widget.choice_label.text()
    assert "pred: attention-unet (case_t1c)" in viewer.layers


def test_compare_runs_only_the_chosen_family(make_napari_viewer) -> None:
    viewer, widget = docked(make_napari_viewer)
    viewer.add_image(T1C, name="case_t1c")
    widget.image_combo.setCurrentText("case_t1c")
    before = len(notification_manager.records)
    widget.compare()  # Auto: the T1c family, which has a single network
    assert not widget.is_busy() and len(viewer.layers) == 1
    assert any("nothing to compare" in m for m in messages_since(before))
    assert "Attention U-Net (T1c)" in widget.choice_label.text()
