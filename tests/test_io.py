"""Tests of metaseg_viewer.io on real files written here with Pillow, tifffile, pydicom, nibabel.

Expected values are computed independently of the reader (BT.601 by hand, world points from the
DICOM/NIfTI definitions), so each test fails if the reader gets an axis, a sign or a channel
wrong. The LGG tests read ../shared/data in place and skip where it is absent.
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from io import BytesIO
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLSLossless

from metaseg_viewer.errors import InputError, TooLargeError, UnsupportedFormatError
from metaseg_viewer.io import (
    ACCEPTED_FORMATS,
    ReadLimits,
    read_scan,
    read_scans,
    to_single_channel,
    write_mask_nifti,
    write_mask_png,
)
from metaseg_viewer.scan import Scan
from factories import (
    dicom_bytes,
    dicom_dataset,
    jpeg_bytes,
    nifti_bytes,
    png_bytes,
    save_dicom,
    tiff_bytes,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LGG_PATIENT = "TCGA_CS_4941_19960909"
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def bt601(rgb: np.ndarray) -> np.ndarray:
    """Luminance computed here, independently of the reader."""
    rgb = rgb.astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_with_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height but carries almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + png_chunk(b"IEND", b""))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# --- PNG / JPEG ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_gray_keeps_values_and_dtype(tmp_path, rng, dtype):
    image = rng.integers(0, np.iinfo(dtype).max, (6, 7), dtype=dtype)
    path = tmp_path / "gray.png"
    path.write_bytes(png_bytes(image))
    scan = read_scan(path)
    assert scan.pixels.dtype == dtype and scan.shape == (1, 6, 7)
    np.testing.assert_array_equal(scan.pixels[0], image)
    assert scan.spacing is None and scan.affine is None and not scan.is_volume


def test_png_rgb_and_rgba_give_bt601_luminance(tmp_path, rng):
    rgb = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (6, 7, 1), dtype=np.uint8)
    expected = np.rint(bt601(rgb)).astype(np.uint8)
    for name, array in (("rgb.png", rgb), ("rgba.png", np.concatenate([rgb, alpha], axis=2))):
        (tmp_path / name).write_bytes(png_bytes(array))
        scan = read_scan(tmp_path / name)
        assert scan.pixels.dtype == np.uint8
        np.testing.assert_array_equal(scan.pixels[0], expected)
        assert "luminance" in scan.description


def test_png_gray_alpha_takes_gray_channel(tmp_path, rng):
    gray_alpha = rng.integers(0, 256, (6, 7, 2), dtype=np.uint8)
    (tmp_path / "la.png").write_bytes(png_bytes(gray_alpha))
    np.testing.assert_array_equal(read_scan(tmp_path / "la.png").pixels[0], gray_alpha[..., 0])


def test_png_palette_is_expanded_before_luminance(tmp_path, rng):
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    indices = rng.integers(0, 256, (6, 7), dtype=np.uint8)
    image = Image.frombytes("P", (7, 6), indices.tobytes())
    image.putpalette(palette.tobytes())
    image.save(tmp_path / "palette.png")
    expected = np.rint(bt601(palette[indices])).astype(np.uint8)
    np.testing.assert_array_equal(read_scan(tmp_path / "palette.png").pixels[0], expected)


def test_png_16bit_rgb_keeps_16_bits(tmp_path, rng):
    cv2 = pytest.importorskip("cv2")
    rgb = rng.integers(0, 65536, (6, 7, 3), dtype=np.uint16)
    ok, encoded = cv2.imencode(".png", rgb[..., ::-1])  # OpenCV writes BGR
    assert ok
    scan = read_scan(encoded.tobytes(), name="rgb16.png")
    assert scan.pixels.dtype == np.uint16
    np.testing.assert_array_equal(scan.pixels[0], np.rint(bt601(rgb)).astype(np.uint16))


def test_jpeg_gray_and_rgb(tmp_path, rng):
    gray = rng.integers(0, 256, (16, 24), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.jpg", quality=95)
    decoded = np.asarray(Image.open(tmp_path / "gray.jpg"))
    scan = read_scan(tmp_path / "gray.jpg")
    assert scan.pixels.dtype == np.uint8
    np.testing.assert_array_equal(scan.pixels[0], decoded)
    rgb = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.jpg", quality=95)
    decoded = np.asarray(Image.open(tmp_path / "rgb.jpg").convert("RGB"))
    np.testing.assert_array_equal(read_scan(tmp_path / "rgb.jpg").pixels[0],
                                  np.rint(bt601(decoded)).astype(np.uint8))


# --- TIFF ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("layout", [{}, {"byteorder": ">"}, {"bigtiff": True}])
def test_tiff_gray_any_byte_order(tmp_path, rng, dtype, layout):
    image = (rng.random((6, 7)) * 1000).astype(dtype)
    (tmp_path / "g.tif").write_bytes(tiff_bytes(image, photometric="minisblack", **layout))
    scan = read_scan(tmp_path / "g.tif")
    assert scan.pixels.dtype == dtype and scan.pixels.dtype.isnative
    np.testing.assert_array_equal(scan.pixels[0], image)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [3, 4])
def test_tiff_rgb_and_rgba(tmp_path, rng, dtype, channels):
    array = rng.integers(0, np.iinfo(dtype).max, (6, 7, channels), dtype=dtype)
    extra = {"extrasamples": ["unassalpha"]} if channels == 4 else {}
    (tmp_path / "c.tif").write_bytes(tiff_bytes(array, photometric="rgb", **extra))
    scan = read_scan(tmp_path / "c.tif")
    assert scan.pixels.dtype == dtype
    np.testing.assert_array_equal(scan.pixels[0], np.rint(bt601(array[..., :3])).astype(dtype))


def test_tiff_planar_rgb_and_gray_alpha(tmp_path, rng):
    planar = rng.integers(0, 256, (3, 6, 7), dtype=np.uint8)
    (tmp_path / "p.tif").write_bytes(tiff_bytes(planar, photometric="rgb",
                                                planarconfig="separate"))
    expected = np.rint(bt601(np.moveaxis(planar, 0, -1))).astype(np.uint8)
    np.testing.assert_array_equal(read_scan(tmp_path / "p.tif").pixels[0], expected)
    gray_alpha = rng.integers(0, 65536, (6, 7, 2), dtype=np.uint16)
    (tmp_path / "la.tif").write_bytes(tiff_bytes(gray_alpha, photometric="minisblack",
                                                 extrasamples=["unassalpha"]))
    np.testing.assert_array_equal(read_scan(tmp_path / "la.tif").pixels[0], gray_alpha[..., 0])


def test_multipage_tiff_is_a_stack(tmp_path, rng):
    pages = rng.integers(0, 65536, (4, 6, 7), dtype=np.uint16)
    with tifffile.TiffWriter(tmp_path / "stack.tif") as writer:
        for page in pages:
            writer.write(page, photometric="minisblack")
    scan = read_scan(tmp_path / "stack.tif")
    np.testing.assert_array_equal(scan.pixels, pages)
    assert not scan.is_volume and "4-page stack" in scan.description


def test_lgg_name_rule_picks_flair_only_for_lgg_names(tmp_path, rng):
    array = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    data = tiff_bytes(array, photometric="rgb")
    lgg_name = "TCGA_DU_A5TP_19970614_12.tif"
    (tmp_path / lgg_name).write_bytes(data)
    (tmp_path / "photo.tif").write_bytes(data)
    luminance = np.rint(bt601(array)).astype(np.uint8)
    flair = read_scan(tmp_path / lgg_name)
    np.testing.assert_array_equal(flair.pixels[0], array[..., 1])
    assert "FLAIR channel (1) of an LGG kaggle_3m 3-channel TIFF (recognised by its file name)" in flair.description
    np.testing.assert_array_equal(read_scan(data, name=lgg_name).pixels[0], array[..., 1])
    np.testing.assert_array_equal(read_scan(data).pixels[0], luminance)
    np.testing.assert_array_equal(read_scan(tmp_path / "photo.tif").pixels[0], luminance)
    np.testing.assert_array_equal(read_scan(tmp_path / "photo.tif", color="flair").pixels[0],
                                  array[..., 1])
    np.testing.assert_array_equal(read_scan(tmp_path / lgg_name, color="gray").pixels[0],
                                  luminance)
    (tmp_path / "TCGA_DU_A5TP_19970614_12_mask.tif").write_bytes(data)
    np.testing.assert_array_equal(
        read_scan(tmp_path / "TCGA_DU_A5TP_19970614_12_mask.tif").pixels[0], luminance)


# --- to_single_channel --------------------------------------------------------------------------

def test_to_single_channel_rules():
    rgb = np.array([[[10, 20, 30], [65535, 65535, 0]]], dtype=np.uint16)
    np.testing.assert_array_equal(to_single_channel(rgb, "gray"), [[18, 58064]])
    np.testing.assert_array_equal(to_single_channel(rgb, "auto"), [[18, 58064]])
    np.testing.assert_array_equal(to_single_channel(rgb, "flair"), [[20, 65535]])
    equal = np.repeat(np.array([[7, 200]], dtype=np.uint8)[..., None], 3, axis=2)
    np.testing.assert_array_equal(to_single_channel(equal, "gray"), [[7, 200]])
    rgba = np.concatenate([rgb, np.zeros((1, 2, 1), np.uint16)], axis=2)
    np.testing.assert_array_equal(to_single_channel(rgba, "gray"), [[18, 58064]])
    floats = np.array([[[0.5, 1.0, 2.0]]], dtype=np.float32)
    out = to_single_channel(floats, "gray")
    assert out.dtype == np.float32 and out[0, 0] == pytest.approx(0.299 * 0.5 + 0.587 + 0.228)
    assert to_single_channel(np.zeros((3, 4), np.int16), "gray").shape == (3, 4)
    for bad in (np.zeros((2, 2, 5)), np.zeros(4), np.zeros((1, 2, 2, 3))):
        with pytest.raises(InputError):
            to_single_channel(bad, "gray")
    with pytest.raises(InputError):
        to_single_channel(rgb, "colour")  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(st.sampled_from([np.uint8, np.uint16, np.int16]), st.integers(1, 5), st.integers(1, 5),
       st.integers(0, 2**32 - 1))
def test_to_single_channel_luminance_property(dtype, height, width, seed):
    info = np.iinfo(dtype)
    rgb = np.random.default_rng(seed).integers(info.min, info.max, (height, width, 3),
                                               dtype=dtype, endpoint=True)
    out = to_single_channel(rgb, "gray")
    assert out.dtype == dtype and out.shape == (height, width)
    equal = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
    expected = np.where(equal.all(), rgb[..., 0], np.rint(bt601(rgb)))
    np.testing.assert_array_equal(out, expected.astype(dtype))


# --- the real LGG files -------------------------------------------------------------------------

def _lgg_dirs() -> tuple[Path, Path]:
    tiffs = DATA / "lgg_kaggle3m_sample" / "kaggle_3m" / LGG_PATIENT
    pngs = DATA / "lgg_flair" / LGG_PATIENT
    if not tiffs.is_dir() or not pngs.is_dir():
        pytest.skip(f"LGG sample data not found at {DATA} (../shared/data beside the repository "
                    "is only on development machines and CI)")
    return tiffs, pngs


@pytest.mark.parametrize("number", [1, 12, 20])
def test_lgg_tiff_reads_as_the_flair_png(number):
    tiffs, pngs = _lgg_dirs()
    scan = read_scan(tiffs / f"{LGG_PATIENT}_{number}.tif")
    flair = np.asarray(Image.open(pngs / "images" / f"{LGG_PATIENT}_{number}.png"))
    assert scan.pixels.dtype == np.uint8 and scan.shape == (1, 256, 256)
    np.testing.assert_array_equal(scan.pixels[0], flair)
    assert "FLAIR" in scan.description
    upload = (tiffs / f"{LGG_PATIENT}_{number}.tif").read_bytes()
    np.testing.assert_array_equal(
        read_scan(upload, name=f"{LGG_PATIENT}_{number}.tif").pixels[0], flair)
    mask = read_scan(tiffs / f"{LGG_PATIENT}_{number}_mask.tif")
    expected = np.asarray(Image.open(pngs / "masks" / f"{LGG_PATIENT}_{number}.png"))
    np.testing.assert_array_equal(mask.pixels[0], expected)


def test_lgg_sample_has_a_tumour_slice():
    """Guards the previous test against comparing empty masks only."""
    tiffs, _ = _lgg_dirs()
    masks = [read_scan(p).pixels for p in sorted(tiffs.glob("*_mask.tif"))]
    assert max(int(m.max()) for m in masks) == 255


# --- DICOM --------------------------------------------------------------------------------------

def world_ras(position, orientation, pixel_spacing, row, col) -> np.ndarray:
    """DICOM's definition (PS3.3 C.7.6.2.1.1): P + r * dy * colcos + c * dx * rowcos, in RAS."""
    orientation = np.asarray(orientation, float)
    dy, dx = pixel_spacing
    lps = np.asarray(position) + row * dy * orientation[3:] + col * dx * orientation[:3]
    return LPS_TO_RAS @ lps


