"""The architecture registry: a plain dict from name to builder, and :func:`build_model`."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from metaseg_viewer.config import ModelConfig
from metaseg_viewer.models.attention_unet import build_attention_unet
from metaseg_viewer.models.base import Segmenter
from metaseg_viewer.models.unetpp import build_unetpp

ARCHITECTURES: dict[str, Callable[..., Segmenter]] = {
    "unetpp": build_unetpp,
    "attention-unet": build_attention_unet,
}


def build_model(config: ModelConfig) -> nn.Module:
    """Build an untrained network; a wrong name or argument says what is valid."""
    try:
        builder = ARCHITECTURES[config.arch]
    except KeyError:
        raise ValueError(f"unknown architecture {config.arch!r}; valid: {sorted(ARCHITECTURES)}") from None
    try:
        return builder(**config.params)
    except (TypeError, KeyError, ValueError) as exc:  # smp raises KeyError for unknown encoders
        raise ValueError(f"invalid arguments for {config.arch!r} {config.params}: {exc}") from exc


__all__ = ["ARCHITECTURES", "Segmenter", "build_model"]
