"""Read brain MRI from the files users hold into one :class:`Scan`, and write masks back.

Formats are recognised by their content (magic bytes), never by the file name, because uploads
and downloads lose or change extensions. Every problem with the input surfaces as
:class:`InputError` whose message says what was wrong and what is accepted
(:data:`ACCEPTED_FORMATS`); a decoder's own exception never escapes :func:`read_scan`.

Size limits (:class:`ReadLimits`) are checked from headers *before* pixels are decoded, so a
decompression bomb or an oversized upload fails fast instead of exhausting memory.

The DICOM and NIfTI readers live in :mod:`metaseg_viewer.dicom` and :mod:`metaseg_viewer.nifti`
and are imported only when such a file is read or written, which keeps importing this module
cheap (no pydicom, no nibabel).
"""

from __future__ import annotations

import gzip
import os
import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import tifffile
from PIL import Image

from metaseg_viewer.errors import InputError, TooLargeError, UnsupportedFormatError
from metaseg_viewer.scan import Scan

ColorMode = Literal["auto", "flair", "gray"]
Source = str | os.PathLike[str] | bytes

ACCEPTED_FORMATS = (
    "PNG, JPEG or TIFF images (8- or 16-bit, grayscale or colour; float TIFF; multi-page TIFF "
    "stacks), DICOM image files or a folder holding one DICOM series, and NIfTI-1/NIfTI-2 "
    "volumes (.nii or .nii.gz)"
)

_COLOR_MODES = ("auto", "flair", "gray")
_HEAD_BYTES = 4096
#: File names of the LGG kaggle_3m images (``TCGA_<site>_<id>_<date>_<N>.tif``, not ``_mask``).
_LGG_NAME = re.compile(r"^TCGA_[A-Za-z0-9]+_[A-Za-z0-9]+_\d{8}_\d+\.tiff?$", re.IGNORECASE)
_BT601 = (0.299, 0.587, 0.114)
#: Decoders raise many exception types on corrupt input (OSError, SyntaxError, struct.error,
#: zlib.error, EOFError, ... and, found by fuzzing, ZeroDivisionError in tifffile): inside a
#: decoding block every one becomes InputError, chained to the original.
_DECODE_ERRORS = (Exception,)


@dataclass(frozen=True)
class ReadLimits:
    """Upper bounds on what :func:`read_scan` will decode, checked from headers first.

    Attributes:
        max_bytes: size of the file or upload (for a DICOM folder, of each file in it).
        max_slice_pixels: rows x columns of one slice (the decompression-bomb guard).
        max_voxels: all slices together.
        max_slices: slices of one volume or stack.
    """

    max_bytes: int = 1 << 30
    max_slice_pixels: int = 8192 * 8192
    max_voxels: int = 512 * 512 * 1024
    max_slices: int = 4096

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_slice_pixels", "max_voxels", "max_slices"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"ReadLimits.{name} must be a positive int, got {value!r}")


