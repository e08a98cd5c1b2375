"""Training samples: lesion-aware random crops (or whole slices) with MRI-suited augmentation.

Crops let 2 CPU cores see many lesions per minute; a final phase on whole slices teaches the
network the context it sees at inference, where over-segmentation of tumour-free slices was the
main error in our first probes. ``lesion_fraction`` sets how often a slice with a lesion is drawn
(and the crop centred near a lesion pixel); the rest are drawn from all slices uniformly.

With ``robust_fraction`` > 0 that share of samples is first shifted the way other collections
differ (:class:`training.augment.RobustnessAugment`: skull stripping, field of view, intensity,
resolution, noise, re-normalisation) on the raw 8-bit slice, then preprocessed again by the core's
``preprocess`` — the path an app's input takes; the other samples use the stored network input.
"""

from __future__ import annotations

import albumentations as A
import numpy as np

from metaseg_viewer.config import PreprocessConfig
from metaseg_viewer.preprocessing import preprocess
from training.augment import RobustnessAugment
from training.data import SliceSet


def build_augmentation(seed: int) -> A.Compose:
    """Flips, small rotations/scalings/shifts, and intensity and gamma changes."""
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.Affine(scale=(0.9, 1.1), rotate=(-15, 15), translate_percent=(-0.05, 0.05), border_mode=0, p=0.7),
            A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.15, p=0.5),
            A.RandomGamma(gamma_limit=(80, 125), p=0.5),
        ],
        seed=seed,
    )


class SliceSampler:
    """Draws augmented ``(image, mask)`` training pairs from a :class:`SliceSet`."""

    def __init__(self, data: SliceSet, crop: int | None, lesion_fraction: float, seed: int,
                 robust_fraction: float = 0.0, preprocess_config: PreprocessConfig = PreprocessConfig()) -> None:
        self.data = data
        self.crop = crop
        self.lesion_fraction = lesion_fraction
        self.rng = np.random.default_rng(seed)
        self.augment = build_augmentation(seed)
        self.robust_fraction = robust_fraction
        self.robust = RobustnessAugment()
        self.preprocess_config = preprocess_config
        self.with_lesion = np.flatnonzero(data.masks.reshape(len(data.masks), -1).any(axis=1))

    def set_phase(self, crop: int | None, lesion_fraction: float) -> None:
        self.crop, self.lesion_fraction = crop, lesion_fraction

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        pairs = [self.sample() for _ in range(size)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        lesion = len(self.with_lesion) > 0 and self.rng.random() < self.lesion_fraction
        index = int(self.rng.choice(self.with_lesion)) if lesion else int(self.rng.integers(len(self.data.images)))
        # All randomness flows from self.rng (saved on checkpoint), so --resume is exact.
        image, mask = self.data.images[index], self.data.masks[index].astype(np.uint8)
        if self.robust_fraction and self.rng.random() < self.robust_fraction:
            raw, mask = self.robust(self.data.raw[index], mask, self.rng)
            image = preprocess(raw[None], self.preprocess_config).network_input[0]
        self.augment.set_random_seed(int(self.rng.integers(2**31)))
        out = self.augment(image=image, mask=mask)
        image, mask = out["image"], out["mask"]
        if self.crop is not None and self.crop < image.shape[0]:
            image, mask = self._crop(image, mask, near_lesion=lesion)
        return image.astype(np.float32), mask.astype(np.float32)

    def _crop(self, image: np.ndarray, mask: np.ndarray, near_lesion: bool) -> tuple[np.ndarray, np.ndarray]:
        size, side = self.crop, image.shape[0]
        assert size is not None
        ys, xs = np.nonzero(mask)
        if near_lesion and len(ys):
            k = int(self.rng.integers(len(ys)))
            cy = ys[k] + int(self.rng.integers(-size // 4, size // 4 + 1))
            cx = xs[k] + int(self.rng.integers(-size // 4, size // 4 + 1))
            top = int(np.clip(cy - size // 2, 0, side - size))
            left = int(np.clip(cx - size // 2, 0, side - size))
        else:
            top, left = (int(v) for v in self.rng.integers(0, side - size + 1, size=2))
        return image[top : top + size, left : left + size], mask[top : top + size, left : left + size]