ORIENTATIONS = {  # IOP and its slice normal, worked out by hand
    "axial": ((1, 0, 0, 0, 1, 0), (0, 0, 1)),
    "coronal": ((1, 0, 0, 0, 0, -1), (0, 1, 0)),
    "sagittal": ((0, 1, 0, 0, 0, -1), (-1, 0, 0)),
}


def write_series(folder: Path, rng, orientation_name="axial", n=5, gap=2.5, slope=0.5,
                 intercept=-10.0) -> tuple[np.ndarray, list[np.ndarray], tuple]:
    """Write n slices in shuffled file order with scrambled InstanceNumbers; return the truth."""
    orientation, normal = ORIENTATIONS[orientation_name]
    origin = np.array([-100.0, -120.0, 40.0])
    stored = rng.integers(0, 3000, (n, 6, 7), dtype=np.int16)
    positions = [origin + k * gap * np.asarray(normal, float) for k in range(n)]
    order = rng.permutation(n)
    for file_index, k in enumerate(order):
        ds = dicom_dataset(stored[k], position=positions[k], orientation=orientation,
                           instance=int(n - file_index), slope=slope, intercept=intercept)
        save_dicom(ds, folder / f"IM{file_index:04d}")
    return stored, positions, orientation


@pytest.mark.parametrize("orientation_name", sorted(ORIENTATIONS))
def test_dicom_series_sorted_rescaled_with_geometry(tmp_path, rng, orientation_name):
    stored, positions, orientation = write_series(tmp_path, rng, orientation_name)
    (tmp_path / "README.txt").write_text("exported by a scanner\n")
    dicomdir = dicom_dataset(np.zeros((2, 2), np.uint16))
    del dicomdir.PixelData
    save_dicom(dicomdir, tmp_path / "DICOMDIR")
    scan = read_scan(tmp_path)
    assert scan.is_volume and scan.pixels.dtype == np.float32
    np.testing.assert_allclose(scan.pixels, stored.astype(np.float32) * 0.5 - 10.0)
    assert scan.spacing == pytest.approx((2.5, 0.9, 0.8))
    for k, row, col in [(0, 0, 0), (4, 5, 6), (2, 1, 3)]:
        expected = world_ras(positions[k], orientation, (0.9, 0.8), row, col)
        np.testing.assert_allclose((scan.affine @ [k, row, col, 1])[:3], expected, atol=1e-6)


