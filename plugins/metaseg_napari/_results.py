"""A segmentation the widget keeps: probabilities, the threshold's mask, and the user's edits.

No Qt here: the rules that protect manual edits are plain functions, tested on arrays.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from metaseg_viewer.config import InferenceConfig
from metaseg_viewer.inference import Predictor, binarize
from metaseg_viewer.scan import Scan

_predictors: dict[str, Predictor] = {}
_load_lock = threading.Lock()


class Cancelled(Exception):
    """The user pressed Cancel; the worker stops at the next batch."""


def predictor(name: str) -> Predictor:
    """Models load once per napari session (the first Segment pays for it, in the worker)."""
    with _load_lock:
        if name not in _predictors:
            _predictors[name] = Predictor.load(name)
        return _predictors[name]


def run_model(name: str, pixels: np.ndarray, tta: bool | None, progress: Callable[[int, int], None],
              cancel: threading.Event) -> tuple[np.ndarray, str, InferenceConfig]:
    """Probabilities of ``pixels`` ``(Z, H, W)``; runs in a worker thread, never touches Qt."""
    model = predictor(name)

    def report(done: int, total: int) -> None:
        if cancel.is_set():
            raise Cancelled("segmentation cancelled")
        progress(done, total)

    use_tta = model.defaults.tta if tta is None else tta
    probabilities, _ = model.probabilities(pixels, use_tta, report)
    return probabilities.astype(np.float32), model.version, model.defaults


@dataclass
class Segmentation:
    """One model's result on one image layer. ``derived`` is what the current threshold gives
    (before edits): any labels pixel that differs from it is a manual edit."""

    model: str
    version: str
    scan: Scan
    probabilities: np.ndarray  # float32 (Z, H, W)
    threshold: float
    min_size: int
    derived: np.ndarray  # bool (Z, H, W)

    @classmethod
    def create(cls, model: str, version: str, scan: Scan, probabilities: np.ndarray,
               defaults: InferenceConfig) -> Segmentation:
        derived = binarize(probabilities, defaults.threshold, defaults.min_lesion_size, volume=scan.is_volume)
        return cls(model, version, scan, probabilities, defaults.threshold, defaults.min_lesion_size, derived)

    def labels(self) -> np.ndarray:
        return self.derived.astype(np.uint8)

    def rethreshold(self, threshold: float, labels: np.ndarray, keep_edits: bool = True) -> np.ndarray:
        """Labels for a new threshold from the stored probabilities (no network); where the user
        edited ``labels`` (they differ from the old threshold's mask) their pixels are kept."""
        new = binarize(self.probabilities, threshold, self.min_size, volume=self.scan.is_volume)
        result = new.astype(np.uint8)
        if keep_edits:
            edited = (labels != 0) != self.derived
            result = np.where(edited, labels, result).astype(np.uint8)
        self.derived, self.threshold = new, threshold
        return result

    def update_slice(self, z: int, probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Put a newly segmented slice ``z`` in; other slices (and their edits) stay as they are."""
        self.probabilities[z] = probabilities
        new = binarize(self.probabilities[z : z + 1], self.threshold, self.min_size)[0]
        self.derived[z] = new
        labels = labels.copy()
        labels[z] = new
        return labels
