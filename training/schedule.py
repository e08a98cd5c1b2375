"""The schedule of a run: where it stands (by epochs, or by wall-clock under ``--minutes``), the
learning rate there, when it trains on whole slices, validates and ends.

Positions are in epochs done (a float inside an epoch); progress runs from 0 to 1. A time budget
keeps the whole schedule (warm-up, crops, whole slices, decay) inside it however busy the machine
is: progress is then the larger of the epochs done and the share of the budget spent.
"""

from __future__ import annotations

import math
import time

from training.config import TrainConfig


def lr_at(cfg: TrainConfig, progress: float) -> float:
    """Linear warm-up, then cosine decay to 1% at the end of the schedule (progress 0..1)."""
    if progress < cfg.warmup_fraction:
        return cfg.lr * max(0.05, progress / cfg.warmup_fraction)
    t = (progress - cfg.warmup_fraction) / max(1e-9, 1 - cfg.warmup_fraction)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


class Schedule:
    """The run's clock and the decisions that follow it; ``minutes_before`` counts earlier sessions
    of a resumed run, so a budget spans all of them."""

    def __init__(self, cfg: TrainConfig, minutes_before: float = 0.0) -> None:
        self.cfg = cfg
        self.minutes_before = minutes_before
        self._start = time.perf_counter()

    def minutes(self) -> float:
        """Training minutes so far, earlier sessions included."""
        return self.minutes_before + (time.perf_counter() - self._start) / 60

    def progress(self, epochs_done: float) -> float:
        by_epochs = epochs_done / self.cfg.epochs
        if self.cfg.minutes:
            return min(1.0, max(by_epochs, self.minutes() / self.cfg.minutes))
        return min(1.0, by_epochs)

    def lr(self, epochs_done: float) -> float:
        return lr_at(self.cfg, self.progress(epochs_done))

    def whole_slices(self, epochs_done: float) -> bool:
        """Whether the epoch starting here trains on whole slices (the final phase) or on crops."""
        return self.progress(epochs_done) >= 1 - self.cfg.full_slice_fraction

    def ends(self, epochs_done: int) -> bool:
        """Whether the run is complete after this many epochs (all of them, or the budget spent)."""
        return epochs_done == self.cfg.epochs or self.progress(epochs_done) >= 1.0

    def validation_due(self, epochs_done: int) -> bool:
        """Every ``val_every`` epochs from ``val_from`` of the schedule on (the last epoch always
        validates: see :meth:`ends`)."""
        return epochs_done % self.cfg.val_every == 0 and self.progress(epochs_done) >= self.cfg.val_from
