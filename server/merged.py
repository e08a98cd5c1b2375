"""One network call shared by several requests, on the core's three steps of a prediction.

:meth:`Predictor.prepare` turns a request's slice into network input, :meth:`Predictor.member_maps`
runs each member once over the slices of several requests, and :meth:`Predictor.predict_prepared`
gives each request the :class:`Prediction` that :meth:`Predictor.predict` would have. Requests
for the same loaded model with the same TTA make the same network calls, so the server's
:class:`server.jobs.Batcher` merges them under a :class:`MergedCall` key. This module only adds
what the server needs around those steps: the key, and the timing and batch size of a share.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from metaseg_viewer import inference
from metaseg_viewer.inference import Predictor
from metaseg_viewer.prediction import Prediction
from metaseg_viewer.scan import Scan


@dataclass(frozen=True)
class Prepared:
    """A request's network input for ``call``; ``seconds``: the time preparing took."""

    call: MergedCall
    core: inference.Prepared
    seconds: float


@dataclass(frozen=True)
class MergedCall:
    """The network calls a request needs: the loaded model (its members, device, precision) and
    TTA. Equal calls may be merged: this is the batcher's key."""

    predictor: Predictor
    tta: bool

    def prepare(self, pixels: np.ndarray) -> Prepared:
        start = time.perf_counter()
        return Prepared(self, self.predictor.prepare(pixels), time.perf_counter() - start)

    def __call__(self, batch: list[Prepared]) -> list[Share]:
        """Run every member once on all of ``batch``'s slices; one :class:`Share` per entry, in order."""
        start = time.perf_counter()
        maps = self.predictor.member_maps([p.core for p in batch], self.tta)
        seconds = time.perf_counter() - start
        slices = sum(p.core.slices for p in batch)
        return [Share(p, m, slices, p.seconds + seconds) for p, m in zip(batch, maps, strict=True)]


@dataclass(frozen=True)
class Share:
    """A request's part of a merged call: each member's maps in member order; ``batch_slices``
    counts the slices of the whole call; ``seconds`` is preparing plus the call."""

    prepared: Prepared
    maps: tuple[np.ndarray, ...]
    batch_slices: int
    seconds: float

    def prediction(self, scan: Scan, threshold: float | None = None,
                   min_lesion_size: int | None = None) -> Prediction:
        """What ``Predictor.predict(scan, threshold, tta, min_lesion_size)`` returns for the scan
        this share was prepared from (``None`` settings come from the model card)."""
        call = self.prepared.call
        return call.predictor.predict_prepared(scan, self.prepared.core, self.maps, threshold, call.tta,
                                               min_lesion_size, self.seconds)
