"""Segment an image or a volume with one model or an ensemble, at the input's original size.

A :class:`Predictor` holds loaded networks and the inference settings from their model card
(threshold, flip test-time augmentation, minimum lesion size), so every app uses the settings the
model was validated with unless the user overrides them. It also holds the floating-point
precision the networks run in (:mod:`metaseg_viewer.precision`: ``auto`` is bf16 autocast where
the CPU or GPU has native bf16, fp32 elsewhere), which every result reports. Slices go through the network in
batches; probabilities are averaged over TTA flips and over ensemble members, then mapped back to
the original geometry, and only then thresholded (:func:`metaseg_viewer.prediction.binarize`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from metaseg_viewer.checkpoints import ModelCard, load_checkpoint
from metaseg_viewer.config import InferenceConfig, PreprocessConfig
from metaseg_viewer.errors import InputError
from metaseg_viewer.precision import autocast, resolve_precision
from metaseg_viewer.prediction import Prediction
from metaseg_viewer.preprocessing import Preprocessed, preprocess, restore
from metaseg_viewer.registry import DEFAULT_MODEL, MODEL_NAMES, EnsembleCard, resolve_model, shipped_sha256
from metaseg_viewer.scan import Scan

Progress = Callable[[int, int], None]
"""Called as ``progress(slices_done, slices_total)``; raising from it cancels the prediction."""


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def default_device() -> str:
    return "cuda" if _cuda_available() else "cpu"


class Predictor:
    """Loaded network(s) plus default inference settings; call :meth:`predict`."""

    def __init__(
        self,
        members: list[tuple[object, ModelCard]],
        name: str,
        defaults: InferenceConfig,
        device: str,
        batch_size: int = 8,
        precision: str = "fp32",
    ) -> None:
        if not members:
            raise ValueError("a predictor needs at least one model")
        import torch

        # channels_last: measured faster on this project's CPU in fp32 at batch 8 and in bf16 at
        # every batch size (benchmarks/bench_core.py); numerics as in the default layout.
        self.members = [(net.to(memory_format=torch.channels_last), card) for net, card in members]  # type: ignore[attr-defined]
        self.name = name
        self.defaults = defaults
        self.device = device
        self.batch_size = batch_size
        self.precision: Literal["fp32", "bf16"] = resolve_precision(precision, device)

    @classmethod
    def load(cls, model: str | Path = DEFAULT_MODEL, device: str | None = None, batch_size: int = 8,
             precision: str = "auto") -> Predictor:
        """Load a shipped model by name (``unetpp``, ``attention-unet``, ``ensemble``) or a checkpoint
        path; ``precision`` is ``auto``, ``fp32`` or ``bf16`` (see :mod:`metaseg_viewer.precision`)."""
        device = device or default_device()
        if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
            raise InputError(f"unknown device {device!r}; accepted: cpu, cuda, cuda:N")
        if device.startswith("cuda") and not _cuda_available():
            raise InputError(f"device {device!r} requested but CUDA is not available here; use cpu")
        resolve_precision(precision, device)  # an unknown value is refused before loading anything
        resolved = resolve_model(model)
        if isinstance(resolved, EnsembleCard):
            members = [load_checkpoint(p, device, shipped_sha256(p)) for p in resolved.members]
            return cls(members, resolved.name, resolved.inference, device, batch_size, precision)
        net, card = load_checkpoint(resolved[0], device, shipped_sha256(resolved[0]))
        name = str(model) if str(model) in MODEL_NAMES else card.name
        return cls([(net, card)], name, card.inference, device, batch_size, precision)

    @property
    def version(self) -> str:
        return "+".join(card.sha256[:12] for _, card in self.members)

    def predict(
        self,
        scan: Scan,
        threshold: float | None = None,
        tta: bool | None = None,
        min_lesion_size: int | None = None,
        progress: Progress | None = None,
        keep_members: bool = False,
    ) -> Prediction:
        """Segment every slice of ``scan``; ``None`` settings come from the model card.
        ``keep_members``: an ensemble's result also carries each member's probabilities
        (:attr:`Prediction.member_probabilities`), so a comparison of the members needs no network."""
        settings = self.defaults.override(threshold=threshold, tta=tta, min_lesion_size=min_lesion_size)
        start = time.perf_counter()
        prepared = self.prepare(scan.pixels)
        maps = self.member_maps([prepared], settings.tta, progress)[0]
        return self.predict_prepared(scan, prepared, maps, threshold, settings.tta, min_lesion_size,
                                     time.perf_counter() - start, keep_members)

    def probabilities(
        self, pixels: np.ndarray, tta: bool, progress: Progress | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean member probability ``(Z, H, W)`` and the CLAHE image of the first member."""
        prepared = self.prepare(pixels)
        maps = self.member_maps([prepared], tta, progress)[0]
        return self.combine(prepared, self.restore_members(prepared, maps))

    # The three steps of a prediction, public so that a server can run the networks of several
    # requests as one batch (prepare each, member_maps once for all, predict_prepared each) and
    # give each the mask predict() would have given it.

    def prepare(self, pixels: np.ndarray) -> Prepared:
        """``(H, W)`` or ``(Z, H, W)`` pixels as every member's network input (one ``preprocess``
        per distinct preprocessing among the members)."""
        stack = pixels[None] if pixels.ndim == 2 else pixels
        by_config: dict[PreprocessConfig, Preprocessed] = {}
        for _, card in self.members:
            if card.preprocess not in by_config:
                by_config[card.preprocess] = preprocess(stack, card.preprocess)
        return Prepared(by_config, stack.shape[0])

    def member_maps(self, batch: Sequence[Prepared], tta: bool,
                    progress: Progress | None = None) -> list[tuple[np.ndarray, ...]]:
        """Every member's network-size maps ``(Z, S, S)`` for each prepared stack of ``batch``, in
        member order: each member runs once over all the stacks' slices, ``batch_size`` at a time
        (``progress`` after each step; raising from it cancels)."""
        bounds = np.cumsum([0, *(p.slices for p in batch)])
        total, done = len(self.members) * int(bounds[-1]), 0
        outputs = []
        for net, card in self.members:
            inputs = np.concatenate([p.by_config[card.preprocess].network_input for p in batch])
            maps = np.empty_like(inputs)
            for begin in range(0, len(inputs), self.batch_size):
                chunk = inputs[begin : begin + self.batch_size]
                maps[begin : begin + len(chunk)] = network_probabilities(net, chunk, tta, self.device, self.precision)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            outputs.append(maps)
        return [tuple(maps[b:e] for maps in outputs) for b, e in zip(bounds[:-1], bounds[1:])]

    def restore_members(self, prepared: Prepared, maps: tuple[np.ndarray, ...]) -> list[np.ndarray]:
        """Each member's maps restored to the input's size ``(Z, H, W)``, in member order."""
        return [restore(member_maps, prepared.by_config[card.preprocess].geometry)
                for (_, card), member_maps in zip(self.members, maps, strict=True)]

    def combine(self, prepared: Prepared, members: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The members' restored maps averaged (summed in member order), with the CLAHE image of
        the first member."""
        enhanced = prepared.by_config[self.members[0][1].preprocess].enhanced
        return sum(members[1:], members[0]) / len(members), enhanced

    def predict_prepared(self, scan: Scan, prepared: Prepared, maps: tuple[np.ndarray, ...],
                         threshold: float | None = None, tta: bool | None = None,
                         min_lesion_size: int | None = None, seconds: float = 0.0,
                         keep_members: bool = False) -> Prediction:
        """The :class:`Prediction` of ``scan`` from its :meth:`member_maps` (what :meth:`predict`
        returns); ``tta`` is the setting the maps were made with, ``seconds`` the time they took."""
        settings = self.defaults.override(threshold=threshold, tta=tta, min_lesion_size=min_lesion_size)
        start = time.perf_counter()
        members = self.restore_members(prepared, maps)
        probabilities, enhanced = self.combine(prepared, members)
        kept = {card.name: p for (_, card), p in zip(self.members, members)} if keep_members and len(members) > 1 \
            else {}
        return Prediction.from_probabilities(probabilities, settings, scan.is_volume, enhanced=enhanced,
                                             model_name=self.name, model_version=self.version,
                                             seconds=seconds + time.perf_counter() - start, precision=self.precision,
                                             member_probabilities=kept)


@dataclass(frozen=True)
class Prepared:
    """A stack as network input: one :class:`Preprocessed` per distinct preprocessing of a
    predictor's members, and its number of slices (see :meth:`Predictor.prepare`)."""

    by_config: dict[PreprocessConfig, Preprocessed]
    slices: int


def network_probabilities(net: object, batch: np.ndarray, tta: bool, device: str,
                          precision: Literal["fp32", "bf16"] = "fp32", channels_last: bool = True) -> np.ndarray:
    """Sigmoid output for preprocessed ``(N, S, S)`` input; with ``tta``, averaged with the
    horizontally flipped input's (flipped back). The flip runs in the same batch as the input (one
    network call of 2N). The input goes in as ``channels_last`` (the layout :class:`Predictor`
    keeps its networks in) unless told otherwise; logits leave autocast as fp32 before the
    sigmoid. Training's validation calls this too."""
    import torch

    layout = torch.channels_last if channels_last else torch.contiguous_format
    with torch.inference_mode(), autocast(precision, device):
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))[:, None].to(device)
        x = x.contiguous(memory_format=layout)
        if tta:
            both = torch.sigmoid(net(torch.cat([x, torch.flip(x, dims=[-1])])).float())
            probs = (both[: len(x)] + torch.flip(both[len(x):], dims=[-1])) / 2
        else:
            probs = torch.sigmoid(net(x).float())
        return probs[:, 0].float().cpu().numpy()
