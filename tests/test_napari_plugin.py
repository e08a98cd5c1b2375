"""The napari plugin in a real viewer (napari's ``make_napari_viewer``), under an X server (xvfb-run).

Manifest and discovery, each reader/writer/sample contribution on real files, and the widget:
segmentation in a worker, live re-thresholding without inference, edits kept, lesion table and
scores equal to the core's, model comparison, export, and a screenshot with real pixels.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari", reason="the napari extra is not installed (pip install -e '.[napari]')")
if not os.environ.get("DISPLAY"):
    pytest.skip("napari needs an X server: run the tests under xvfb-run -a", allow_module_level=True)

from metaseg_viewer.errors import InputError  # noqa: E402
from metaseg_viewer.evaluation import hd95_text, score_against  # noqa: E402
from metaseg_viewer.inference import Predictor  # noqa: E402
from metaseg_viewer.io import read_scan, write_mask_png, write_nifti  # noqa: E402
from metaseg_viewer.samples import make_slice, make_volume  # noqa: E402
from metaseg_viewer.scan import Scan  # noqa: E402
from metaseg_viewer.segment import lesion_rows  # noqa: E402
from metaseg_napari import _widget  # noqa: E402
from metaseg_napari._reader import get_reader  # noqa: E402
from metaseg_napari._widget import RESULT_KEY, SegmentationWidget  # noqa: E402

PLUGIN = "metaseg-viewer"


def test_plugin_is_discovered_with_all_contributions() -> None:
    from npe2 import PluginManager

    manager = PluginManager.instance()
    manager.discover()
    manifest = manager.get_manifest(PLUGIN)
    assert manifest.name == PLUGIN
    contributions = manifest.contributions
    assert [r.command for r in contributions.readers] == [f"{PLUGIN}.get_reader"]
    assert [(w.command, w.layer_types) for w in contributions.writers] == [
        (f"{PLUGIN}.{name}", ["labels"]) for name in ("write_labels", "write_dicom_seg", "write_seg_nrrd")]
    assert {s.key for s in contributions.sample_data} == {"flair_slice", "flair_volume", "t1c_slice"}
    assert [w.display_name for w in contributions.widgets] == ["Lesion segmentation"]


def test_reader_opens_an_lgg_tiff_as_flair_with_its_mask(make_napari_viewer, shared_data: Path) -> None:
    patient = shared_data / "lgg_kaggle3m_sample" / "kaggle_3m" / "TCGA_DU_7014_19860618"
    mask = max(patient.glob("*_mask.tif"), key=lambda p: (read_scan(p, color="gray").pixels > 0).sum())
    image = mask.with_name(mask.name.replace("_mask", ""))
    viewer = make_napari_viewer()
    layers = viewer.open(str(image), plugin=PLUGIN)
    assert [type(l).__name__ for l in layers] == ["Image", "Labels"]
    assert np.array_equal(layers[0].data, read_scan(image).pixels[0])  # the FLAIR channel, 2-D
    assert np.array_equal(layers[1].data != 0, read_scan(mask, color="gray").pixels[0] > 0)
    assert layers[1].name.endswith("true mask")


def test_reader_images_masks_layout_png(make_napari_viewer, tmp_path: Path) -> None:
    sample = make_slice(128, seed=1)
    (tmp_path / "P1" / "images").mkdir(parents=True)
    (tmp_path / "P1" / "masks").mkdir()
    from PIL import Image as PILImage

    PILImage.fromarray(sample.image).save(tmp_path / "P1" / "images" / "P1_3.png")
    write_mask_png(sample.mask, tmp_path / "P1" / "masks" / "P1_3.png")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    viewer = make_napari_viewer()
    image, truth = viewer.open(str(tmp_path / "P1" / "images" / "P1_3.png"), plugin=PLUGIN)
    assert image.data.shape == (128, 128) and np.array_equal(truth.data != 0, sample.mask)
    [mask_only] = viewer.open(str(tmp_path / "P1" / "masks" / "P1_3.png"), plugin=PLUGIN)
    assert type(mask_only).__name__ == "Labels"


def test_reader_nifti_and_dicom_series_get_the_pixel_spacing(make_napari_viewer, tmp_path: Path) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    volume = make_volume(6, 64, seed=2)
    write_nifti(volume.image, Scan(pixels=volume.image, spacing=(3.0, 0.8, 0.7), is_volume=True), tmp_path / "v.nii.gz")
    series = tmp_path / "series"
    series.mkdir()
    for k in range(4):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = MRImageStorage, meta.MediaStorageSOPInstanceUID, "MR"
        ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.InstanceNumber = "1.2.3.4", "1.2.3", k + 1
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 16, 20, 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation = 15, 0
        ds.PixelSpacing, ds.ImageOrientationPatient = [0.9, 0.6], [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0, 0, 2.5 * k]
        ds.PixelData = np.full((16, 20), k * 100, np.uint16).tobytes()
        ds.save_as(series / f"IM{k}", enforce_file_format=True)
    viewer = make_napari_viewer()
    [nifti] = viewer.open(str(tmp_path / "v.nii.gz"), plugin=PLUGIN)
    assert nifti.data.shape == (6, 64, 64) and tuple(nifti.scale) == pytest.approx((3.0, 0.8, 0.7))
    [dicom] = viewer.open(str(series), plugin=PLUGIN)
    assert dicom.data.shape == (4, 16, 20) and tuple(dicom.scale) == pytest.approx((2.5, 0.9, 0.6))
    assert [int(dicom.data[k, 0, 0]) for k in range(4)] == [0, 100, 200, 300]


def test_unreadable_file_is_a_clear_error_not_a_crash(make_napari_viewer, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    viewer = make_napari_viewer()
    with pytest.raises(Exception, match="broken.png") as info:  # napari wraps it for its error dialog
        viewer.open(str(broken), plugin=PLUGIN)
    cause: BaseException | None = info.value
    while cause is not None and not isinstance(cause, InputError):
        cause = cause.__cause__
    assert isinstance(cause, InputError) and "Accepted" in str(cause)  # ours, saying what is accepted
    assert len(viewer.layers) == 0


def test_writer_saves_png_and_nifti_that_read_back(make_napari_viewer, tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "flair_volume")
    truth = viewer.layers["synthetic FLAIR volume true mask"]
    [nii] = truth.save(str(tmp_path / "mask.nii.gz"), plugin=PLUGIN)
    back = read_scan(nii, name="mask.nii.gz")
    assert np.array_equal(back.pixels != 0, truth.data != 0)
    assert back.spacing == pytest.approx(tuple(truth.scale))
    viewer.open_sample(PLUGIN, "flair_slice")
    slice_truth = viewer.layers["synthetic FLAIR slice true mask"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # napari warns when it falls back to another writer
        [png] = slice_truth.save(str(tmp_path / "mask.png"), plugin=PLUGIN)
    assert read_scan(png).pixels.max() == 255  # the LGG mask convention (0/255) of our writer
    assert np.array_equal(read_scan(png).pixels[0] != 0, slice_truth.data != 0)
    from metaseg_napari._writer import write_labels

    with pytest.raises(ValueError, match="PNG holds one slice"):
        write_labels(str(tmp_path / "volume.png"), truth.data, {})


def test_sample_data_layers(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "flair_slice")
    viewer.open_sample(PLUGIN, "flair_volume")
    viewer.open_sample(PLUGIN, "t1c_slice")
    assert [l.name for l in viewer.layers] == ["synthetic FLAIR slice", "synthetic FLAIR slice true mask",
                                               "synthetic FLAIR volume", "synthetic FLAIR volume true mask",
                                               "synthetic T1c slice", "synthetic T1c slice true mask"]
    t1c = make_slice(256, seed=0, sequence="t1c")
    assert np.array_equal(viewer.layers["synthetic T1c slice"].data, t1c.image)
    assert np.array_equal(viewer.layers["synthetic T1c slice true mask"].data != 0, t1c.mask)
    assert viewer.layers["synthetic FLAIR volume"].data.shape == (24, 256, 256)
    assert viewer.layers["synthetic FLAIR slice true mask"].data.sum() > 100


@pytest.fixture()
def segmented(make_napari_viewer, qtbot):
    """A viewer with the sample slice, the widget docked, and an Attention U-Net segmentation."""
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "flair_slice")
    widget = SegmentationWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Lesion segmentation")
    widget.image_combo.setCurrentText("synthetic FLAIR slice")
    widget.model_combo.setCurrentIndex(widget.model_combo.findData("attention-unet"))
    widget.segment(whole_stack=True)
    assert widget.is_busy()  # the work runs in a worker; the GUI thread is free
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=180_000)
    return viewer, widget


def test_widget_segments_in_a_worker_and_finds_the_lesion(segmented) -> None:
    viewer, widget = segmented
    labels = viewer.layers["pred: attention-unet (synthetic FLAIR slice)"]
    truth = viewer.layers["synthetic FLAIR slice true mask"].data != 0
    expected = Predictor.load("attention-unet", device="cpu").predict(read_scan_of(viewer)).mask[0]
    assert np.array_equal(labels.data != 0, expected)
    inter = (expected & truth).sum()
    assert 2 * inter / (expected.sum() + truth.sum()) > 0.6
    assert "prob: attention-unet (synthetic FLAIR slice)" in viewer.layers
    assert widget.progress.value() == 100


def read_scan_of(viewer) -> Scan:
    return Scan(pixels=viewer.layers["synthetic FLAIR slice"].data[None])


def test_threshold_slider_rederives_without_inference_and_keeps_edits(segmented, monkeypatch) -> None:
    viewer, widget = segmented
    labels = viewer.layers["pred: attention-unet (synthetic FLAIR slice)"]
    seg = labels.metadata[RESULT_KEY]
    monkeypatch.setattr(_widget, "run_model", lambda *a, **k: pytest.fail("the network ran again"))
    monkeypatch.setattr(Predictor, "member_maps", lambda *a, **k: pytest.fail("the network ran again"))
    labels.data[5:9, 5:9] = 1  # a manual edit far from any lesion (brush strokes change data in place)
    labels.refresh()
    widget.threshold.setValue(95)
    high = labels.data.copy()
    assert np.array_equal(high != 0, (seg.probabilities[0] >= 0.95) | _edit_box(high.shape))
    assert (high[5:9, 5:9] == 1).all()  # the edit survived
    widget.threshold.setValue(20)
    assert (labels.data != 0).sum() > (high != 0).sum()
    widget.keep_edits.setChecked(False)
    widget.threshold.setValue(95)
    assert (labels.data[5:9, 5:9] == 0).all()  # asked: the threshold now overrides the edit


def _edit_box(shape: tuple[int, int]) -> np.ndarray:
    box = np.zeros(shape, bool)
    box[5:9, 5:9] = True
    return box


def test_lesion_table_and_scores_match_the_core(segmented) -> None:
    viewer, widget = segmented
    labels = viewer.layers["pred: attention-unet (synthetic FLAIR slice)"]
    seg = labels.metadata[RESULT_KEY]
    rows = lesion_rows(seg.scan, labels.data[None] != 0, seg.probabilities)
    assert widget.table.rowCount() == len(rows) >= 1
    assert widget.table.item(0, 2).text().startswith(f"{rows[0]['size_px']} px")
    widget.truth_combo.setCurrentText("synthetic FLAIR slice true mask")
    scores = widget.score()
    truth = viewer.layers["synthetic FLAIR slice true mask"].data != 0
    assert scores == score_against(labels.data[None] != 0, truth[None])
    assert f"Dice {scores['dice']:.3f}" in widget.score_label.text()
    widget.jump_to_lesion(0)
    assert tuple(viewer.camera.center[-2:]) == pytest.approx((rows[0]["centroid_row"], rows[0]["centroid_col"]))
    labels.data[:] = 0  # erase everything: the table follows the edit
    labels.events.data()
    widget._after_edit()
    assert widget.table.rowCount() == 0


def test_compare_export_and_autosave(segmented, qtbot, tmp_path: Path) -> None:
    viewer, widget = segmented
    widget.autosave_dir.setText(str(tmp_path / "autosave"))
    widget.autosave.setChecked(True)
    widget.compare()
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=180_000)
    assert "pred: unetpp (synthetic FLAIR slice)" in viewer.layers
    disagreement = viewer.layers["disagree: unetpp vs attention-unet (synthetic FLAIR slice)"].data
    a = viewer.layers["pred: unetpp (synthetic FLAIR slice)"].data != 0
    b = viewer.layers["pred: attention-unet (synthetic FLAIR slice)"].data != 0
    assert np.array_equal(disagreement == 1, a & ~b) and np.array_equal(disagreement == 2, ~a & b)
    assert "Dice between the models" in widget.compare_label.text()
    saved = widget.export(str(tmp_path / "kept.png"))
    assert np.array_equal(read_scan(saved).pixels[0] != 0, viewer.layers[widget.result_combo.currentText()].data != 0)
    assert any((tmp_path / "autosave").iterdir())


def test_screenshot_with_the_widget_docked(make_napari_viewer, qtbot, tmp_path: Path) -> None:
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    viewer.open_sample(PLUGIN, "flair_volume")
    widget = SegmentationWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Lesion segmentation", area="right")
    widget.image_combo.setCurrentText("synthetic FLAIR volume")
    widget.model_combo.setCurrentIndex(widget.model_combo.findData("attention-unet"))
    widget.segment(whole_stack=True)
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=300_000)
    viewer.layers["synthetic FLAIR volume true mask"].visible = False
    widget.jump_to_lesion(0)
    qtbot.wait(500)
    shot = viewer.screenshot(str(tmp_path / "napari.png"), canvas_only=False, flash=False)
    canvas = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.shape[0] > 500 and canvas[..., :3].std() > 10  # real pixels, not a black canvas
    print(f"screenshot: {tmp_path / 'napari.png'}")


def _volume_and_widget(make_napari_viewer, model: str):
    """A viewer with the sample volume and the widget docked, set to segment it with ``model``."""
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "flair_volume")
    widget = SegmentationWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image_combo.setCurrentText("synthetic FLAIR volume")
    widget.model_combo.setCurrentIndex(widget.model_combo.findData(model))
    return viewer, widget


def test_cancel_stops_the_worker_and_adds_nothing(make_napari_viewer, qtbot) -> None:
    viewer, widget = _volume_and_widget(make_napari_viewer, "unetpp")
    widget.segment(whole_stack=True)
    assert widget.cancel_button.isEnabled()
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=180_000)
    assert [l.name for l in viewer.layers] == ["synthetic FLAIR volume", "synthetic FLAIR volume true mask"]
    assert widget.stack_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_a_failing_model_is_a_notification_and_the_widget_recovers(make_napari_viewer, qtbot, monkeypatch) -> None:
    from napari.utils.notifications import notification_manager

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "flair_slice")
    widget = SegmentationWidget(viewer)
    viewer.window.add_dock_widget(widget)

    def broken(*_args, **_kwargs):
        raise RuntimeError("weights could not be read")

    monkeypatch.setattr(_widget, "run_model", broken)
    before = len(notification_manager.records)
    widget.segment(whole_stack=True)
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=60_000)
    messages = [str(n.message) for n in notification_manager.records[before:]]
    assert any("weights could not be read" in m for m in messages), messages
    assert widget.stack_button.isEnabled() and "failed" in widget.progress.format()
    viewer.add_image(np.zeros((2, 3, 8, 8)), name="4-D")
    widget.image_combo.setCurrentText("4-D")
    widget.segment(whole_stack=True)  # refused with a message, no worker started
    assert not widget.is_busy()
    assert "4 dimensions" in str(notification_manager.records[-1].message)


def test_segment_slice_fills_one_slice_then_merges_the_next_keeping_edits(make_napari_viewer, qtbot) -> None:
    viewer, widget = _volume_and_widget(make_napari_viewer, "attention-unet")
    truth = viewer.layers["synthetic FLAIR volume true mask"].data != 0
    first, second = (int(z) for z in np.argsort(truth.reshape(len(truth), -1).sum(axis=1))[-2:])

    def segment_slice(z: int) -> None:
        viewer.dims.set_current_step(0, z)
        widget.segment(whole_stack=False)
        qtbot.waitUntil(lambda: not widget.is_busy(), timeout=180_000)

    segment_slice(first)
    labels = viewer.layers["pred: attention-unet (synthetic FLAIR volume)"]
    probabilities = viewer.layers["prob: attention-unet (synthetic FLAIR volume)"].data
    scan = labels.metadata[_widget.SCAN_KEY]
    alone = Scan(pixels=scan.pixels[first : first + 1], spacing=scan.spacing, is_volume=True)
    expected = Predictor.load("attention-unet", device="cpu").predict(alone)
    assert np.array_equal(probabilities[first], expected.probabilities[0])
    assert np.array_equal(labels.data[first] != 0, expected.mask[0]) and expected.mask[0].any()
    others = np.delete(np.arange(len(truth)), first)
    assert not probabilities[others].any() and not labels.data[others].any()  # only that slice was segmented
    labels.data[first, :3, :3] = 1  # a manual edit on the first slice
    segment_slice(second)
    assert labels.data[second].any() and (labels.data[first, :3, :3] == 1).all()  # new slice in, edit kept
    seg = labels.metadata[RESULT_KEY]
    assert seg.probabilities[second].any() and len(viewer.layers) == 4  # merged, no second result layer


def test_scores_with_an_empty_truth_or_prediction_use_the_core_wording(segmented) -> None:
    viewer, widget = segmented
    labels = viewer.layers["pred: attention-unet (synthetic FLAIR slice)"]
    empty = viewer.add_labels(np.zeros_like(labels.data), name="empty truth")
    widget.truth_combo.setCurrentText("empty truth")
    scores = widget.score()
    assert scores["hd95"] is None and "undefined (the true mask is empty)" in widget.score_label.text()
    assert hd95_text(scores) in widget.score_label.text()
    labels.data = np.zeros_like(labels.data)  # the user erased the prediction
    widget.truth_combo.setCurrentText("synthetic FLAIR slice true mask")
    widget.score()
    assert "undefined (the prediction is empty)" in widget.score_label.text()
    assert empty.name in [layer.name for layer in viewer.layers]


def test_volume_table_slices_match_the_slider_and_an_old_score_is_marked_or_cleared(make_napari_viewer, qtbot,
                                                                                    monkeypatch) -> None:
    """Without a network: the 'model' returns the true mask as probabilities."""
    from metaseg_viewer.config import InferenceConfig
    from metaseg_viewer.lesions import lesion_table
    from metaseg_viewer.prediction import Prediction

    viewer, widget = _volume_and_widget(make_napari_viewer, "attention-unet")
    truth = viewer.layers["synthetic FLAIR volume true mask"].data != 0

    def oracle(_name, scan, *_args, **_kwargs):
        return Prediction.from_probabilities(np.where(truth, 0.9, 0.0), InferenceConfig(), True,
                                             model_name="attention-unet", model_version="test")

    monkeypatch.setattr(_widget, "run_model", oracle)
    widget.segment(whole_stack=True)
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=60_000)
    lesions = lesion_table(truth)
    first, stop = lesions[0].bbox[0]
    assert widget.table.item(0, 1).text() == f"{first}–{stop - 1}"  # napari's slider counts from 0
    widget.jump_to_lesion(0)
    assert first <= viewer.dims.current_step[0] <= stop - 1
    widget.truth_combo.setCurrentText("synthetic FLAIR volume true mask")
    widget.score()
    assert widget.score_label.text().startswith("Dice 1.000")
    widget.threshold.setValue(95)  # the mask is now empty: the shown Dice no longer describes it
    assert widget.score_label.text().startswith(_widget.STALE) and "Dice 1.000" in widget.score_label.text()
    widget.score()
    assert widget.score_label.text().startswith("Dice 0.000")
    viewer.add_labels(np.zeros((2, 8, 8), np.uint8), name="other size")
    widget.truth_combo.setCurrentText("other size")
    widget.score()  # refused: no figures of the earlier score stay behind
    assert widget.score_label.text() == ""