def test_uploaded_series_files_form_one_volume_like_the_folder(tmp_path, rng):
    write_series(tmp_path, rng, "axial")
    files = [(p.name, p.read_bytes()) for p in sorted(tmp_path.iterdir())]
    other = png_bytes(rng.integers(0, 256, (8, 9), dtype=np.uint8))
    results = read_scans([files[2], ("photo.png", other), ("notes.txt", b"hello"), *files[:2], *files[3:]])
    assert [label for label, _ in results] == ["DICOM series (5 files)", "photo.png", "notes.txt"]
    series, photo, notes = (result for _, result in results)
    assert series.shape == (5, 6, 7) and photo.shape == (1, 8, 9)
    assert isinstance(notes, InputError) and "notes.txt" in str(notes)  # the others are still read
    folder = read_scan(tmp_path)
    np.testing.assert_array_equal(series.pixels, folder.pixels)
    np.testing.assert_allclose(series.affine, folder.affine)
    assert read_scans([("photo.png", other)])[0][1].shape == (1, 8, 9)
    stranger = dicom_bytes(dicom_dataset(np.zeros((6, 7), np.int16), series_uid="9.9", position=(0, 0, 50)))
    results = read_scans([("other.dcm", stranger), *files])  # another series' lone image: a scan of its own
    assert [(label, r.shape) for label, r in results] == [("other.dcm", (1, 6, 7)), ("DICOM series (5 files)", (5, 6, 7))]
    with pytest.raises(InputError, match="notes.txt: not a DICOM file"):
        from metaseg_viewer.io.dicom import read_dicom_uploads

        read_dicom_uploads([files[0], ("notes.txt", b"hello")], label="series", color="auto", limits=ReadLimits())
    with pytest.raises(InputError, match="no files"):
        read_scans([])


