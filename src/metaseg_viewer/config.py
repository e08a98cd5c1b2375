"""Settings that travel with a model: preprocessing, architecture and inference defaults.

They are plain frozen dataclasses that turn into JSON-able dicts and back, so a model card can
carry them and every app (napari, server, web page, training) rebuilds exactly what the model
was trained and validated with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from metaseg_viewer.errors import CheckpointError, InputError

T = TypeVar("T")


def _from_dict(cls: type[T], data: dict[str, Any], what: str) -> T:
    """Build ``cls`` from ``data``, refusing unknown keys so a typo in a card is not ignored."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{what} must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise CheckpointError(f"{what} has unknown keys {unknown}; accepted keys: {sorted(known)}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{what} is invalid: {exc}") from exc


@dataclass(frozen=True)
class PreprocessConfig:
    """How a slice becomes network input (see :func:`metaseg_viewer.preprocessing.preprocess`).

    ``window_percentiles`` apply only to non-8-bit data (16-bit, float): those are windowed to
    8 bits between these percentiles of the whole stack before CLAHE.
    """

    size: int = 256
    clahe_clip_limit: float = 2.0
    clahe_tile_grid: int = 8
    window_percentiles: tuple[float, float] = (0.5, 99.5)

    def __post_init__(self) -> None:
        if self.size < 32 or self.size % 32:
            raise ValueError(f"size must be a multiple of 32 and at least 32, got {self.size}")
        if self.clahe_clip_limit <= 0 or self.clahe_tile_grid < 1:
            raise ValueError("clahe_clip_limit must be > 0 and clahe_tile_grid >= 1")
        low, high = self.window_percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(f"window_percentiles must satisfy 0 <= low < high <= 100, got {low, high}")
        object.__setattr__(self, "window_percentiles", (float(low), float(high)))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "window_percentiles": list(self.window_percentiles)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        data = dict(data)
        if "window_percentiles" in data:
            data["window_percentiles"] = tuple(data["window_percentiles"])
        return _from_dict(cls, data, "preprocessing settings")


@dataclass(frozen=True)
class ModelConfig:
    """An architecture name from :data:`metaseg_viewer.models.ARCHITECTURES` and its arguments."""

    arch: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return _from_dict(cls, data, "model settings")


@dataclass(frozen=True)
class InferenceConfig:
    """Post-network settings; a model card stores the ones the model was validated with.

    ``min_lesion_size`` is in pixels for a 2-D image (components found per slice) and voxels for a
    volume (3-D components); 0 keeps everything. The shipped cards tune it on 2-D slices, so on a
    volume the same count is more lenient (a 3-D lesion has more voxels than any of its slices). ``tta`` averages the prediction with that of the
    horizontally flipped input.
    """

    threshold: float = 0.5
    tta: bool = False
    min_lesion_size: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:  # also refuses NaN
            raise InputError(f"threshold must be a number strictly between 0 and 1, got {self.threshold}")
        if self.min_lesion_size < 0:
            raise InputError(f"min_lesion_size must be >= 0, got {self.min_lesion_size}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InferenceConfig:
        return _from_dict(cls, data, "inference settings")

    def override(self, **changes: Any) -> InferenceConfig:
        """A copy with the given settings replaced; ``None`` values mean "keep the card's"."""
        kept = {k: v for k, v in changes.items() if v is not None}
        return InferenceConfig(**{**self.to_dict(), **kept})
