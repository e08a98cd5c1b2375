"""Run-length encoding of binary masks, for JSON answers (the server's, read back by any client).

Convention: the mask is flattened in C order (for ``(Z, H, W)``: slice, then row, then column)
and ``counts`` alternates runs of 0 and 1, starting with a (possibly empty) run of 0. The counts
sum to the number of pixels. This is COCO's uncompressed RLE except for the order (COCO uses
Fortran order), chosen so a NumPy ``reshape(shape)`` restores the array.
"""

from __future__ import annotations

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