def test_dicom_without_positions_sorts_by_instance_number(tmp_path, rng):
    stored = rng.integers(0, 3000, (3, 4, 5), dtype=np.uint16)
    for k in (2, 0, 1):
        save_dicom(dicom_dataset(stored[k], position=None, instance=k + 1), tmp_path / f"f{k}")
    scan = read_scan(tmp_path)
    assert scan.pixels.dtype == np.uint16
    np.testing.assert_array_equal(scan.pixels, stored)
    assert scan.affine is None and np.isnan(scan.spacing[0])


def test_dicom_single_file_keeps_integer_dtype_and_thickness(tmp_path, rng):
    pixels = rng.integers(-500, 3000, (6, 7), dtype=np.int16)
    path = save_dicom(dicom_dataset(pixels, position=(10.0, 20.0, 30.0), SliceThickness=3.0),
                      tmp_path / "one.dcm")
    scan = read_scan(path)
    assert scan.pixels.dtype == np.int16 and scan.is_volume
    np.testing.assert_array_equal(scan.pixels[0], pixels)
    assert scan.spacing == pytest.approx((3.0, 0.9, 0.8))
    np.testing.assert_allclose(scan.affine[:3, 3], [-10.0, -20.0, 30.0])
    assert read_scan(path.read_bytes()).pixels.tobytes() == scan.pixels.tobytes()


def test_dicom_lone_slice_without_thickness_has_nan_dz(tmp_path, rng):
    pixels = rng.integers(0, 100, (4, 5), dtype=np.uint16)
    scan = read_scan(save_dicom(dicom_dataset(pixels), tmp_path / "x.dcm"))
    assert np.isnan(scan.spacing[0]) and scan.spacing[1:] == pytest.approx((0.9, 0.8))
    assert np.all(np.isfinite(scan.affine))


def test_dicom_monochrome1_is_inverted(tmp_path, rng):
    pixels = rng.integers(100, 4000, (6, 7), dtype=np.uint16)
    scan = read_scan(save_dicom(dicom_dataset(pixels, photometric="MONOCHROME1"),
                                tmp_path / "m1.dcm"))
    assert scan.pixels.dtype == np.uint16
    expected = int(pixels.max()) + int(pixels.min()) - pixels.astype(np.int64)
    np.testing.assert_array_equal(scan.pixels[0], expected)


def test_dicom_multiframe_and_rgb(tmp_path, rng):
    frames = rng.integers(0, 1000, (3, 4, 5), dtype=np.uint16)
    path = save_dicom(dicom_dataset(frames, NumberOfFrames=3), tmp_path / "mf.dcm")
    np.testing.assert_array_equal(read_scan(path).pixels, frames)
    rgb = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    path = save_dicom(dicom_dataset(rgb, photometric="RGB"), tmp_path / "rgb.dcm")
    np.testing.assert_array_equal(read_scan(path).pixels[0], np.rint(bt601(rgb)).astype(np.uint8))


