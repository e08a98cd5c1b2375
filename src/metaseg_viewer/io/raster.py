"""2-D raster images: PNG and JPEG through Pillow, TIFF (pages, stacks, float) through tifffile.

Pixels keep their dtype (16-bit colour PNGs are decoded by OpenCV, which Pillow would reduce to
8 bits); palette and min-is-white storage are undone so that values mean signal. Called through
:func:`metaseg_viewer.io.read_scan`.
"""

from __future__ import annotations

import lzma
import re
import struct
import warnings
import zlib
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import tifffile
from PIL import Image

from metaseg_viewer.errors import InputError, TooLargeError
from metaseg_viewer.io.channels import ColorMode, check_channels, reduce_channels
from metaseg_viewer.io.decoding import ErrorTypes, corrupt, decoding
from metaseg_viewer.io.limits import ACCEPTED_FORMATS, ReadLimits, check_dims
from metaseg_viewer.scan import Scan

#: What Pillow raises on truncated or corrupt PNG/JPEG data (Image.DecompressionBombError is
#: handled on its own): OSError from Image.open (PIL.UnidentifiedImageError is one) and from
#: ImageFile.load ("image file is truncated", decoder errors); SyntaxError from the PNG chunk
#: parser ("broken PNG file"); ValueError from header fields it refuses; EOFError, struct.error
#: and zlib.error from short or corrupt chunks that its plugins read directly.
PILLOW_ERRORS: ErrorTypes = (OSError, SyntaxError, ValueError, EOFError, struct.error,
                              zlib.error)

#: What tifffile raises on truncated or corrupt TIFF data, each type seen by fuzzing valid files
#: (as tests/test_io.py does): tifffile.TiffFileError (a ValueError) for bad structure and tags;
#: ValueError for short reads and strips that do not fit; OSError from its file handle;
#: struct.error from packed tag values; zlib.error and lzma.LZMAError from corrupt compressed
#: strips; KeyError for unknown enum values (predictor, compression) and IndexError for tags of
#: the wrong count; ZeroDivisionError and OverflowError from arithmetic on zero or huge tag
#: values; TypeError from tags that hold a tuple where a number is due; AssertionError from its
#: structure checks; RuntimeError from pages that disagree ("incompatible keyframe") and deep IFD
#: chains (RecursionError is one); NotImplementedError and ImportError for bit depths and codecs
#: (zstd, ...) that need the imagecodecs package. Because TypeError and AssertionError are also
#: what bugs raise, only tifffile's own calls run under this tuple (see :func:`read_tiff`).
TIFF_ERRORS: ErrorTypes = (
    tifffile.TiffFileError, ValueError, OSError, struct.error, zlib.error, lzma.LZMAError,
    KeyError, IndexError, ZeroDivisionError, OverflowError, TypeError, AssertionError,
    RuntimeError, NotImplementedError, ImportError)

#: File names of the LGG kaggle_3m images (``TCGA_<site>_<id>_<date>_<N>.tif``, not ``_mask``).
_LGG_NAME = re.compile(r"^TCGA_[A-Za-z0-9]+_[A-Za-z0-9]+_\d{8}_\d+\.tiff?$", re.IGNORECASE)


