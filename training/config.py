"""Everything that defines a training run, saved as ``config.json`` in the run folder."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from metaseg_viewer.precision import PRECISIONS


class TrainingError(ValueError):
    """A run that cannot start as asked; ``python -m training`` prints the message as one line."""


class RunFolderError(TrainingError):
    """A run folder that would be overwritten, or one with nothing to resume."""


class TrainingSettingsError(TrainingError):
    """Settings that cannot train: a value out of range, a missing device, an unfit ``--init``."""


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
    patience: int = 12  # early stopping: validations without improvement
    val_fraction: float = 0.2
    seed: int = 0
    minutes: float | None = None  # wall-clock budget; the run stops cleanly and can be resumed
    device: str | None = None
    threads: int | None = None
    val_every: int = 1
    val_from: float = 0.0  # validate only from this fraction of the schedule on (and at the end)
    init: str | None = None  # start from this checkpoint's weights (and keep its validation patients)
    precision: str = "auto"  # auto: bf16 autocast where the CPU/GPU has native bf16, else fp32
    robust_fraction: float = 0.0  # share of samples shifted like other collections (training.augment)
    report_fraction: float = 0.0  # share of the validation patients kept apart for the reported figures
    val_shift: str | None = None  # also validate under this training.augment condition; select on the mean

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1 or self.samples_per_epoch < 1 or self.batch_size < 1:
            problems.append("epochs, samples_per_epoch and batch_size must be >= 1")
        if self.crop < 16:
            problems.append(f"crop must be at least 16 pixels, got {self.crop}")
        if not 0 < self.val_fraction < 1:
            problems.append(f"val_fraction must be between 0 and 1, got {self.val_fraction}")
        for name in ("lesion_fraction", "full_slice_fraction", "full_slice_lesion_fraction", "val_from", "warmup_fraction",
                     "robust_fraction", "report_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        if self.lr <= 0 or (self.minutes is not None and self.minutes <= 0):
            problems.append("lr and minutes must be > 0")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.val_shift is not None:
            from training.augment import ROBUSTNESS_CONDITIONS

            if self.val_shift not in ROBUSTNESS_CONDITIONS:
                problems.append(f"val_shift must be one of {', '.join(map(repr, ROBUSTNESS_CONDITIONS))}, got {self.val_shift!r}")
        if self.device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            problems.append(f"device must be cpu, cuda or cuda:N, got {self.device!r}")
        if problems:
            raise TrainingSettingsError("invalid training settings: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
