"""DICOM SEG and .seg.nrrd in napari, in a real viewer under xvfb-run: labels layers on a real DICOM
series (real LGG slices stacked by pydicom) saved through napari's own save API with this plugin's
writers and read back with highdicom; a layer not on DICOM refused with our message; SEG and NRRD
masks opened by the reader onto the open image by geometry, a SEG of another series refused."""

from __future__ import annotations

import os
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari", reason="the napari extra is not installed (pip install -e '.[napari]')")
if not os.environ.get("DISPLAY"):
    pytest.skip("napari needs an X server: run the tests under xvfb-run -a", allow_module_level=True)

import highdicom as hd  # noqa: E402
import nrrd  # noqa: E402

from dicom_series import Series, write_series  # noqa: E402
from metaseg_viewer.errors import InputError  # noqa: E402
from metaseg_viewer.io import read_scan  # noqa: E402
from metaseg_viewer.io.dicom_seg import seg_bytes  # noqa: E402
from metaseg_napari._layers import RESULT_KEY, SCAN_KEY  # noqa: E402
from metaseg_napari._widget import SegmentationWidget  # noqa: E402

PLUGIN = "metaseg-viewer"


def _cause(error: BaseException) -> BaseException | None:
    """Our InputError inside napari's wrapping."""
    while error is not None and not isinstance(error, InputError):
        error = error.__cause__
    return error


def _truth_in_layer_order(series: Series, layer) -> np.ndarray:
    scan = layer.metadata[SCAN_KEY]
    uids = [str(scan.dicom.headers[i].SOPInstanceUID) for i, _ in scan.dicom.frames]
    return np.stack([series.truth[series.sop_uids.index(uid)] for uid in uids])


def _by_source(data: bytes, series: Series) -> tuple[object, np.ndarray]:
    """The SEG and its mask in the series' slice order (highdicom places frames by source instance)."""
    seg = hd.seg.segread(BytesIO(data))
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=list(series.sop_uids), segment_numbers=[1],
                                               assert_missing_frames_are_empty=True)
    return seg, pixels[..., 0] > 0


def test_painted_and_segmented_layers_save_as_seg_on_their_series(make_napari_viewer, qtbot, shared_data: Path,
                                                                   tmp_path: Path) -> None:
    series = write_series(shared_data, tmp_path / "study", oblique=True, slices=(9, 12, 14))
    viewer = make_napari_viewer()
    [image] = viewer.open(str(series.folder), plugin=PLUGIN)
    truth = _truth_in_layer_order(series, image)

    painted = viewer.add_labels(np.zeros(image.data.shape, np.uint8), name="painted", scale=image.scale)
    painted.data = truth.astype(np.uint8)  # a hand-drawn layer: no metadata, found by its size
    [path] = napari.save_layers(str(tmp_path / "painted.seg.dcm"), [painted], plugin=PLUGIN)
    seg, mask = _by_source(Path(path).read_bytes(), series)
    assert np.array_equal(mask, series.truth)
    assert [str(r.SeriesInstanceUID) for r in seg.ReferencedSeriesSequence] == [series.series_uid]
    segment = seg.SegmentSequence[0]
    assert segment.SegmentAlgorithmType == "MANUAL" and "SegmentationAlgorithmIdentificationSequence" not in segment

    widget = SegmentationWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image_combo.setCurrentText(image.name)
    widget.model_combo.setCurrentIndex(widget.model_combo.findData("attention-unet"))
    widget.segment(whole_stack=True)
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=300_000)
    result = viewer.layers[widget.result_combo.currentText()]
    prediction = result.metadata[RESULT_KEY].prediction
    assert result.data.any()
    [path] = result.save(str(tmp_path / "model.dcm"), plugin=PLUGIN)
    seg, mask = _by_source(Path(path).read_bytes(), series)
    order = [series.sop_uids.index(str(h.SOPInstanceUID)) for h in
             (image.metadata[SCAN_KEY].dicom.headers[i] for i, _ in image.metadata[SCAN_KEY].dicom.frames)]
    assert np.array_equal(mask[order], result.data != 0)
    frames = seg.PerFrameFunctionalGroupsSequence
    sources = [f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID for f in frames]
    assert len(sources) == int((result.data != 0).any(axis=(1, 2)).sum()) and set(sources) <= set(series.sop_uids)
    segment = seg.SegmentSequence[0]
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert segment.SegmentAlgorithmType == "AUTOMATIC"
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == (prediction.model_name, prediction.model_version)

    edited = result.data.copy()
    edited[0, :4, :4] = 1
    result.data = edited  # the user's brush on the model's result
    [path] = result.save(str(tmp_path / "edited.seg.dcm"), plugin=PLUGIN)
    seg, mask = _by_source(Path(path).read_bytes(), series)
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC" and np.array_equal(mask[order], edited != 0)

    [opened] = viewer.open(str(tmp_path / "painted.seg.dcm"), plugin=PLUGIN)  # the reader lays it on the image
    assert type(opened).__name__ == "Labels" and np.array_equal(opened.data != 0, truth)
    assert opened.name == f"painted on {image.name}"


