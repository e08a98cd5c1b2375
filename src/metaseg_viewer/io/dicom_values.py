"""Element values of possibly corrupt DICOM files, checked before they are used.

pydicom hands over whatever a file holds: an element meant to be one number can hold several
(a ``MultiValue``) or text, a sequence can arrive as another VR, a required element can be
missing. Used as they are, such values raise TypeError or AttributeError — the types that also
mean a bug. These helpers turn them into InputError or ValueError first, so the DICOM reader
needs to catch only :data:`~metaseg_viewer.io.dicom.DICOM_ERRORS`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pydicom.datadict import dictionary_description, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag

from metaseg_viewer.io.decoding import corrupt

#: The Image Pixel elements that pydicom's decoders read, each a single number
#: (``pydicom.pixels.common.RunnerBase._validate_options``); PlanarConfiguration is required for
#: colour only, NumberOfFrames is optional.
_PIXEL_NUMBERS = ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored",
                 "PixelRepresentation")
#: The sequences inside functional groups that the DICOM reader looks attributes up in.
_GROUP_SEQUENCES = ("PlanePositionSequence", "PlaneOrientationSequence", "PixelMeasuresSequence",
                   "PixelValueTransformationSequence")


def check_pixel_module(ds: Dataset) -> None:
    """Raise ValueError where pydicom's pixel decoders would raise AttributeError (a required
    Image Pixel element missing) or TypeError (one with several values or of another VR), with
    pydicom's wording; those two types are left to mean a bug."""
    required = [*_PIXEL_NUMBERS, "PhotometricInterpretation"]
    if ds.get("SamplesPerPixel") == 3:
        required.append("PlanarConfiguration")
    for keyword in (*required, "NumberOfFrames"):
        value = ds.get(keyword)
        element = f"{Tag(tag_for_keyword(keyword))} '{dictionary_description(keyword)}'"
        if value is None or value == "":
            if keyword in required:
                raise ValueError(f"Missing required element: {element}")
            continue
        kind = str if keyword == "PhotometricInterpretation" else (int, float)
        if not isinstance(value, kind):
            raise ValueError(f"A {element} value of {value!r} is invalid, it must be one value")


def check_functional_groups(ds: Dataset, label: str) -> None:
    """Refuse functional groups that are not sequences of items (a corrupt VR), which the
    reader's look-up of per-frame attributes could not walk."""
    for groups in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        for item in _sequence(ds.get(groups), groups, label):
            for name in _GROUP_SEQUENCES:
                _sequence(item.get(name), name, label)


def _sequence(value: Any, keyword: str, label: str) -> Sequence[Dataset]:
    """An element's value as a sequence of items, empty when absent; anything else is corrupt."""
    if value is None:
        return []
    if not isinstance(value, DicomSequence):
        raise corrupt(label, "DICOM", f"{keyword} is {type(value).__name__}, not a sequence")
    return value


def number(value: Any, keyword: str, label: str) -> float | None:
    """An element's value as one number, None when absent or empty; several values or text where
    DICOM has one number mean a corrupt file."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise corrupt(label, "DICOM", f"{keyword} is {value!r}, not one number") from err


def integer(value: Any, keyword: str, label: str, default: int) -> int:
    """:func:`number` as an int, ``default`` when absent or empty."""
    value = number(value, keyword, label)
    if value is not None and not math.isfinite(value):
        raise corrupt(label, "DICOM", f"{keyword} is {value}, not an integer")
    return default if value is None else int(value)
