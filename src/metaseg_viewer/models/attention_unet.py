"""Attention U-Net (Oktay et al. 2018): MONAI's ``AttentionUnet``.

Every skip connection passes through an additive attention gate driven by the coarser decoder
signal. segmentation-models-pytorch has no such network (its ``scse`` option is channel/spatial
squeeze-excitation, not an attention gate). Of the two routes considered — MONAI's implementation,
the medical-imaging field's own and maintained, or a hand-written attention-gate decoder on a
segmentation-models-pytorch encoder — MONAI's needs no network code of ours, and with widths
16-256 (2.0 M parameters) its CPU training step fits a 2-core budget
(``python benchmarks/bench_training_step.py`` prints the figures). An accuracy-per-CPU-minute
comparison against the hand-written route has not been run; the widths are configuration.
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.nets import AttentionUnet

from metaseg_viewer.models.base import Segmenter


def build_attention_unet(
    channels: Sequence[int] = (16, 32, 64, 128, 256),
    strides: Sequence[int] = (2, 2, 2, 2),
    dropout: float = 0.0,
) -> Segmenter:
    """One input channel (preprocessed FLAIR), one logit channel."""
    if len(strides) != len(channels) - 1:
        raise ValueError(f"need one stride per down-sampling step: {len(channels) - 1}, got {len(strides)}")
    net = AttentionUnet(
        spatial_dims=2,
        in_channels=1,
        out_channels=1,
        channels=tuple(channels),
        strides=tuple(strides),
        dropout=dropout,
    )
    divisor = 1
    for s in strides:
        divisor *= s
    return Segmenter(net, divisor=divisor)