def read_scan(
    source: Source,
    *,
    name: str = "",
    color: ColorMode = "auto",
    limits: ReadLimits = ReadLimits(),
) -> Scan:
    """Read an image, a DICOM file or series folder, or a NIfTI volume into a :class:`Scan`.

    Args:
        source: a file path, a folder of one DICOM series, or the bytes of an upload.
        name: the upload's original file name (also overrides the path's name), used only in
            messages and for the ``auto`` colour rule.
        color: how a multi-channel image becomes one channel (see :func:`to_single_channel`).
            ``auto``: a 3-channel TIFF named like an LGG kaggle_3m image
            (``TCGA_<site>_<id>_<date>_<N>.tif``, not ``..._mask.tif``) is that data set's
            pre-contrast T1 / FLAIR / post-contrast T1 stack, so its FLAIR channel (1) is taken;
            the file name is the only thing that tells it apart from an ordinary colour picture,
            which gets luminance. ``flair`` forces channel 1, ``gray`` forces luminance.
        limits: size limits checked before decoding.

    Returns:
        A Scan as documented there: images keep their dtype with ``spacing`` None; DICOM and
        NIfTI give ``is_volume`` True with spacing and a RAS+ affine. ``description`` records
        how the pixels were obtained (which channel, LUT, reorientation).

    Raises:
        InputError: for anything that cannot be read, saying what is accepted.
    """
    if color not in _COLOR_MODES:
        raise InputError(f"color must be one of {_COLOR_MODES}, got {color!r}")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or "upload"
        _check_size(label, len(data), limits)
        return _read_stream(BytesIO(data), data[:_HEAD_BYTES], label, name, color, limits)
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"read_scan takes a path or bytes, got {type(source).__name__}. "
                         f"Accepted: {ACCEPTED_FORMATS}.")
    path = Path(source)
    label = str(path)
    if not path.exists():
        raise InputError(f"{label}: no such file or folder. Accepted: {ACCEPTED_FORMATS}.")
    try:
        if path.is_dir():
            from metaseg_viewer.dicom import read_dicom_folder

            return read_dicom_folder(path, label=label, color=color, limits=limits)
        _check_size(label, path.stat().st_size, limits)
        with path.open("rb") as fh:
            head = fh.read(_HEAD_BYTES)
            fh.seek(0)
            return _read_stream(fh, head, label, name or path.name, color, limits)
    except OSError as err:  # permission denied, I/O error while opening
        raise InputError(f"{label}: cannot be opened ({err}). Accepted: {ACCEPTED_FORMATS}.") \
            from err


def read_scans(
    files: list[tuple[str, bytes]],
    *,
    color: ColorMode = "auto",
    limits: ReadLimits = ReadLimits(),
) -> list[tuple[str, Scan | InputError]]:
    """Several uploaded files as scans, each with a label: DICOM files of one series (same
    SeriesInstanceUID) together form one volume, sorted along the slice normal as a series
    folder would be; any other file — a lone DICOM image too — is one scan. A file that cannot
    be read gives its InputError in place of a scan, so the others are still usable.

    ``files`` are ``(name, bytes)``; results come in upload order (a series at the place of its
    first file).
    """
    if not files:
        raise InputError(f"no files given. Accepted: {ACCEPTED_FORMATS}.")
    from metaseg_viewer.dicom import series_uid

    groups: dict[str, list[int]] = {}
    for index, (_, data) in enumerate(files):
        if _detect(data[:_HEAD_BYTES]) in ("dicom", "dicom-raw"):
            uid = series_uid(data)
            if uid is not None:
                groups.setdefault(uid, []).append(index)
    series_of = {i: members for members in groups.values() if len(members) > 1 for i in members}
    results: list[tuple[str, Scan | InputError]] = []
    for index, (name, data) in enumerate(files):
        if index in series_of:
            if index == series_of[index][0]:
                results.append(_read_series([files[i] for i in series_of[index]], color, limits))
            continue
        try:
            results.append((name, read_scan(data, name=name, color=color, limits=limits)))
        except InputError as err:
            results.append((name, err))
    return results


def _read_series(files: list[tuple[str, bytes]], color: ColorMode, limits: ReadLimits) -> tuple[str, Scan | InputError]:
    from metaseg_viewer.dicom import read_dicom_uploads

    label = f"DICOM series ({len(files)} files)"
    try:
        return label, read_dicom_uploads(files, label=label, color=color, limits=limits)
    except InputError as err:
        return label, err


def to_single_channel(array: np.ndarray, mode: ColorMode) -> np.ndarray:
    """Reduce an ``(H, W)`` or ``(H, W, C)`` array to ``(H, W)`` in the same dtype.

    This is the one place where colour becomes a single channel, for files and for arrays from
    elsewhere alike. Rules, in order: 1 channel → itself; 2 channels (gray + alpha) → channel 0;
    4 channels → alpha dropped; then for 3 channels ``flair`` → channel 1 (FLAIR in the LGG
    kaggle_3m TIFFs), all channels equal → channel 0, otherwise luminance with ITU-R BT.601
    weights (0.299, 0.587, 0.114) computed in float and rounded back to the input dtype.
    ``auto`` here means ``gray``: only :func:`read_scan` has a file name to apply the LGG rule.
    """
    array = np.asarray(array)
    if mode not in _COLOR_MODES:
        raise InputError(f"mode must be one of {_COLOR_MODES}, got {mode!r}")
    if array.ndim == 2:
        return array
    if array.ndim != 3:
        raise InputError(f"expected an (H, W) or (H, W, C) array, got shape {array.shape}")
    return _reduce_channels(array, mode)[0]


