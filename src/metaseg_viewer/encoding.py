"""Arrays in JSON: masks run-length encoded, probability maps quantised to 8 bits.

The server's JSON answers use these and its clients (the Streamlit page) decode them with the
same functions. Mask convention: the mask is flattened in C order (for ``(Z, H, W)``: slice, then row, then column)
and ``counts`` alternates runs of 0 and 1, starting with a (possibly empty) run of 0. The counts
sum to the number of pixels. This is COCO's uncompressed RLE except for the order (COCO uses
Fortran order), chosen so a NumPy ``reshape(shape)`` restores the array.
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

import numpy as np

from metaseg_viewer.errors import InputError


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """``{"shape": [...], "order": "C", "counts": [...]}`` of a mask (nonzero = lesion)."""
    flat = np.asarray(mask).reshape(-1) != 0
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"shape": list(np.shape(mask)), "order": "C", "counts": counts}


def rle_decode(encoded: dict[str, Any]) -> np.ndarray:
    """The boolean mask of :func:`rle_encode`'s output; a malformed encoding is an InputError."""
    try:
        shape = tuple(int(n) for n in encoded["shape"])
        counts = np.asarray(encoded["counts"], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"not a run-length encoded mask ({exc}); expected keys shape and counts") from exc
    if encoded.get("order", "C") != "C" or counts.ndim != 1 or (counts < 0).any() or any(n < 0 for n in shape):
        raise InputError("run-length encoding must have order 'C', non-negative counts and shape")
    if int(counts.sum()) != int(np.prod(shape)):
        raise InputError(f"run lengths sum to {int(counts.sum())}, but shape {shape} has {int(np.prod(shape))} pixels")
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape(shape)


def encode_probabilities(probabilities: np.ndarray) -> dict[str, Any]:
    """``{"shape", "encoding": "uint8-zlib-base64", "data"}``: values in [0, 1] rounded to k/255.

    Thresholding the decoded map can differ from the original only for pixels within 1/510 of
    the threshold.
    """
    quantised = np.rint(np.clip(np.asarray(probabilities, np.float32), 0, 1) * 255).astype(np.uint8)
    data = base64.b64encode(zlib.compress(quantised.tobytes(), 6)).decode("ascii")
    return {"shape": list(quantised.shape), "encoding": "uint8-zlib-base64", "data": data}


def decode_probabilities(encoded: dict[str, Any]) -> np.ndarray:
    """float32 probabilities from :func:`encode_probabilities`; malformed input is an InputError."""
    try:
        shape = tuple(int(n) for n in encoded["shape"])
        raw = zlib.decompress(base64.b64decode(encoded["data"], validate=True))
    except (KeyError, TypeError, ValueError, zlib.error) as exc:
        raise InputError(f"not an encoded probability map ({exc}); expected keys shape and data") from exc
    if encoded.get("encoding") != "uint8-zlib-base64" or len(raw) != int(np.prod(shape)):
        raise InputError(f"probability map of {len(raw)} values does not fit shape {shape}")
    return np.frombuffer(raw, np.uint8).reshape(shape).astype(np.float32) / 255
