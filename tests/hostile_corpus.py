"""A corpus of hostile and awkward inputs, written into a folder for every door to be tested on.

Each :class:`Case` is a file name, its bytes and what every door must do with it:

- ``refuse``: a clear one-line error naming the file (what was wrong, what is accepted);
- ``warn``: segmented, with a visible warning (the words in ``says`` appear in it);
- ``ok``: segmented without complaint.

``heavy`` cases are valid but expensive (many slices): the server refuses them by its compute
budget; doors without one would spend minutes on them, so their tests leave them out.
Cases are built with the formats' own libraries (Pillow, tifffile, nibabel, pydicom) or by hand
where the point is a malformed file. Imported as ``from hostile_corpus import ...``.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import nibabel as nib
import numpy as np
from factories import dicom_bytes, dicom_dataset, jpeg_bytes, nifti_bytes, png_bytes, tiff_bytes


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], bytes]
    expect: str  # "refuse", "warn" or "ok"
    says: str = ""  # a phrase (lower case) the error or warning must contain
    heavy: bool = False


def _brain(size: int = 64, seed: int = 0) -> np.ndarray:
    """A small head-like uint8 slice: a bright disc with a brighter blob, some noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    image = np.where(r < size * 0.4, 90, 0) + np.where(np.hypot(yy - size / 3, xx - size / 2) < size / 10, 100, 0)
    return np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _elongated_png(height: int, width: int) -> bytes:
    """A gray PNG of ``height`` x ``width`` zeros, written by hand: Pillow would need the whole
    array in memory (16 MB of zeros compress to about 17 KB)."""
    raw_row = b"\x00" + b"\x00" * width  # filter byte + pixels
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(raw_row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def _png_bomb() -> bytes:
    """A PNG whose header claims 100,000 x 100,000 pixels, with almost no data."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) \
        + _png_chunk(b"IEND", b"")


def _nifti(volume: np.ndarray, affine: np.ndarray | None = None, slope: float | None = None) -> bytes:
    """``.nii.gz`` bytes; ``affine`` and ``slope`` are written into the header as given, even when
    nibabel would refuse them (NaN, infinity)."""
    image = nib.Nifti1Image(volume, np.eye(4))
    if affine is not None:
        raw = bytearray(image.to_bytes())
        struct.pack_into("<hh", raw, 252, 0, 1)  # qform_code 0, sform_code 1: the srow_* rows hold it
        struct.pack_into("<12f", raw, 280, *np.asarray(affine, np.float32)[:3].ravel())
        return gzip.compress(bytes(raw), mtime=0)
    if slope is not None:
        image.header.set_slope_inter(slope, 0.0)
        image.update_header()
        raw = bytearray(image.to_bytes())
        struct.pack_into("<ff", raw, 112, slope, 0.0)  # scl_slope, scl_inter: nibabel would rescale
        return gzip.compress(bytes(raw), mtime=0)
    return gzip.compress(image.to_bytes(), mtime=0)


def _float64_bomb(shape: tuple[int, int, int] = (512, 512, 260)) -> bytes:
    """A .nii.gz of 512 x 512 x 260 float64 zeros: about 0.5 MB sent, 545 MB decoded. Streamed
    through gzip so the test itself never holds the volume."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float64)
    header.set_data_offset(352)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    chunk = bytes(1 << 20)
    total = int(np.prod(shape)) * 8
    parts = [compressor.compress(header.binaryblock + b"\x00" * 4)]
    parts += [compressor.compress(chunk[: min(len(chunk), total - done)]) for done in range(0, total, len(chunk))]
    return b"".join(parts) + compressor.flush()


def _mixed_page_tiff() -> bytes:
    """Four 64x64 pages and four 32x32 pages in one TIFF: half the pages differ from the first."""
    buffer = BytesIO()
    import tifffile

    with tifffile.TiffWriter(buffer) as tif:
        for i in range(8):
            tif.write(_brain(64 if i % 2 == 0 else 32, seed=i), photometric="minisblack")
    return buffer.getvalue()


def _many_pages(pages: int = 500, size: int = 64) -> bytes:
    """A 2 MB TIFF of ``pages`` 64x64 pages: cheap to send, costly to segment."""
    stack = np.stack([_brain(size, seed=i % 7) for i in range(pages)])
    return tiff_bytes(stack, photometric="minisblack")


def _short_dicom() -> bytes:
    """150 bytes: a DICOM preamble and magic, then a few meta elements, then nothing."""
    meta = struct.pack("<HH2sH", 0x0002, 0x0000, b"UL", 4) + struct.pack("<I", 20)
    meta += struct.pack("<HH2sH", 0x0002, 0x0010, b"UI", 20) + b"1.2.840.10008.1.2.1\x00"
    data = b"\x00" * 128 + b"DICM" + meta
    return data + b"\x00" * (150 - len(data))


def _fake_dicom() -> bytes:
    rng = np.random.default_rng(3)
    return b"\x00" * 128 + b"DICM" + rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()


def _lgg_like_rgb() -> bytes:
    """A 3-channel 256x256 TIFF laid out byte for byte as the LGG kaggle_3m files are (pixels
    right after the header in 11-row strips, then the IFD), with different content per channel
    so that FLAIR (channel 1) and luminance differ. Written by hand: tifffile puts the IFD first."""
    pixels = np.zeros((256, 256, 3), np.uint8)
    pixels[..., 0] = np.tile(np.arange(256, dtype=np.uint8), (256, 1))
    pixels[..., 1] = _brain(256)
    pixels[..., 2] = 255 - pixels[..., 0]
    data = pixels.tobytes()
    strip = 11 * 256 * 3
    offsets = list(range(8, 8 + len(data), strip))
    counts = [min(strip, len(data) - (o - 8)) for o in offsets]
    extra = 8 + len(data)  # arrays of values follow the pixels, then the IFD
    arrays = struct.pack("<3H", 8, 8, 8) + struct.pack(f"<{len(offsets)}I", *offsets) \
        + struct.pack(f"<{len(counts)}I", *counts) + struct.pack("<3H", 1, 1, 1)
    at_bits, at_offsets = extra, extra + 6
    at_counts, at_format = at_offsets + 4 * len(offsets), at_offsets + 8 * len(offsets)
    entries = [(256, 3, 1, 256), (257, 3, 1, 256), (258, 3, 3, at_bits), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, len(offsets), at_offsets), (277, 3, 1, 3), (278, 3, 1, 11),
               (279, 4, len(counts), at_counts), (284, 3, 1, 1), (339, 3, 3, at_format)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0" * 4
    return struct.pack("<2sHI", b"II", 42, extra + len(arrays)) + data + arrays + ifd


def _partly_nan() -> bytes:
    volume = np.stack([_brain(48, seed=i).astype(np.float32) for i in range(4)])
    volume[0, :10, :10] = np.nan
    return _nifti(volume.transpose(2, 1, 0))


def _polyglot_png_zip() -> bytes:
    """A valid PNG with a ZIP archive appended (a classic polyglot): read as the PNG it starts as."""
    return png_bytes(_brain()) + b"PK\x03\x04" + b"\x00" * 26 + b"evil.txt" + b"payload"


def _html_as_jpeg() -> bytes:
    return b"<html><script>alert(1)</script></html>"


def _truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


def _dicom_slice() -> bytes:
    return dicom_bytes(dicom_dataset(_brain(64).astype(np.uint16) * 4))


CASES: tuple[Case, ...] = (
    # Refused: not an image, broken, or over a limit.
    Case("empty.png", lambda: b"", "refuse", "empty"),
    Case("text_named.png", lambda: b"just some text, not an image\n" * 4, "refuse", "not an image"),
    Case("html_named.jpg", _html_as_jpeg, "refuse", "not an image"),
    Case("png_magic_then_text.png", lambda: b"\x89PNG\r\n\x1a\n" + b"this is text, not PNG chunks" * 8, "refuse",
         "png"),
    Case("truncated.png", lambda: _truncated(png_bytes(_brain(128))), "refuse", "truncated"),
    Case("truncated.jpg", lambda: _truncated(jpeg_bytes(_brain(128)), 0.3), "refuse", "truncated"),
    Case("truncated.tif", lambda: _truncated(tiff_bytes(_brain(128)), 0.4), "refuse", "truncated"),
    Case("truncated.nii.gz", lambda: _truncated(_nifti(np.zeros((32, 32, 8), np.int16))), "refuse", "truncated"),
    Case("png_bomb.png", _png_bomb, "refuse", "limit"),
    Case("elongated_1x16M.png", lambda: _elongated_png(1, 16_000_000), "refuse", "longer side"),
    Case("elongated_16x1M.png", lambda: _elongated_png(16, 1_000_000), "refuse", "longer side"),
    Case("elongated_1000x16.png", lambda: _elongated_png(1000, 16), "refuse", "elongated"),
    Case("short_150_bytes.dcm", _short_dicom, "refuse", "dicom"),
    Case("fake.dcm", _fake_dicom, "refuse", "dicom"),
    Case("zip_archive.zip", lambda: b"PK\x03\x04" + b"\x00" * 100, "refuse", "zip"),
    Case("gzip_of_text.nii.gz", lambda: gzip.compress(b"hello" * 100), "refuse", "gzip"),
    Case("four_d.nii.gz", lambda: _nifti(np.zeros((8, 8, 4, 3), np.int16)), "refuse", "4-d"),
    Case("nan_affine.nii.gz", lambda: _nifti(np.zeros((16, 16, 4), np.int16), np.full((4, 4), np.nan)), "refuse",
         "affine"),
    Case("inf_affine.nii.gz", lambda: _nifti(np.zeros((16, 16, 4), np.int16), np.diag([np.inf, 1, 1, 1])),
         "refuse", "affine"),
    Case("all_nan.nii.gz", lambda: _nifti(np.full((16, 16, 4), np.nan, np.float32)), "refuse", "no finite"),
    Case("inf_scaled.nii.gz", lambda: _nifti(np.full((16, 16, 4), 30000, np.int16), slope=1e38), "refuse",
         "no finite"),
    Case("float64_bomb.nii.gz", _float64_bomb, "refuse", "limit"),
    # Accepted with a visible warning.
    Case("mixed_page_sizes.tif", _mixed_page_tiff, "warn", "pages"),
    Case("partly_nan.nii.gz", _partly_nan, "warn", "nan"),
    Case("blank.png", lambda: png_bytes(np.zeros((64, 64), np.uint8)), "warn", "blank"),
    # Accepted.
    Case("polyglot_png_zip.png", _polyglot_png_zip, "ok"),
    Case("lgg_layout_renamed.tif", _lgg_like_rgb, "ok"),
    Case("slice.dcm", _dicom_slice, "ok"),
    Case("brain.png", lambda: png_bytes(_brain()), "ok"),
    # Valid but costly: refused by a server's compute budget, minutes of work elsewhere.
    Case("many_pages_500.tif", _many_pages, "ok", heavy=True),
)


def write_corpus(folder: Path, include_heavy: bool = False) -> dict[str, Case]:
    """Write every case (heavy ones only when asked) into ``folder``; returns path name → case."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for case in CASES:
        if case.heavy and not include_heavy:
            continue
        (folder / case.name).write_bytes(case.build())
        written[case.name] = case
    return written