def write_mask_png(mask2d: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Write a 2-D mask as an 8-bit PNG: nonzero → 255, zero → 0 (the LGG masks' convention).

    ``(1, H, W)`` is accepted as well, so a mask of a 2-D :class:`Scan` can be passed as is.
    """
    Path(path).write_bytes(encode_mask_png(mask2d))


def encode_mask_png(mask2d: np.ndarray) -> bytes:
    """The bytes :func:`write_mask_png` writes, for answers that never touch the disk."""
    mask = np.asarray(mask2d)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2 or 0 in mask.shape:
        raise InputError(f"write_mask_png needs a non-empty (H, W) mask, got shape {mask.shape}")
    buffer = BytesIO()
    Image.fromarray(np.where(mask != 0, 255, 0).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_mask_nifti(mask3d: np.ndarray, scan: Scan, path: str | os.PathLike[str]) -> None:
    """Write a ``(Z, H, W)`` label mask of ``scan`` as NIfTI (uint8 labels, ``.nii``/``.nii.gz``).

    With ``scan.source_affine`` (NIfTI input) the mask goes back to the source file's voxel order
    and affine, so it overlays the input in any viewer (a 2-D input gets a third axis of length
    1, a 4-D input with one volume is written 3-D). Otherwise, with ``scan.affine`` (DICOM), it
    is stored in ``(column, row, z)`` order with the affine's columns permuted to match, the
    order viewers expect; otherwise with a diagonal affine from the spacing that reads back unchanged.
    """
    from metaseg_viewer.nifti import write_mask

    write_mask(mask3d, scan, path)


def encode_mask_nifti(mask3d: np.ndarray, scan: Scan) -> bytes:
    """The bytes of a ``.nii.gz`` :func:`write_mask_nifti` would write (same geometry rules)."""
    from metaseg_viewer.nifti import mask_bytes

    return mask_bytes(mask3d, scan)


def encode_nifti(volume: np.ndarray, scan: Scan) -> bytes:
    """The bytes of a ``.nii.gz`` :func:`write_nifti` would write (same geometry rules)."""
    from metaseg_viewer.nifti import volume_bytes

    return volume_bytes(np.asarray(volume), scan)


def write_nifti(volume: np.ndarray, scan: Scan, path: str | os.PathLike[str]) -> None:
    """Write a ``(Z, H, W)`` array in ``scan``'s geometry as NIfTI, keeping its dtype.

    Same geometry rules as :func:`write_mask_nifti`; with neither affine, the diagonal affine
    encodes the array's own orientation convention so that :func:`read_scan` returns it as is.
    """
    from metaseg_viewer.nifti import write_volume

    write_volume(np.asarray(volume), scan, path)


# --- shared with dicom.py / nifti.py -----------------------------------------------------------

def _check_size(label: str, size: int, limits: ReadLimits) -> None:
    if size == 0:
        raise InputError(f"{label}: the file is empty (0 bytes). Accepted: {ACCEPTED_FORMATS}.")
    if size > limits.max_bytes:
        raise TooLargeError(f"{label}: {size} bytes is larger than the limit of {limits.max_bytes} "
                         f"bytes (ReadLimits.max_bytes). Accepted: files up to that size.")


def _check_dims(label: str, n_slices: int, height: int, width: int, limits: ReadLimits) -> None:
    """Refuse empty images and, before decoding, images larger than ``limits``."""
    if n_slices <= 0 or height <= 0 or width <= 0:
        raise InputError(f"{label}: the image has zero size ({n_slices} x {height} x {width}). "
                         "Accepted: images with at least one row, one column and one slice.")
    if height * width > limits.max_slice_pixels:
        raise TooLargeError(
            f"{label}: a slice of {height} x {width} pixels exceeds the limit of "
            f"{limits.max_slice_pixels} pixels (ReadLimits.max_slice_pixels); refused before "
            "decoding as a possible decompression bomb. Accepted: slices up to that size.")
    if n_slices > limits.max_slices:
        raise TooLargeError(
            f"{label}: {n_slices} slices exceed the limit of {limits.max_slices} "
            "(ReadLimits.max_slices); refused before decoding. Accepted: volumes up to that many slices.")
    if n_slices * height * width > limits.max_voxels:
        raise TooLargeError(
            f"{label}: {n_slices} x {height} x {width} voxels exceed the limit of "
            f"{limits.max_voxels} (ReadLimits.max_voxels); refused before decoding. "
            "Accepted: volumes up to that size.")


def _reduce_channels(array: np.ndarray, mode: ColorMode) -> tuple[np.ndarray, str]:
    """Apply the :func:`to_single_channel` rules to ``(..., C)``; return it with a note.

    Works on a whole stack at once so that every slice of a stack gets the same rule.
    """
    channels = array.shape[-1]
    if channels not in (1, 2, 3, 4):
        raise InputError(f"{channels} channels per pixel not accepted: give grayscale, "
                         "gray+alpha, RGB or RGBA")
    if channels == 1:
        return np.ascontiguousarray(array[..., 0]), "single channel"
    if channels == 2:
        return np.ascontiguousarray(array[..., 0]), "gray channel (0) of gray+alpha image"
    kind, dropped = ("RGBA", ", alpha dropped") if channels == 4 else ("RGB", "")
    rgb = array[..., :3]
    if mode == "flair":
        return np.ascontiguousarray(rgb[..., 1]), f"channel 1 (FLAIR) of {kind} image{dropped}"
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return np.ascontiguousarray(rgb[..., 0]), f"channel 0 of {kind} image with equal " \
                                                   f"channels{dropped}"
    return _luminance(rgb), f"luminance (BT.601) of {kind} image{dropped}"


def _luminance(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    lum = _BT601[0] * r + _BT601[1] * g + _BT601[2] * b  # not a matmul: .5 ties stay reproducible
    if np.issubdtype(rgb.dtype, np.integer):
        info = np.iinfo(rgb.dtype)
        return np.clip(np.rint(lum), info.min, info.max).astype(rgb.dtype)
    if rgb.dtype == bool:
        return lum >= 0.5
    return lum.astype(rgb.dtype)


def _detect(head: bytes) -> str | None:
    """Name the format from a file's first bytes; ``None`` when it is none we know."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[128:132] == b"DICM":
        return "dicom"
    nifti = _nifti_kind(head)
    if nifti:
        return nifti
    if head.startswith(b"\x1f\x8b"):
        try:
            inner = zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(head, 600)
        except zlib.error:
            inner = b""
        return "nifti-gz" if _nifti_kind(inner) == "nifti" else "gzip"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    # A DICOM file without preamble starts with a group 0x0002 or 0x0008 tag (little or big
    # endian), which no text file does; dicom.py then also demands pixel data.
    if len(head) >= 8 and (head[:2] in (b"\x02\x00", b"\x08\x00") or head[:2] == b"\x00\x08"):
        return "dicom-raw"
    return None


def _nifti_kind(head: bytes) -> str | None:
    if len(head) < 12:
        return None
    for order in "<>":
        size = struct.unpack(order + "i", head[:4])[0]
        if size == 348 and len(head) < 348:
            return "nifti"  # a truncated header; the reader says so
        if size == 348:
            magic = head[344:348]
            if magic == b"n+1\x00":
                return "nifti"
            if magic == b"ni1\x00":
                return "nifti-pair"
        if size == 540 and head[4:12] == b"n+2\x00\r\n\x1a\n":
            return "nifti"
        if size == 540 and head[4:8] == b"ni2\x00":
            return "nifti-pair"
    return None


# --- dispatch and 2-D images -------------------------------------------------------------------

def _read_stream(fh: BinaryIO, head: bytes, label: str, file_name: str, color: ColorMode,
                 limits: ReadLimits) -> Scan:
    kind = _detect(head)
    if kind in ("png", "jpeg"):
        return _read_pillow(fh, head, label, kind, color, limits)
    if kind == "tiff":
        return _read_tiff(fh, label, file_name, color, limits)
    if kind in ("dicom", "dicom-raw"):
        from metaseg_viewer.dicom import read_dicom_file

        scan = read_dicom_file(fh, label=label, color=color, limits=limits,
                               preamble=kind == "dicom")
        if scan is not None:
            return scan
        kind = None
    if kind in ("nifti", "nifti-gz"):
        from metaseg_viewer.nifti import read_nifti

        stream = gzip.GzipFile(fileobj=fh, mode="rb") if kind == "nifti-gz" else fh
        return read_nifti(stream, label=label, limits=limits)
    problems = {
        "nifti-pair": "a NIfTI header of a .hdr/.img pair (the voxels are in another file); "
                      "convert it to a single .nii or .nii.gz",
        "gzip": "a gzip file that does not hold a NIfTI volume",
        "zip": "a ZIP archive; unpack it and give the image, volume or series folder inside",
    }
    problem = problems.get(kind or "", "not an image or volume format this reader knows")
    raise UnsupportedFormatError(f"{label}: {problem}. Accepted: {ACCEPTED_FORMATS}.")


def _read_pillow(fh: BinaryIO, head: bytes, label: str, kind: str, color: ColorMode,
                 limits: ReadLimits) -> Scan:
    fmt = kind.upper()
    if kind == "png" and len(head) >= 24:  # IHDR: check the size before Pillow sees it
        width, height = struct.unpack(">II", head[16:24])
        _check_dims(label, 1, height, width, limits)
    try:
        with warnings.catch_warnings():
            # The size was checked against our own limit; Pillow's global one is not changed.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fh, formats=[fmt]) as image:
                width, height = image.size
                _check_dims(label, 1, height, width, limits)
                if kind == "png" and len(head) > 25 and head[24] == 16 and head[25] in (2, 4, 6):
                    fh.seek(0)
                    array = _decode_png16_colour(fh.read(), label)
                else:
                    image.load()
                    array = _pillow_array(image)
    except InputError:
        raise
    except Image.DecompressionBombError as err:
        raise TooLargeError(f"{label}: {err}; refused as a possible decompression bomb. "
                         "Accepted: slices up to ReadLimits.max_slice_pixels.") from err
    except _DECODE_ERRORS as err:
        raise InputError(f"{label}: the {fmt} file is truncated or corrupt ({err}). "
                         f"Accepted: complete {ACCEPTED_FORMATS}.") from err
    description = f"{fmt} image"
    if array.ndim == 3:
        array, note = _reduce_channels(array, "flair" if color == "flair" else "gray")
        description += f", {note}"
    return Scan(pixels=array[None], source=label, description=description)


def _pillow_array(image: Image.Image) -> np.ndarray:
    """Pixels of a loaded Pillow image in their own dtype: (H, W) or (H, W, C)."""
    mode = image.mode
    if mode == "1":
        image = image.convert("L")
    elif mode in ("P", "PA"):
        transparent = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if transparent else "RGB")
    elif mode not in ("L", "LA", "RGB", "RGBA", "I", "F") and not mode.startswith("I;16"):
        image = image.convert("RGB")  # CMYK, YCbCr, ... JPEGs
    array = np.asarray(image)
    if array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))
    if mode == "I" and image.format == "PNG" and array.size and array.min() >= 0 \
            and array.max() <= 0xFFFF:
        array = array.astype(np.uint16)  # 16-bit gray PNG opened as 32-bit by older Pillow
    return array


