"""Everything that defines a training run, saved as ``config.json`` in the run folder."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    data: str
    out: str
    arch: str = "attention-unet"
    model_params: dict[str, Any] = field(default_factory=dict)
    epochs: int = 40  # with --minutes, an upper limit: the schedule then follows elapsed time
    samples_per_epoch: int = 1024
    batch_size: int = 16
    crop: int = 128
    lesion_fraction: float = 0.6
    full_slice_fraction: float = 0.3  # last part of the schedule trains on whole slices
    full_slice_lesion_fraction: float = 0.35
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.03
    patience: int = 12  # early stopping, in epochs without validation improvement
    val_fraction: float = 0.2
    seed: int = 0
    minutes: float | None = None  # wall-clock budget; the run stops cleanly and can be resumed
    device: str | None = None
    threads: int | None = None
    val_every: int = 1
    val_from: float = 0.0  # validate only from this fraction of the schedule on (and at the end)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