def read_pillow(fh: BinaryIO, head: bytes, label: str, kind: str, color: ColorMode,
                limits: ReadLimits) -> Scan:
    """Read a PNG or JPEG (``kind`` is ``png`` or ``jpeg``) as a one-slice Scan."""
    fmt = kind.upper()
    if kind == "png":  # IHDR: check the size before Pillow sees it
        if len(head) < 26 or head[8:16] != b"\x00\x00\x00\rIHDR":
            raise corrupt(label, fmt, "no IHDR header chunk after the PNG signature")
        width, height = struct.unpack(">II", head[16:24])
        depth, colour = head[24], head[25]
        channels = {0: 1, 2: 3, 3: 4, 4: 2, 6: 4}.get(colour, 4)  # a palette expands to RGB(A)
        check_dims(label, 1, height, width, limits, channels * max(1, depth // 8))
    try:
        with warnings.catch_warnings():
            # The size was checked against our own limit; Pillow's global one is not changed.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fh, formats=[fmt]) as image:
                width, height = image.size
                sample = 4 if image.mode in ("I", "F") else 2 if "16" in image.mode else 1
                check_dims(label, 1, height, width, limits, len(image.getbands()) * sample)
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
    except PILLOW_ERRORS as err:
        raise corrupt(label, fmt, err) from err
    description = f"{fmt} image"
    if array.ndim == 3:
        array, note = reduce_channels(array, "flair" if color == "flair" else "gray")
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


@dataclass(frozen=True)
class _TiffLayout:
    """What :func:`read_tiff` needs from a TIFF's headers, read while the decoder is guarded."""

    series: list[tifffile.TiffPageSeries]  # stacked as slices: same axes, shape, dtype as the first
    axes: str  # of the stack: "I" (the series) + the first series' axes
    shape: tuple[int, ...]
    empty: bool  # the first series or its first page has a zero-length axis
    photometric: int
    bits: int
    colormap: np.ndarray | None
    itemsize: int  # bytes per sample
    skipped: tuple[int, int]  # (pages of another shape or type than the first's, all pages)
    lgg_layout: bool  # laid out as the LGG kaggle_3m image TIFFs are (see _is_lgg_layout)


def read_tiff(fh: BinaryIO, label: str, file_name: str, color: ColorMode,
              limits: ReadLimits) -> Scan:
    """Read a TIFF: its pages (or same-shaped series) become the slices of one Scan.

    ``file_name`` decides the ``auto`` colour rule (see :func:`metaseg_viewer.io.read_scan`).
    Only tifffile's own work runs inside :func:`decoding`: its errors for corrupt files include
    TypeError and friends (see :data:`TIFF_ERRORS`), which must not hide a bug in the code here.
    """
    with decoding(label, "TIFF", TIFF_ERRORS):
        tif = tifffile.TiffFile(fh)
    with tif:
        with decoding(label, "TIFF", TIFF_ERRORS):
            layout = _tiff_layout(tif)
        if layout is None:
            raise InputError(f"{label}: the TIFF file holds no image. "
                             f"Accepted: {ACCEPTED_FORMATS}.")
        if layout.empty:
            check_dims(label, 1, 0, 0, limits)
        axes, shape = layout.axes, layout.shape
        if "Y" not in axes or "X" not in axes:
            raise InputError(f"{label}: TIFF axes {axes!r} are not an image. "
                             f"Accepted: {ACCEPTED_FORMATS}.")
        height, width = shape[axes.index("Y")], shape[axes.index("X")]
        n_slices = int(np.prod([n for n, a in zip(shape, axes) if a not in "YXS"]))
        channels = (shape[axes.index("S")],) if "S" in axes else ()
        check_dims(label, n_slices, height, width, limits, layout.itemsize * (channels[0] if channels else 1))
        if channels:
            check_channels(channels[0])
        with decoding(label, "TIFF", TIFF_ERRORS):
            array = np.stack([s.asarray() for s in layout.series])
    if array.shape != shape:
        raise corrupt(label, "TIFF", f"pixels of shape {array.shape}, header says {shape}")
    order = [i for i, a in enumerate(axes) if a not in "YXS"]
    order += [axes.index("Y"), axes.index("X")] + [axes.index(a) for a in "S" if a in axes]
    array = array.transpose(order).reshape((n_slices, height, width) + channels)
    array, notes = _tiff_photometric(array, layout.photometric, layout.bits, layout.colormap,
                                     label)
    if array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))
    if array.ndim == 4:
        # The content decides; the name only breaks the tie of a 3-channel 8-bit TIFF laid out otherwise.
        lgg_by = "its layout" if layout.lgg_layout else "its file name" if _LGG_NAME.match(file_name) else ""
        lgg = color == "auto" and array.shape[-1] == 3 and array.dtype == np.uint8 and bool(lgg_by)
        array, note = reduce_channels(array, "flair" if lgg or color == "flair" else "gray")
        notes.append(f"FLAIR channel (1) of an LGG kaggle_3m 3-channel TIFF (recognised by {lgg_by})" if lgg else note)
    if n_slices > 1:
        notes.append(f"{n_slices}-page stack, pages as slices (no spacing known)")
    description = ", ".join(["TIFF image"] + notes)
    skipped, total = layout.skipped
    warned = (f"{skipped} of {total} TIFF pages have another size or type than the first page "
              f"({width} x {height}) and were skipped; only the {total - skipped} pages like the first are "
              "segmented",) if skipped else ()
    return Scan(pixels=np.ascontiguousarray(array), source=label, description=description, warnings=warned)


def _tiff_layout(tif: tifffile.TiffFile) -> _TiffLayout | None:
    """The stack's layout from the headers (tifffile parses them lazily, here); None: no image."""
    if not tif.series:
        return None
    # Pages written one by one can form one series each: stack those like the first.
    first = tif.series[0]
    page = first.keyframe
    series = [s for s in tif.series
              if (s.axes, s.shape, s.dtype) == (first.axes, first.shape, first.dtype)]
    total = sum(len(s.pages) for s in tif.series)
    kept = sum(len(s.pages) for s in series)
    return _TiffLayout(series=series, axes="I" + first.axes, shape=(len(series), *first.shape),
                       empty=0 in first.shape or 0 in page.shape,
                       photometric=int(page.photometric), bits=int(page.bitspersample),
                       colormap=page.colormap, itemsize=first.dtype.itemsize, skipped=(total - kept, total),
                       lgg_layout=total == 1 and _is_lgg_layout(page))


def _is_lgg_layout(page: tifffile.TiffPage) -> bool:
    """Whether a page is laid out as every image TIFF of the LGG kaggle_3m data set is: one
    256 x 256 RGB page of 8-bit samples, uncompressed, interleaved, in strips of 11 rows, pixels
    right after the 8-byte header. This is how the same bytes get the same channel (FLAIR) under
    any file name; an ordinary RGB TIFF written the same way is also read as its channel 1."""
    return (page.shape == (256, 256, 3) and page.dtype == np.uint8
            and page.compression == tifffile.COMPRESSION.NONE
            and page.planarconfig == tifffile.PLANARCONFIG.CONTIG
            and page.photometric == tifffile.PHOTOMETRIC.RGB
            and page.rowsperstrip == 11 and bool(page.dataoffsets) and page.dataoffsets[0] == 8)


def _tiff_photometric(array: np.ndarray, photometric: int, bits: int,
                      colormap: np.ndarray | None, label: str) -> tuple[np.ndarray, list[str]]:
    """Undo palette and min-is-white storage so that values mean signal, bright = high."""
    notes: list[str] = []
    if array.dtype == bool:
        array, bits = array.astype(np.uint8) * np.uint8(255), 8
    if photometric == tifffile.PHOTOMETRIC.PALETTE and colormap is not None:
        lut = np.moveaxis(colormap, 0, -1)
        if array.dtype.kind not in "ui" or (array.size and int(array.max()) >= len(lut)):
            raise InputError(f"{label}: the TIFF palette indices do not fit its colormap of "
                             f"{len(lut)} entries. Accepted: complete {ACCEPTED_FORMATS}.")
        rgb = lut[array]
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