def _decode_png16_colour(data: bytes, label: str) -> np.ndarray:
    """16-bit colour PNGs, which Pillow would reduce to 8 bits; OpenCV keeps 16."""
    import cv2  # a dependency, imported here because only this rare case needs it

    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise InputError(f"{label}: the 16-bit colour PNG is truncated or corrupt. "
                         f"Accepted: complete {ACCEPTED_FORMATS}.")
    if array.ndim == 3:  # OpenCV's BGR(A) order → RGB(A)
        array = array[..., [2, 1, 0, 3][: array.shape[2]]] if array.shape[2] in (3, 4) else array
    return np.ascontiguousarray(array)


def _read_tiff(fh: BinaryIO, label: str, file_name: str, color: ColorMode,
               limits: ReadLimits) -> Scan:
    try:
        with tifffile.TiffFile(fh) as tif:
            if not tif.series:
                raise InputError(f"{label}: the TIFF file holds no image. "
                                 f"Accepted: {ACCEPTED_FORMATS}.")
            # Pages written one by one can form one series each: stack those like the first.
            first = tif.series[0]
            if 0 in first.shape or 0 in first.keyframe.shape:
                _check_dims(label, 1, 0, 0, limits)
            series = [s for s in tif.series if (s.axes, s.shape, s.dtype) ==
                      (first.axes, first.shape, first.dtype)]
            axes, shape = "I" + first.axes, (len(series), *first.shape)
            if "Y" not in axes or "X" not in axes:
                raise InputError(f"{label}: TIFF axes {axes!r} are not an image. "
                                 f"Accepted: {ACCEPTED_FORMATS}.")
            height, width = shape[axes.index("Y")], shape[axes.index("X")]
            n_slices = int(np.prod([n for n, a in zip(shape, axes) if a not in "YXS"]))
            _check_dims(label, n_slices, height, width, limits)
            page = first.keyframe
            photometric, bits = int(page.photometric), int(page.bitspersample)
            colormap = page.colormap
            array = np.stack([s.asarray() for s in series])
            order = [i for i, a in enumerate(axes) if a not in "YXS"]
            order += [axes.index("Y"), axes.index("X")] + [axes.index(a) for a in "S" if a in axes]
            channels = (shape[axes.index("S")],) if "S" in axes else ()
            array = array.transpose(order).reshape((n_slices, height, width) + channels)
            array, notes = _tiff_photometric(array, photometric, bits, colormap, label)
    except InputError:
        raise
    except _DECODE_ERRORS as err:
        raise InputError(f"{label}: the TIFF file is truncated or corrupt ({err}). "
                         f"Accepted: complete {ACCEPTED_FORMATS}.") from err
    if array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))
    if array.ndim == 4:
        lgg = color == "auto" and array.shape[-1] == 3 and bool(_LGG_NAME.match(file_name))
        array, note = _reduce_channels(array, "flair" if lgg or color == "flair" else "gray")
        notes.append("FLAIR channel (1) of LGG 3-channel TIFF" if lgg else note)
    if n_slices > 1:
        notes.append(f"{n_slices}-page stack, pages as slices (no spacing known)")
    description = ", ".join(["TIFF image"] + notes)
    return Scan(pixels=np.ascontiguousarray(array), source=label, description=description)


