"""DICOM SEG and .seg.nrrd masks: written on real DICOM series (real LGG slices stacked with
pydicom), read back with highdicom and pynrrd, and read back as true masks by geometry."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import highdicom as hd
import nrrd
import numpy as np
import pydicom
import pytest

from dicom_series import BIRTH_DATE, PATIENT_ID, PATIENT_NAME, Series, write_series
from factories import png_bytes
from metaseg_viewer.errors import InputError
from metaseg_viewer.evaluation import read_true_mask
from metaseg_viewer.io import read_scan
from metaseg_viewer.io.dicom_seg import seg_bytes
from metaseg_viewer.io.nrrd import nrrd_bytes
from metaseg_viewer.scan import Scan
from metaseg_viewer.segment import mask_file, mask_suffix


@pytest.fixture(scope="module", params=[False, True], ids=["axial", "oblique-nonsquare"])
def series(request, shared_data: Path, tmp_path_factory) -> Series:
    return write_series(shared_data, tmp_path_factory.mktemp("series") / "study", oblique=request.param)


def _scan_and_truth(series: Series) -> tuple[Scan, np.ndarray]:
    """The scan read from the folder and the true masks in its slice order (by SOP instance)."""
    scan = read_scan(series.folder)
    uids = [str(scan.dicom.headers[i].SOPInstanceUID) for i, _ in scan.dicom.frames]
    return scan, np.stack([series.truth[series.sop_uids.index(uid)] for uid in uids])


def test_seg_round_trip_gives_the_mask_on_the_same_source_frames(series: Series) -> None:
    scan, truth = _scan_and_truth(series)
    assert truth.any() and not truth.all(axis=(1, 2)).any()
    data = seg_bytes(truth, scan, "attention-unet", "0123abcd")
    seg = hd.seg.segread(BytesIO(data))
    with_lesion = [uid for uid, mask in zip(series.sop_uids, series.truth) if mask.any()]
    assert len(with_lesion) < len(series.sop_uids)  # only frames with lesion are written
    assert int(seg.NumberOfFrames) == len(with_lesion)
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=list(series.sop_uids), segment_numbers=[1],
                                               assert_missing_frames_are_empty=True)
    assert np.array_equal(pixels[..., 0] > 0, series.truth)
    for frame in seg.PerFrameFunctionalGroupsSequence:  # each frame has its source instance's position
        source = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(position, series.positions[series.sop_uids.index(source)], atol=1e-3)
    source_header = pydicom.dcmread(next(series.folder.iterdir()), stop_before_pixels=True)
    shared = seg.SharedFunctionalGroupsSequence[0]
    assert np.allclose([float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient],
                       [float(v) for v in source_header.ImageOrientationPatient])
    assert np.allclose([float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing],
                       [float(v) for v in source_header.PixelSpacing])
    referenced = seg.ReferencedSeriesSequence
    assert [str(r.SeriesInstanceUID) for r in referenced] == [series.series_uid]
    assert {str(i.ReferencedSOPInstanceUID) for i in referenced[0].ReferencedInstanceSequence} == set(series.sop_uids)
    assert str(seg.FrameOfReferenceUID) == str(source_header.FrameOfReferenceUID)
    segment = seg.SegmentSequence[0]
    assert (segment.SegmentLabel, segment.SegmentedPropertyTypeCodeSequence[0].CodeValue) == ("lesion", "52988006")
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("attention-unet", "0123abcd")
    assert str(seg.SoftwareVersions) == __import__("metaseg_viewer").__version__
    # patient and study modules copied, as the standard requires
    assert (str(seg.PatientName), seg.PatientID, seg.StudyInstanceUID) == (
        PATIENT_NAME, PATIENT_ID, source_header.StudyInstanceUID)


def test_seg_with_empty_frames_when_asked(series: Series) -> None:
    scan, truth = _scan_and_truth(series)
    seg = hd.seg.segread(BytesIO(seg_bytes(truth, scan, "m", "v", include_empty=True)))
    assert int(seg.NumberOfFrames) == scan.n_slices


def test_seg_reads_back_as_the_true_mask_by_geometry(series: Series) -> None:
    scan, truth = _scan_and_truth(series)
    data, suffix = mask_file(scan, truth, "dicom-seg", ("attention-unet", "v1"))
    assert suffix == "_mask.seg.dcm"
    assert np.array_equal(read_true_mask(data, scan, name="truth.dcm"), truth)


def test_seg_of_another_series_is_refused_naming_both(series: Series, shared_data: Path, tmp_path: Path) -> None:
    scan, truth = _scan_and_truth(series)
    other = write_series(shared_data, tmp_path / "other")
    other_scan = read_scan(other.folder)
    with pytest.raises(InputError) as err:
        read_true_mask(seg_bytes(truth, scan, "m", "v"), other_scan, name="seg.dcm")
    assert series.series_uid in str(err.value) and other.series_uid in str(err.value)


def test_nrrd_round_trip_keeps_mask_and_geometry(series: Series) -> None:
    scan, truth = _scan_and_truth(series)
    data, suffix = mask_file(scan, truth, "nrrd")
    assert suffix == "_mask.seg.nrrd"
    stream = BytesIO(data)
    header = nrrd.read_header(stream)
    values = nrrd.read_data(header, stream, index_order="C")
    assert np.array_equal(values != 0, truth) and values.dtype == np.uint8
    assert header["space"] == "left-posterior-superior" and header["Segment0_Name"] == "lesion"
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ scan.affine
    assert np.allclose(header["space directions"], lps[:3, [2, 1, 0]].T)
    assert np.allclose(header["space origin"], series.positions[0], atol=1e-3)  # the first slice's corner
    assert np.array_equal(read_true_mask(data, scan, name="truth.seg.nrrd"), truth)


def test_nrrd_in_another_axis_order_is_laid_on_the_image_by_geometry(series: Series) -> None:
    """A NRRD stored slice-fastest with flipped rows (as another tool may save it) reads back the same."""
    scan, truth = _scan_and_truth(series)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ scan.affine
    h = scan.shape[1]
    stored = truth[:, ::-1, :].transpose(0, 1, 2).astype(np.uint8)  # (z, flipped row, column), index_order F
    directions = np.stack([lps[:3, 0], -lps[:3, 1], lps[:3, 2]])  # rows of the F-order axes z, row, column
    origin = lps[:3, 3] + lps[:3, 1] * (h - 1)
    buffer = BytesIO()
    nrrd.write(buffer, stored, {"space": "left-posterior-superior", "space directions": directions,
                                "space origin": origin, "kinds": ["domain"] * 3}, index_order="F")
    assert np.array_equal(read_true_mask(buffer.getvalue(), scan, name="other.nrrd"), truth)


def test_a_mask_on_another_grid_is_refused(series: Series) -> None:
    scan, truth = _scan_and_truth(series)
    shifted = Scan(scan.pixels, spacing=scan.spacing, affine=scan.affine @ np.diag([1.0, 1.5, 1.0, 1.0]),
                   is_volume=True)
    with pytest.raises(InputError, match="does not coincide"):
        read_true_mask(nrrd_bytes(truth, shifted), scan, name="m.seg.nrrd")


def test_dicom_seg_is_refused_for_other_inputs_saying_what_is_accepted() -> None:
    scan = read_scan(png_bytes(np.zeros((8, 8), np.uint8)), name="a.png")
    with pytest.raises(InputError, match="DICOM series.*accepted for it: auto, png"):
        mask_suffix(scan, "dicom-seg")
    with pytest.raises(InputError, match="NRRD file, which is read only as a true mask"):
        read_scan(nrrd_bytes(np.zeros((1, 8, 8), bool), scan), name="m.seg.nrrd")


def test_nrrd_for_an_image_without_geometry_reads_back(tmp_path: Path) -> None:
    scan = read_scan(png_bytes(np.zeros((8, 6), np.uint8)), name="a.png")
    mask = np.zeros((1, 8, 6), bool)
    mask[0, 2:4, 1:5] = True
    assert np.array_equal(read_true_mask(nrrd_bytes(mask, scan), scan, name="m.seg.nrrd"), mask)
    with pytest.raises(InputError, match="by geometry"):
        read_true_mask(nrrd_bytes(mask, scan), scan.shape, name="m.seg.nrrd")


def test_seg_says_how_the_mask_was_made(series: Series) -> None:
    scan, truth = _scan_and_truth(series)
    manual = hd.seg.segread(BytesIO(seg_bytes(truth, scan, "ignored", "x", algorithm_type="manual"))).SegmentSequence[0]
    assert manual.SegmentAlgorithmType == "MANUAL" and "SegmentationAlgorithmIdentificationSequence" not in manual
    edited = hd.seg.segread(BytesIO(seg_bytes(truth, scan, "unetpp", "ab12", algorithm_type="semiautomatic")))
    segment = edited.SegmentSequence[0]
    assert segment.SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "unetpp"
    with pytest.raises(InputError, match="accepted: automatic, semiautomatic, manual"):
        seg_bytes(truth, scan, "m", "v", algorithm_type="by hand")  # type: ignore[arg-type]
