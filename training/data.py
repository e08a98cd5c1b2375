"""Finding, pairing, splitting and loading training slices.

Two real layouts are detected automatically:
(a) the public LGG ``kaggle_3m`` layout: ``<PATIENT>/<PATIENT>_<N>.tif`` + ``<PATIENT>_<N>_mask.tif``;
(b) an images directory + masks directory, per patient (``<PATIENT>/images/*``,
    ``<PATIENT>/masks/*``) or flat (``images/*``, ``masks/*``); images and masks pair by file stem
    (a mask may also be named ``<stem>_mask``); a flat file's volume is its stem up to the last ``_``.
Slices are read and preprocessed by the core (``read_scan`` + ``preprocess``), exactly as at
inference time.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metaseg_viewer.config import PreprocessConfig
from metaseg_viewer.io import SUFFIXES, read_scan
from metaseg_viewer.preprocessing import preprocess, window_to_uint8

#: Slice files: the core's accepted suffixes less NIfTI (a training slice is one 2-D file).
IMAGE_SUFFIXES = {s for s in SUFFIXES if not s.startswith(".nii")}


class LayoutError(ValueError):
    """A data folder in neither supported layout, or with images lacking masks."""


@dataclass(frozen=True)
class SliceFile:
    volume: str
    index: int  # slice number inside the volume (sort key); -1 when the name carries none
    image: Path
    mask: Path


def _slice_number(stem: str) -> int:
    """Trailing digits of the stem (``P_12`` → 12, ``12`` → 12), so slices sort 1, 2, 10."""
    match = re.search(r"(\d+)$", stem)
    return int(match.group(1)) if match else -1


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _pair(images: list[Path], masks: list[Path], volume_of) -> list[SliceFile]:
    by_stem = {m.stem: m for m in masks}
    pairs = []
    for image in images:
        mask = by_stem.get(image.stem) or by_stem.get(image.stem + "_mask")
        if mask is None:
            raise LayoutError(f"image {image} has no mask (looked for {image.stem}.* or {image.stem}_mask.*)")
        pairs.append(SliceFile(volume_of(image), _slice_number(image.stem), image, mask))
    return pairs


def _kaggle_patient(folder: Path) -> list[SliceFile]:
    files = _images_in(folder)
    masks = [p for p in files if p.stem.endswith("_mask")]
    images = [p for p in files if not p.stem.endswith("_mask")]
    return _pair(images, masks, lambda _: folder.name)


def find_slices(root: str | Path) -> list[SliceFile]:
    """All (image, mask) pairs under ``root``, sorted by volume and slice number."""
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"data folder {root} does not exist or is not a folder")
    if (root / "images").is_dir() and (root / "masks").is_dir():
        pairs = _pair(_images_in(root / "images"), _images_in(root / "masks"), lambda p: p.stem.rsplit("_", 1)[0])
    else:
        pairs = []
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))):
            if sub.name in ("images", "masks"):  # the flat layout with one of its two folders
                raise LayoutError(f"{root} has {sub.name}/ but no {({'images', 'masks'} - {sub.name}).pop()}/ beside it")
            has_images, has_masks = (sub / "images").is_dir(), (sub / "masks").is_dir()
            if has_images != has_masks:
                have, lack = ("images", "masks") if has_images else ("masks", "images")
                raise LayoutError(f"{sub} has {have}/ but no {lack}/ beside it")
            if has_images:
                pairs += _pair(_images_in(sub / "images"), _images_in(sub / "masks"), lambda _, s=sub: s.name)
            elif any(p.stem.endswith("_mask") for p in _images_in(sub)):
                pairs += _kaggle_patient(sub)
            else:
                raise LayoutError(
                    f"{sub} is in neither layout: expected {sub.name}/images + {sub.name}/masks, "
                    f"or kaggle_3m files {sub.name}_<N>.tif with {sub.name}_<N>_mask.tif"
                )
    if not pairs:
        raise LayoutError(
            f"no image/mask pairs found in {root}: expected the kaggle_3m layout "
            "(<PATIENT>/<PATIENT>_<N>.tif + _<N>_mask.tif) or images/ + masks/ folders"
        )
    return sorted(pairs, key=lambda s: (s.volume, s.index, s.image.name))


def split_volumes(volumes: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded split by patient (never by slice): returns (train, validation) volume names."""
    unique = sorted(set(volumes))
    if len(unique) < 2:
        raise LayoutError(f"need at least 2 volumes (patients) to split, found {len(unique)}")
    shuffled = unique[:]
    random.Random(seed).shuffle(shuffled)
    n_val = min(len(unique) - 1, max(1, round(len(unique) * val_fraction)))
    return sorted(shuffled[n_val:]), sorted(shuffled[:n_val])


def write_split(path: Path, train: list[str], val: list[str], seed: int, report: list[str] | None = None) -> None:
    """``split.json``; ``report`` patients (if any) are neither trained on nor used for any choice."""
    split = {"seed": seed, "train": train, "validation": val}
    if report:
        split["report"] = report
    path.write_text(json.dumps(split, indent=1) + "\n")


def read_split(path: Path) -> tuple[list[str], list[str]]:
    """The (train, validation) volumes of a ``split.json`` written by :func:`write_split`."""
    split = json.loads(path.read_text())
    return split["train"], split["validation"]


def read_report(path: Path) -> list[str]:
    """The report patients of a ``split.json`` (empty when the run kept none apart)."""
    return list(json.loads(path.read_text()).get("report", []))


@dataclass
class SliceSet:
    """Slices held in memory on the network grid: ``images`` float32 (N, S, S), the preprocessed
    network input; ``raw`` uint8 (N, S, S), the 8-bit slice before CLAHE (what robustness
    augmentation shifts before preprocessing it again); ``masks`` bool (N, S, S)."""

    images: np.ndarray
    masks: np.ndarray
    volumes: list[str]
    raw: np.ndarray


def load_slices(slices: list[SliceFile], config: PreprocessConfig) -> SliceSet:
    """Read and preprocess with the core; masks are resized with the same geometry (nearest)."""
    import cv2

    images, masks, raws = [], [], []
    for s in slices:
        scan = read_scan(s.image)
        prepared = preprocess(scan.pixels[:1], config)
        images.append(prepared.network_input[0])
        raws.append(_on_grid(window_to_uint8(scan.pixels[:1], config.window_percentiles)[0], prepared.geometry,
                             config.size, cv2.INTER_AREA))
        mask = read_scan(s.mask, color="gray").pixels[0] > 0
        g = prepared.geometry
        if mask.shape != (g.height, g.width):
            raise LayoutError(f"mask {s.mask} is {mask.shape[1]}x{mask.shape[0]} pixels but its image {s.image} "
                              f"is {g.width}x{g.height}: a mask must have its image's size")
        masks.append(_on_grid(mask.astype(np.uint8), g, config.size, cv2.INTER_NEAREST).astype(bool))
    return SliceSet(np.stack(images), np.stack(masks), [s.volume for s in slices], np.stack(raws))


def _on_grid(image: np.ndarray, g, size: int, interpolation: int) -> np.ndarray:
    """``image`` padded to the square and resized to the network size as preprocessing does."""
    import cv2

    square = np.zeros((g.side, g.side), image.dtype)
    square[g.pad_top : g.pad_top + g.height, g.pad_left : g.pad_left + g.width] = image
    if g.side != size:
        square = cv2.resize(square, (size, size), interpolation=interpolation)
    return square