def test_a_layer_not_on_dicom_is_refused_with_a_notification(make_napari_viewer, tmp_path: Path) -> None:
    from napari.utils.notifications import notification_manager

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "flair_volume")
    truth = viewer.layers["synthetic FLAIR volume true mask"]
    before = len(notification_manager.records)
    with pytest.warns(UserWarning, match="did not return any written paths"):  # napari's own word for it
        assert truth.save(str(tmp_path / "mask.seg.dcm"), plugin=PLUGIN) == []
    [refusal] = [str(n.message) for n in notification_manager.records[before:]]
    assert refusal.startswith("mask.seg.dcm not saved: synthetic FLAIR volume true mask: a DICOM SEG references")
    assert "not made on a DICOM series" in refusal and "Accepted for it: .seg.nrrd" in refusal
    assert "Traceback" not in refusal and not (tmp_path / "mask.seg.dcm").exists()


def test_seg_nrrd_round_trip_and_masks_that_fit_no_open_image(make_napari_viewer, shared_data: Path,
                                                              tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    with pytest.raises(Exception) as info:  # noqa: PT011
        viewer.open(str(_nrrd_of_sample(tmp_path)), plugin=PLUGIN)
    assert "no image is open" in str(_cause(info.value))

    viewer.open_sample(PLUGIN, "flair_volume")
    truth = viewer.layers["synthetic FLAIR volume true mask"]
    [path] = truth.save(str(tmp_path / "kept.seg.nrrd"), plugin=PLUGIN)
    header = nrrd.read_header(path)
    assert header["space"] == "left-posterior-superior" and header["Segment0_Name"] == "lesion"
    [opened] = viewer.open(path, plugin=PLUGIN)
    assert type(opened).__name__ == "Labels" and np.array_equal(opened.data != 0, truth.data != 0)
    assert tuple(opened.scale) == pytest.approx(tuple(truth.scale))

    one = write_series(shared_data, tmp_path / "one", slices=(12,))
    other = write_series(shared_data, tmp_path / "other", slices=(12,))
    elsewhere = tmp_path / "other.seg.dcm"
    elsewhere.write_bytes(seg_bytes(other.truth, read_scan(other.folder), "", "", algorithm_type="manual"))
    viewer.layers.clear()
    viewer.open(str(one.folder), plugin=PLUGIN)
    with pytest.raises(Exception) as info:  # noqa: PT011
        viewer.open(str(elsewhere), plugin=PLUGIN)
    message = str(_cause(info.value))
    assert one.series_uid in message and other.series_uid in message
    assert len(viewer.layers) == 1


def _nrrd_of_sample(folder: Path) -> Path:
    from metaseg_viewer.io.nrrd import nrrd_bytes
    from metaseg_viewer.scan import Scan

    path = folder / "alone.seg.nrrd"
    path.write_bytes(nrrd_bytes(np.ones((2, 4, 4), np.uint8), Scan(pixels=np.zeros((2, 4, 4)), is_volume=True)))
    return path