def _tiff_photometric(array: np.ndarray, photometric: int, bits: int,
                      colormap: np.ndarray | None, label: str) -> tuple[np.ndarray, list[str]]:
    """Undo palette and min-is-white storage so that values mean signal, bright = high."""
    notes: list[str] = []
    if array.dtype == bool:
        array, bits = array.astype(np.uint8) * np.uint8(255), 8
    if photometric == tifffile.PHOTOMETRIC.PALETTE and colormap is not None:
        rgb = np.moveaxis(colormap, 0, -1)[array]
        array = (rgb // 257).astype(np.uint8) if np.all(rgb % 257 == 0) else rgb
        notes.append("palette expanded")
    elif photometric == tifffile.PHOTOMETRIC.MINISWHITE:
        if np.issubdtype(array.dtype, np.unsignedinteger):
            array = (np.asarray((1 << bits) - 1, array.dtype) - array).astype(array.dtype)
            notes.append("min-is-white inverted")
    elif photometric not in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.RGB,
                             tifffile.PHOTOMETRIC.YCBCR):
        name = next((p.name for p in tifffile.PHOTOMETRIC if p == photometric), photometric)
        raise InputError(f"{label}: TIFF photometric interpretation {name} not accepted. "
                         "Accepted: grayscale, RGB(A) or palette TIFF.")
    return array, notes
