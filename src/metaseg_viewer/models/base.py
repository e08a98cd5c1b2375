"""Behaviour both networks share, written once: input checks and size padding.

The encoders halve the resolution several times, so they need sides divisible by 2**depth.
:class:`Segmenter` pads any other size (zero padding, as MRI background is black) and crops the
output back, so both networks accept any ``(N, 1, H, W)`` input and return logits of that size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Segmenter(nn.Module):
    """Wraps a network that maps ``(N, 1, H, W)`` to one logit channel ``(N, 1, H, W)``.

    Models return logits; thresholding happens in inference only.
    """

    def __init__(self, net: nn.Module, divisor: int) -> None:
        super().__init__()
        self.net = net
        self.divisor = divisor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected input shaped (N, 1, H, W), got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        pad_h = (-height) % self.divisor
        pad_w = (-width) % self.divisor
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.net(x)[..., :height, :width]
