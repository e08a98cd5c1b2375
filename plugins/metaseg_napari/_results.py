"""A segmentation the widget keeps: the core's Prediction for one image layer, and the user's edits.

No Qt here. Thresholding and the edit-keeping rule are the core's
(:meth:`metaseg_viewer.prediction.Prediction.rethreshold`, :func:`~metaseg_viewer.prediction.carry_edits`);
this module only holds them per labels layer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from metaseg_viewer.inference import Predictor, default_device
from metaseg_viewer.prediction import Prediction, carry_edits
from metaseg_viewer.scan import Scan

_predictors: dict[tuple[str, str], Predictor] = {}
_load_lock = threading.Lock()
#: Slices per network call on the CPU. Cancel is checked between calls, so one call must end well
#: within 2 s; tests/test_napari_views.py holds Cancel under 2 s in fp32, the slowest precision.
#: A GPU keeps the core's batch.
CPU_BATCH_SIZE = 1


class Cancelled(Exception):
    """The user pressed Cancel; the worker stops at the next batch."""


def predictor(name: str, precision: str = "auto", loading: Callable[[str], None] = lambda _: None) -> Predictor:
    """Models load once per napari session and precision (the first Segment pays for it, in the
    worker, calling ``loading(name)`` first)."""
    with _load_lock:
        if (name, precision) not in _predictors:
            loading(name)
            batch = CPU_BATCH_SIZE if default_device() == "cpu" else 8
            _predictors[name, precision] = Predictor.load(name, precision=precision, batch_size=batch)
        return _predictors[name, precision]


def run_model(name: str, scan: Scan, tta: bool | None, progress: Callable[[int, int], None],
              cancel: threading.Event, precision: str = "auto",
              loading: Callable[[str], None] = lambda _: None) -> Prediction:
    """The model card's prediction of ``scan`` (``tta`` None: the card's), an ensemble's with its
    members' probabilities; runs in a worker thread, never touches Qt. ``loading`` is called
    before a model that is not loaded yet loads; ``cancel`` is checked after it and every batch."""

    def report(done: int, total: int) -> None:
        if cancel.is_set():
            raise Cancelled("segmentation cancelled")
        progress(done, total)

    model = predictor(name, precision, loading)
    report(0, len(model.members) * scan.n_slices)
    return model.predict(scan, tta=tta, progress=report, keep_members=True)


@dataclass
class LayerResult:
    """One model's prediction on one image layer (``image``: its name). ``prediction.mask`` is what
    the current settings give before edits: any labels pixel that differs from it is a manual edit."""

    image: str
    model: str
    scan: Scan
    prediction: Prediction

    @property
    def probabilities(self) -> np.ndarray:
        return self.prediction.probabilities

    @property
    def threshold(self) -> float:
        return self.prediction.settings.threshold

    def labels(self) -> np.ndarray:
        return self.prediction.mask.astype(np.uint8)

    def rethreshold(self, threshold: float, labels: np.ndarray, keep_edits: bool = True) -> np.ndarray:
        """Labels ``(Z, H, W)`` for a new threshold from the stored probabilities (no network);
        with ``keep_edits`` the pixels the user changed in ``labels`` keep the user's value."""
        before, self.prediction = self.prediction, self.prediction.rethreshold(threshold)
        if not keep_edits:
            return self.labels()
        return carry_edits(labels, before.mask, self.prediction.mask)

    def update_slice(self, z: int, probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Put a newly segmented slice ``z`` in: that slice shows the new result; elsewhere the
        user's edits are kept (for a volume a 3-D component through ``z`` may change there too)."""
        before, self.prediction = self.prediction, self.prediction.with_slice(z, probabilities)
        result = carry_edits(labels, before.mask, self.prediction.mask)
        result[z] = self.prediction.mask[z]
        return result
