"""Nested U-Net (U-Net++, Zhou et al. 2018) from segmentation-models-pytorch.

Encoder and decoder widths are configuration. The default is a MobileNetV2 encoder with a slim
decoder: about 3.3 M parameters, so the float32 weights stay under the 16 MB limit (a ResNet-18
encoder's 11 M parameters alone would not fit it) and a training step fits 2 CPU cores.
Figures: ``python benchmarks/bench_training_step.py``.
Nothing is downloaded: ``encoder_weights=None`` always.
"""

from __future__ import annotations

from collections.abc import Sequence

import segmentation_models_pytorch as smp

from metaseg_viewer.models.base import Segmenter


def build_unetpp(
    encoder: str = "mobilenet_v2",
    encoder_depth: int = 5,
    decoder_channels: Sequence[int] = (64, 32, 24, 16, 8),
) -> Segmenter:
    """One input channel (preprocessed FLAIR), one logit channel."""
    net = smp.UnetPlusPlus(
        encoder_name=encoder,
        encoder_depth=encoder_depth,
        encoder_weights=None,
        decoder_channels=tuple(decoder_channels),
        in_channels=1,
        classes=1,
    )
    return Segmenter(net, divisor=2**encoder_depth)