def test_enhanced_multiframe_uses_per_frame_positions(tmp_path, rng):
    frames = rng.integers(0, 1000, (3, 4, 5), dtype=np.uint16)
    z_of_frame = [8.0, 2.0, 5.0]  # stored out of order along the axial normal
    ds = dicom_dataset(frames, position=None, orientation=None, pixel_spacing=None,
                       NumberOfFrames=3)
    shared = Dataset()
    orientation, measures = Dataset(), Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    measures.PixelSpacing, measures.SliceThickness = [0.7, 0.6], 3.0
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = [orientation], [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for z in z_of_frame:
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = [1.0, 2.0, z]
        item.PlanePositionSequence = [position]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    scan = read_scan(save_dicom(ds, tmp_path / "enhanced.dcm"))
    np.testing.assert_array_equal(scan.pixels, frames[[1, 2, 0]])
    assert scan.spacing == pytest.approx((3.0, 0.7, 0.6))
    np.testing.assert_allclose(scan.affine @ [2, 1, 1, 1], [-1.6, -2.7, 8.0, 1.0])


def test_dicom_without_preamble_is_read(tmp_path, rng):
    pixels = rng.integers(0, 1000, (4, 5), dtype=np.uint16)
    ds = dicom_dataset(pixels)
    del ds.file_meta
    buf = BytesIO()
    pydicom.dcmwrite(buf, ds, implicit_vr=True, little_endian=True)
    data = buf.getvalue()
    assert data[128:132] != b"DICM"
    np.testing.assert_array_equal(read_scan(data).pixels[0], pixels)


# --- NIfTI --------------------------------------------------------------------------------------

NIFTI_AFFINES = {
    "sagittal AIR": np.array([[0, 0, 1.2, 10], [1.5, 0, 0, 20], [0, -2.0, 0, 30], [0, 0, 0, 1]]),
    "LPS": np.array([[-0.9, 0, 0, 90], [0, -0.8, 0, 100], [0, 0, 3.0, -40], [0, 0, 0, 1]]),
    "RAS": np.diag([1.1, 1.2, 1.3, 1.0]),
    "oblique": np.array([[0.98, -0.17, 0, 5], [0.17, 0.98, 0, 6], [0, 0, 2.0, 7], [0, 0, 0, 1]]),
}


def check_axial(scan: Scan, volume: np.ndarray, affine: np.ndarray) -> None:
    """Every voxel of scan must hold the source voxel at the same world point; axes S, P, L."""
    assert scan.pixels.size == volume.size
    z, r, c = np.meshgrid(*(np.arange(n) for n in scan.shape), indexing="ij")
    world = scan.affine @ np.stack([z.ravel(), r.ravel(), c.ravel(), np.ones(z.size)])
    source = np.linalg.solve(affine, world)[:3]
    index = np.rint(source).astype(int)
    np.testing.assert_allclose(source, index, atol=1e-4)
    np.testing.assert_array_equal(scan.pixels.ravel(), volume[tuple(index)])
    directions = scan.affine[:3, :3] / np.linalg.norm(scan.affine[:3, :3], axis=0)
    assert directions[2, 0] > 0.9 and directions[1, 1] < -0.9 and directions[0, 2] < -0.9
    np.testing.assert_allclose(scan.spacing, np.linalg.norm(scan.affine[:3, :3], axis=0))
    np.testing.assert_allclose(scan.source_affine, affine, atol=1e-6)


@pytest.mark.parametrize("name", sorted(NIFTI_AFFINES))
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_is_reoriented_to_axial(tmp_path, name, suffix):
    affine = NIFTI_AFFINES[name]
    volume = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    path = tmp_path / f"vol{suffix}"
    nib.save(nib.Nifti1Image(volume, affine), path)
    scan = read_scan(path)
    assert scan.is_volume and scan.pixels.dtype == np.int16
    check_axial(scan, volume, affine)
    from_bytes = read_scan(path.read_bytes(), name=path.name)
    np.testing.assert_array_equal(from_bytes.pixels, scan.pixels)
    np.testing.assert_array_equal(from_bytes.affine, scan.affine)


def test_nifti_sagittal_expected_array_and_spacing(tmp_path):
    """Hand-derived: stored axes (A, I, R) → (S, P, L) is volume[::-1, ::-1, ::-1] transposed."""
    volume = np.arange(4 * 5 * 6, dtype=np.uint16).reshape(4, 5, 6)
    nib.save(nib.Nifti1Image(volume, NIFTI_AFFINES["sagittal AIR"]), tmp_path / "s.nii")
    scan = read_scan(tmp_path / "s.nii")
    np.testing.assert_array_equal(scan.pixels, volume[::-1, ::-1, ::-1].transpose(1, 0, 2))
    assert scan.spacing == pytest.approx((2.0, 1.5, 1.2))


def test_nifti_scaling_singleton_2d_and_nifti2(tmp_path):
    volume = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    scaled = bytearray(nib.Nifti1Image(volume, np.eye(4)).to_bytes())
    scaled[112:120] = struct.pack("<ff", 2.0, 1.0)  # scl_slope, scl_inter (nibabel would reset)
    (tmp_path / "scaled.nii").write_bytes(bytes(scaled))
    scan = read_scan(tmp_path / "scaled.nii")
    assert scan.pixels.dtype == np.float32
    check_axial(scan, volume.astype(np.float32) * 2 + 1, np.eye(4))
    nib.save(nib.Nifti1Image(volume[..., None], np.eye(4)), tmp_path / "4d1.nii")
    check_axial(read_scan(tmp_path / "4d1.nii"), volume, np.eye(4))
    nib.save(nib.Nifti2Image(volume, np.eye(4)), tmp_path / "v2.nii")
    check_axial(read_scan(tmp_path / "v2.nii"), volume, np.eye(4))
    plane = np.arange(20, dtype=np.uint8).reshape(4, 5)
    nib.save(nib.Nifti1Image(plane, np.eye(4)), tmp_path / "plane.nii")
    scan = read_scan(tmp_path / "plane.nii")
    assert scan.shape == (1, 5, 4)
    np.testing.assert_array_equal(scan.pixels[0], plane[::-1, ::-1].T)


# --- bytes and paths ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["png", "jpeg", "tiff", "dicom", "nii.gz"])
def test_bytes_upload_reads_like_the_path(tmp_path, rng, kind):
    image = rng.integers(0, 4096, (6, 7), dtype=np.uint16)
    if kind == "png":
        data = png_bytes(image)
    elif kind == "jpeg":
        data = _jpeg_bytes()
    elif kind == "tiff":
        data = tiff_bytes(image)
    elif kind == "dicom":
        data = dicom_bytes(dicom_dataset(image, slope=2.0, intercept=-1.0))
    else:
        data = gzip.compress(nib.Nifti1Image(image[..., None], NIFTI_AFFINES["LPS"]).to_bytes())
    path = tmp_path / "no_extension"  # detection is by content, not by name
    path.write_bytes(data)
    from_path, from_bytes = read_scan(path), read_scan(data, name="upload.bin")
    assert from_path.pixels.dtype == from_bytes.pixels.dtype
    np.testing.assert_array_equal(from_path.pixels, from_bytes.pixels)
    np.testing.assert_equal(from_path.spacing, from_bytes.spacing)  # nan == nan here
    np.testing.assert_equal(from_path.affine, from_bytes.affine)
    assert from_bytes.source == "upload.bin"


def test_importing_io_loads_no_dicom_or_nifti_library():
    code = ("import sys, metaseg_viewer.io; "
            "print(sorted(m for m in ('pydicom', 'nibabel', 'cv2', 'torch') if m in sys.modules))")
    src = Path(__file__).resolve().parents[1] / "src"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(src)})
    assert out.stdout.strip() == "[]"


