"""A segmentation result and the one rule that turns probabilities into a mask.

Every app keeps a :class:`Prediction` and moves its threshold or minimum lesion size with
:meth:`Prediction.rethreshold`, which only re-derives the mask from the stored probabilities (no
network). The CLI, the server, the Streamlit page and the napari widget therefore agree on a
mask for the same probabilities and settings: components are 3-D for a volume (``volume``
true: NIfTI, DICOM, a napari stack) and per 2-D slice otherwise, in every path.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from metaseg_viewer.config import InferenceConfig
from metaseg_viewer.lesions import remove_small_components


def binarize(probabilities: np.ndarray, threshold: float, min_lesion_size: int = 0, volume: bool = False) -> np.ndarray:
    """Threshold ``(Z, H, W)`` probabilities (``p >= threshold``) and drop small components.

    Components are 3-D when ``volume`` is true, otherwise found per 2-D slice (``min_lesion_size``
    counts voxels or pixels accordingly; 0 or 1 keeps everything).
    """
    mask = probabilities >= threshold
    if min_lesion_size > 1:
        if volume:
            mask = remove_small_components(mask, min_lesion_size)
        else:
            mask = np.stack([remove_small_components(s, min_lesion_size) for s in mask])
    return mask


def carry_edits(labels: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The user's labels moved from mask ``before`` to mask ``after`` (all ``(Z, H, W)``).

    A pixel where ``labels`` differs from ``before`` (painted or erased by hand) keeps the user's
    value; every other pixel takes ``after`` (1 for lesion, 0 for background). Returns uint8.
    """
    labels = np.asarray(labels)
    edited = (labels != 0) != before
    return np.where(edited, labels, after).astype(np.uint8)


@dataclass(frozen=True)
class Prediction:
    """Probabilities of one scan and the mask its settings give, both ``(Z, H, W)`` at the input's size.

    Attributes:
        probabilities: float32 in [0, 1], the mean over members and TTA flips.
        mask: bool, ``binarize(probabilities, settings..., volume)``; never edited by hand.
        settings: the threshold, TTA and minimum size this mask was derived with.
        volume: whether small components are removed in 3-D (see :func:`binarize`).
        enhanced: uint8 CLAHE image the (first) member's own preprocessing fed the network, before
            resizing, or ``None`` when the probabilities came from elsewhere (a server).
        model_name, model_version: the model, and the sha256 prefix of its weights ("+" joins members).
        seconds: time the network(s) took.
        precision: the floating-point precision the networks ran in (``fp32`` or ``bf16``).
        member_probabilities: an ensemble's members' own probabilities ``(Z, H, W)`` by card name,
            the same TTA as the mean, when asked for (``Predictor.predict(keep_members=True)``);
            empty otherwise, and after :meth:`with_slice` (they would be stale).
    """

    probabilities: np.ndarray
    mask: np.ndarray
    settings: InferenceConfig
    volume: bool
    enhanced: np.ndarray | None = None
    model_name: str = ""
    model_version: str = ""
    seconds: float = 0.0
    precision: str = "fp32"
    member_probabilities: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_probabilities(cls, probabilities: np.ndarray, settings: InferenceConfig, volume: bool,
                           **details: object) -> Prediction:
        """Derive the mask for ``settings``; ``details`` are the remaining fields (model name, ...)."""
        probabilities = np.asarray(probabilities, np.float32)
        mask = binarize(probabilities, settings.threshold, settings.min_lesion_size, volume)
        return cls(probabilities=probabilities, mask=mask, settings=settings, volume=volume, **details)  # type: ignore[arg-type]

    def rethreshold(self, threshold: float | None = None, min_lesion_size: int | None = None) -> Prediction:
        """The same probabilities with a new threshold and/or minimum size (``None`` keeps the
        current one); no network runs. Returns ``self`` when nothing changes."""
        settings = self.settings.override(threshold=threshold, min_lesion_size=min_lesion_size)
        if settings == self.settings:
            return self
        mask = binarize(self.probabilities, settings.threshold, settings.min_lesion_size, self.volume)
        return replace(self, mask=mask, settings=settings)

    def with_slice(self, z: int, probabilities: np.ndarray) -> Prediction:
        """Slice ``z`` replaced by newly computed probabilities ``(H, W)``, the mask re-derived
        with the same rule as the whole (3-D components for a volume)."""
        stacked = self.probabilities.copy()
        stacked[z] = probabilities
        return Prediction.from_probabilities(stacked, self.settings, self.volume, enhanced=self.enhanced,
                                             model_name=self.model_name, model_version=self.model_version,
                                             seconds=self.seconds, precision=self.precision)
