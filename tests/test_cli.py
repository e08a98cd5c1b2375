"""``metaseg segment`` / ``metaseg models`` on real files, including a bad one among good ones."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest

from metaseg_viewer.cli import main
from metaseg_viewer.samples import make_slice, make_volume


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    png = tmp_path / "slice.png"
    cv2.imwrite(str(png), make_slice(size=128, seed=0).image)
    volume = make_volume(n_slices=6, size=64, seed=0)
    nii = tmp_path / "head.nii.gz"
    data = np.transpose(volume.image, (2, 1, 0))[::-1, ::-1]  # (x, y, z) in RAS order
    nib.save(nib.Nifti1Image(data.copy(), np.diag([0.9, 0.9, 3.0, 1.0])), nii)
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    return {"png": png, "nii": nii, "bad": bad}


def test_segment_writes_mask_overlay_and_lesion_table(inputs: dict[str, Path], tmp_path: Path, tiny_checkpoint: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["segment", str(inputs["png"]), str(inputs["bad"]), str(inputs["nii"]),
                 "--model", str(tiny_checkpoint), "--out", str(out), "--threshold", "0.5"])
    assert code == 1  # one input failed, the others were still written
    err = capsys.readouterr().err
    assert "notes.png" in err and "accepted" in err.lower()
    mask = cv2.imread(str(out / "slice_mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (128, 128) and set(np.unique(mask)) <= {0, 255}
    assert cv2.imread(str(out / "slice_overlay.png")).shape == (128, 128, 3)
    header = next(csv.reader(open(out / "slice_lesions.csv")))
    assert "size_px" in header and "mean_probability" in header
    written = nib.load(out / "head_mask.nii.gz")
    assert written.shape == (64, 64, 6)
    np.testing.assert_allclose(written.affine, np.diag([0.9, 0.9, 3.0, 1.0]))
    assert (out / "head_overlay.png").is_file() and (out / "head_lesions.csv").is_file()


def test_unknown_model_is_a_clear_error(inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["segment", str(inputs["png"]), "--model", "resnet-magic"]) == 2
    assert "unetpp" in capsys.readouterr().err


def test_models_lists_the_registry() -> None:
    result = subprocess.run([sys.executable, "-m", "metaseg_viewer.cli", "models"], capture_output=True, text=True, check=True)
    for name in ("unetpp", "attention-unet", "ensemble"):
        assert name in result.stdout
    assert "validation" in result.stdout


def test_sample_writes_readable_image_and_truth(tmp_path: Path) -> None:
    from metaseg_viewer.io import read_scan

    assert main(["sample", "--out", str(tmp_path), "--slices", "5"]) == 0
    expected = make_volume(n_slices=5, seed=0)
    volume = read_scan(tmp_path / "sample_volume.nii.gz")
    np.testing.assert_array_equal(volume.pixels, expected.image)
    np.testing.assert_allclose(volume.spacing, expected.spacing)
    np.testing.assert_array_equal(read_scan(tmp_path / "sample_volume_truth.nii.gz").pixels, expected.mask)
    np.testing.assert_array_equal(read_scan(tmp_path / "sample_slice.png").pixels[0], make_slice(seed=0).image)
    assert (read_scan(tmp_path / "sample_slice_truth.png").pixels[0] > 0).sum() == make_slice(seed=0).mask.sum()


def test_same_names_do_not_overwrite_and_bad_settings_stop_early(tmp_path: Path, tiny_checkpoint: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / "scan.png"), make_slice(size=64, seed=1).image)
    out = tmp_path / "out"
    assert main(["segment", str(tmp_path / "a" / "scan.png"), str(tmp_path / "b" / "scan.png"),
                 "--model", str(tiny_checkpoint), "--out", str(out)]) == 0
    assert (out / "scan_mask.png").is_file() and (out / "scan_2_mask.png").is_file()
    assert main(["segment", str(tmp_path / "a" / "scan.png"), "--model", str(tiny_checkpoint), "--threshold", "1.5"]) == 2
    assert "threshold must be a number strictly between 0 and 1" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["segment", str(tmp_path / "a" / "scan.png"), "--model", str(tiny_checkpoint), "--out", str(blocker)]) == 1
    assert "cannot write results" in capsys.readouterr().err


def test_unavailable_device_is_a_clear_error(tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), make_slice(size=64).image)
    assert main(["segment", str(image), "--model", str(tiny_checkpoint), "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_volume_lesion_table_has_world_coordinates(tmp_path: Path) -> None:
    from metaseg_viewer.scan import Scan
    from metaseg_viewer.segment import lesion_rows

    mask = np.zeros((4, 10, 10), bool)
    mask[1:3, 2:4, 6:8] = True  # centroid (z, row, col) = (1.5, 2.5, 6.5)
    affine = np.diag([2.0, -1.0, -0.5, 1.0])  # maps (z, row, col) to RAS mm
    affine[:3, 3] = (10.0, 20.0, 30.0)
    scan = Scan(mask.astype(np.uint8), spacing=(2.0, 1.0, 0.5), affine=affine, is_volume=True)
    [row] = lesion_rows(scan, mask, mask.astype(np.float32))
    assert row["size_px"] == 8 and row["volume_mm3"] == pytest.approx(8.0)
    assert (row["centroid_x_mm"], row["centroid_y_mm"], row["centroid_z_mm"]) == pytest.approx((13.0, 17.5, 26.75))