# --- bad input ----------------------------------------------------------------------------------

def _bomb_nifti() -> bytes:
    header = nib.Nifti1Header()
    header.set_data_shape((5000, 5000, 100))
    header.set_data_dtype(np.uint8)
    header["vox_offset"] = 352
    return header.binaryblock + b"\x00" * 4 + b"\x00" * 64


def _zip_bytes() -> bytes:
    buf = BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("scan.png", png_bytes(np.zeros((4, 4), np.uint8)))
    return buf.getvalue()


def _jpeg_bytes() -> bytes:
    return jpeg_bytes(np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8))


def _nifti_bytes(shape: tuple[int, ...]) -> bytes:
    return nifti_bytes(np.ones(shape, np.int16))


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG whose SOF0 header is patched to claim another size."""
    data = bytearray(_jpeg_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _dicom_no_pixels() -> bytes:
    ds = dicom_dataset(np.zeros((2, 2), np.uint16))
    del ds.PixelData
    return dicom_bytes(ds)


def _dicom_jpeg_ls() -> bytes:
    ds = dicom_dataset(np.zeros((8, 8), np.uint16))
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8not really jpeg-ls\xff\xd9"])
    ds["PixelData"].VR = "OB"
    return dicom_bytes(ds)


def _dicom_bomb() -> bytes:
    ds = dicom_dataset(np.zeros((2, 2), np.uint16))
    ds.Rows = ds.Columns = 60000
    return dicom_bytes(ds)


RNG_IMAGE = np.random.default_rng(7).integers(0, 65536, (64, 64), dtype=np.uint16)
BAD_INPUTS = {
    "empty": lambda: b"",
    "text": lambda: b"patient: anonymous\nthis is not an image\n" * 10,
    "zip": _zip_bytes,
    "gzip of text": lambda: gzip.compress(b"hello world " * 100),
    "truncated png": lambda: _half(png_bytes(RNG_IMAGE)),
    "truncated jpeg": lambda: _half(_jpeg_bytes()),
    "truncated tiff": lambda: _half(tiff_bytes(RNG_IMAGE)),
    "truncated nifti": lambda: _half(_nifti_bytes((10, 10, 10))),
    "truncated nii.gz": lambda: _half(gzip.compress(_nifti_bytes((20, 20, 20)))),
    "nifti header only": lambda: _nifti_bytes((10, 10, 10))[:200],
    "png bomb (our limit)": lambda: png_with_header(9000, 9000),
    "png bomb (IHDR)": lambda: png_with_header(100000, 100000),
    "jpeg bomb (Pillow's check)": lambda: _jpeg_claiming(20000, 20000),
    "png zero width": lambda: png_with_header(0, 10),
    "tiff zero size": lambda: tiff_bytes(np.zeros((0, 5), np.uint8)),
    "nifti zero size": lambda: _nifti_bytes((0, 4, 4)),
    "nifti bomb header": _bomb_nifti,
    "4-D nifti": lambda: _nifti_bytes((4, 4, 4, 2)),
    "1-D nifti": lambda: _nifti_bytes((4,)),
    "dicom without pixel data": _dicom_no_pixels,
    "dicom jpeg-ls undecodable": _dicom_jpeg_ls,
    "dicom bomb header": _dicom_bomb,
    "truncated dicom": lambda: _half(dicom_bytes(dicom_dataset(RNG_IMAGE))),
}


#: The apps answer these differently (HTTP 415 and 413); every other bad input is a plain InputError.
_ERROR_KIND = {
    **dict.fromkeys(["text", "zip", "gzip of text"], UnsupportedFormatError),
    **dict.fromkeys(["png bomb (our limit)", "png bomb (IHDR)", "jpeg bomb (Pillow's check)",
                     "nifti bomb header", "dicom bomb header"], TooLargeError),
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_input_error_saying_what_is_accepted(tmp_path, case):
    data = BAD_INPUTS[case]()
    path = tmp_path / "input.bin"
    path.write_bytes(data)
    for source in (path, data):
        with pytest.raises(InputError, match="(?i)accepted") as info:
            read_scan(source)
        assert info.type is _ERROR_KIND.get(case, InputError)  # never a decoder's own exception


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("case, expected", [
    ("empty", "empty"), ("zip", "ZIP"), ("truncated png", "truncated"),
    ("png bomb (our limit)", "decompression bomb"), ("4-D nifti", "4-D NIfTI volume"),
    ("dicom without pixel data", "PixelData element missing"), ("dicom jpeg-ls undecodable",
                                                                "JPEG-LS"),
    ("nifti bomb header", "limit"), ("dicom bomb header", "decompression bomb"),
    ("jpeg bomb (Pillow's check)", "decompression bomb"), ("png zero width", "zero size"), ("tiff zero size", "zero size"),
    ("nifti zero size", "zero size"), ("truncated nii.gz", "truncated"),
    ("nifti header only", "truncated"), ("truncated tiff", "truncated"),
    ("text", ACCEPTED_FORMATS),
])
def test_bad_input_messages_say_what_was_wrong(case, expected):
    with pytest.raises(InputError) as info:
        read_scan(BAD_INPUTS[case]())
    assert expected in str(info.value)


class _Bug(Exception):
    """An exception no decoder raises: a stand-in for any bug in a reader."""


def _raise(error: Exception):
    def planted(*args, **kwargs):
        raise error
    return planted


#: Per reader: a valid file and a call that its reader makes while decoding, in the decoder
#: library (where corrupt data would fail) and in our own code around it.
_DECODER_CALLS = {
    "png": (lambda: png_bytes(RNG_IMAGE), "PIL.ImageFile.ImageFile.load"),
    "tiff": (lambda: tiff_bytes(RNG_IMAGE), "tifffile.TiffPageSeries.asarray"),
    "dicom": (lambda: dicom_bytes(dicom_dataset(RNG_IMAGE)), "pydicom.dataset.pixel_array"),
    "nifti": (lambda: _nifti_bytes((6, 6, 6)), "nibabel.arrayproxy.ArrayProxy.get_unscaled"),
}
_OUR_CALLS = {
    "jpeg": (_jpeg_bytes, "metaseg_viewer.io.raster.check_dims"),  # PNG checks its IHDR earlier
    "tiff": (lambda: tiff_bytes(RNG_IMAGE), "metaseg_viewer.io.raster.check_dims"),
    "dicom": (lambda: dicom_bytes(dicom_dataset(RNG_IMAGE)), "metaseg_viewer.io.dicom.check_dims"),
    "nifti": (lambda: _nifti_bytes((6, 6, 6)), "metaseg_viewer.io.nifti.check_dims"),
}


_PLANTED = (
    # inside a decoder's own call: types the decoders never raise for corrupt data
    [(f"decoder-{reader}", *_DECODER_CALLS[reader], error) for reader in sorted(_DECODER_CALLS)
     for error in (AttributeError("bug"), _Bug("bug"))]
    # in our own reader code: also TypeError and NameError, which no decoder guard may swallow
    + [(f"ours-{reader}", *_OUR_CALLS[reader], error) for reader in sorted(_OUR_CALLS)
       for error in (AttributeError("bug"), TypeError("bug"), NameError("bug"), _Bug("bug"))]
)


@pytest.mark.parametrize(("where", "make", "call", "error"), _PLANTED,
                         ids=[f"{w}-{type(e).__name__}" for w, _, _, e in _PLANTED])
def test_a_bug_inside_a_reader_is_not_reported_as_a_bad_file(monkeypatch, where, make, call, error):
    data = make()
    monkeypatch.setattr(call, _raise(error))
    with pytest.raises(type(error)) as info:
        read_scan(data)
    assert info.value is error, where


def test_bad_paths_and_folders(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_scan(tmp_path / "missing.png")
    with pytest.raises(InputError, match="no DICOM files"):
        read_scan(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="no DICOM files"):
        read_scan(tmp_path)
    only_dicomdir = tmp_path / "dicomdir"
    only_dicomdir.mkdir()
    (only_dicomdir / "DICOMDIR").write_bytes(_dicom_no_pixels())
    with pytest.raises(InputError, match="no pixel data"):
        read_scan(only_dicomdir)


def test_dicom_folder_with_two_series_or_mixed_sizes(tmp_path, rng):
    two = tmp_path / "two"
    two.mkdir()
    save_dicom(dicom_dataset(np.zeros((4, 4), np.uint16), series_uid="1.1"), two / "a")
    save_dicom(dicom_dataset(np.zeros((4, 4), np.uint16), series_uid="2.2"), two / "b")
    with pytest.raises(InputError, match=r"2 DICOM series.*1\.1.*2\.2"):
        read_scan(two)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    save_dicom(dicom_dataset(np.zeros((4, 4), np.uint16)), mixed / "a")
    save_dicom(dicom_dataset(np.zeros((4, 5), np.uint16), position=(0, 0, 2)), mixed / "b")
    with pytest.raises(InputError, match="different sizes"):
        read_scan(mixed)


def test_limits_refuse_large_files_and_slices(tmp_path, rng):
    data = png_bytes(rng.integers(0, 256, (20, 20), dtype=np.uint8))
    with pytest.raises(TooLargeError, match="max_bytes"):
        read_scan(data, limits=ReadLimits(max_bytes=len(data) - 1))
    with pytest.raises(TooLargeError, match="max_slice_pixels"):
        read_scan(data, limits=ReadLimits(max_slice_pixels=399))
    assert read_scan(data, limits=ReadLimits(max_slice_pixels=400)).shape == (1, 20, 20)
    stack = tiff_bytes(np.zeros((3, 10, 10), np.uint8), photometric="minisblack")
    with pytest.raises(TooLargeError, match="max_voxels"):
        read_scan(stack, limits=ReadLimits(max_voxels=299))
    with pytest.raises(TooLargeError, match="3 slices exceed the limit of 2"):
        read_scan(stack, limits=ReadLimits(max_slices=2))
    assert read_scan(stack, limits=ReadLimits(max_slices=3)).shape == (3, 10, 10)
    with pytest.raises(ValueError):
        ReadLimits(max_bytes=0)


def _valid_files() -> list[bytes]:
    image = np.random.default_rng(3).integers(0, 256, (16, 16), dtype=np.uint8)
    return [png_bytes(image), tiff_bytes(image), _jpeg_bytes(), _nifti_bytes((6, 6, 6)),
            gzip.compress(_nifti_bytes((6, 6, 6))), dicom_bytes(dicom_dataset(image))]


VALID_FILES = _valid_files()


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(VALID_FILES))), st.data())
def test_corrupted_files_give_a_scan_or_input_error_only(which, data):
    original = bytearray(VALID_FILES[which])
    for _ in range(data.draw(st.integers(1, 8))):
        original[data.draw(st.integers(0, len(original) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(original)))
    try:
        scan = read_scan(bytes(original[:cut]))
    except InputError:
        return
    assert isinstance(scan, Scan) and scan.pixels.ndim == 3


# --- writers ------------------------------------------------------------------------------------

def test_write_mask_png_round_trip(tmp_path):
    mask = np.zeros((5, 6), bool)
    mask[1:3, 2:5] = True
    write_mask_png(mask, tmp_path / "m.png")
    written = np.asarray(Image.open(tmp_path / "m.png"))
    assert written.dtype == np.uint8
    np.testing.assert_array_equal(written, mask * 255)
    write_mask_png(mask[None].astype(np.uint8), tmp_path / "m3.png")
    np.testing.assert_array_equal(read_scan(tmp_path / "m3.png").pixels[0], mask * 255)
    with pytest.raises(InputError):
        write_mask_png(np.zeros((2, 3, 4)), tmp_path / "bad.png")


@pytest.mark.parametrize("name", sorted(NIFTI_AFFINES))
def test_write_mask_nifti_matches_reoriented_input(tmp_path, name):
    affine = NIFTI_AFFINES[name]
    volume = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "in.nii.gz")
    scan = read_scan(tmp_path / "in.nii.gz")
    write_mask_nifti(scan.pixels % 7 == 0, scan, tmp_path / "mask.nii.gz")
    written = nib.load(tmp_path / "mask.nii.gz")
    assert written.shape == volume.shape and written.get_data_dtype() == np.uint8
    np.testing.assert_allclose(written.affine, affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(written.dataobj), (volume % 7 == 0).astype(np.uint8))


def test_write_mask_nifti_for_dicom_series(tmp_path, rng):
    series = tmp_path / "series"
    series.mkdir()
    write_series(series, rng, "coronal")
    scan = read_scan(series)
    mask = (scan.pixels > 500).astype(np.uint8) * 2
    write_mask_nifti(mask, scan, tmp_path / "mask.nii")
    written = nib.load(tmp_path / "mask.nii")
    data = np.asarray(written.dataobj)
    assert data.shape == scan.shape[::-1] and data.dtype == np.uint8
    np.testing.assert_array_equal(data, mask.transpose(2, 1, 0))
    for z, r, c in [(0, 0, 0), (4, 5, 6), (1, 2, 3)]:
        np.testing.assert_allclose(written.affine @ [c, r, z, 1], scan.affine @ [z, r, c, 1],
                                   atol=1e-5)


def test_write_mask_nifti_without_geometry_and_bad_masks(tmp_path, rng):
    scan = read_scan(png_bytes(rng.integers(0, 256, (5, 6), dtype=np.uint8)))
    mask = np.zeros(scan.shape, np.uint8)
    mask[0, 1, 2] = 1
    write_mask_nifti(mask, scan, tmp_path / "m.nii")
    written = nib.load(tmp_path / "m.nii")
    np.testing.assert_array_equal(np.asarray(written.dataobj)[:, :, 0], mask[0].T)
    np.testing.assert_array_equal(written.affine, np.diag([-1.0, -1.0, 1.0, 1.0]))
    # The diagonal affine encodes the array's own orientation: reading it back is the identity.
    np.testing.assert_array_equal(read_scan(tmp_path / "m.nii").pixels, mask)
    with pytest.raises(InputError, match="shape"):
        write_mask_nifti(np.zeros((1, 5, 7)), scan, tmp_path / "bad.nii")
    with pytest.raises(InputError, match="labels"):
        write_mask_nifti(np.full(scan.shape, 0.5), scan, tmp_path / "bad.nii")
    with pytest.raises(InputError, match=".nii"):
        write_mask_nifti(mask, scan, tmp_path / "bad.png")


def test_single_coronal_nifti_slice_stays_in_its_plane(tmp_path):
    # 64 (x) by 1 (y) by 48 (z): one coronal slice. Rows must run superior to inferior, columns
    # patient-right to left; the mask goes back into the file's own voxel grid.
    data = np.arange(64 * 48, dtype=np.int16).reshape(64, 1, 48)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "coronal.nii")
    scan = read_scan(tmp_path / "coronal.nii")
    assert scan.shape == (1, 48, 64)
    assert scan.pixels[0, 0, 0] == data[63, 0, 47]  # top-left: superior, patient right
    mask = scan.pixels > 1000
    write_mask_nifti(mask, scan, tmp_path / "mask.nii")
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "mask.nii").dataobj), data > 1000)


def test_a_true_mask_is_paired_with_its_image_by_name(tmp_path: Path) -> None:
    from metaseg_viewer.io.pairing import mask_stem, true_mask_beside

    assert [mask_stem(n) for n in ("a/X_mask.tif", "X_truth.nii.gz", "p/masks/X.png", "images/X.png", "X.png")] == \
        ["X", "X", "X", None, None]
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("a.png", "a_truth.png", "b.nii.gz", "b_mask.nii.gz", "images/c.png", "masks/c.tif", "d.png"):
        (tmp_path / name).write_bytes(b"")
    assert true_mask_beside(tmp_path / "a.png") == tmp_path / "a_truth.png"
    assert true_mask_beside(tmp_path / "b.nii.gz") == tmp_path / "b_mask.nii.gz"
    assert true_mask_beside(tmp_path / "images" / "c.png") == tmp_path / "masks" / "c.tif"
    assert true_mask_beside(tmp_path / "d.png") is None
