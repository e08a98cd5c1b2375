"""Reader: images, DICOM files and series folders, NIfTI — plus a true mask found beside an image.

A mask beside ``X.tif`` is found by the core's rule (:mod:`metaseg_viewer.io.pairing`:
``X_mask.tif``, ``X_truth.tif``, or ``../masks/X.*`` when ``X`` sits in an ``images/`` folder);
it opens as a labels layer.
A file that is itself such a mask opens as a labels layer only. A DICOM SEG (told by content) or
a NRRD mask (3D Slicer's ``.seg.nrrd``) opens as a labels layer on an image already open, laid on
it by geometry (:func:`metaseg_viewer.evaluation.read_true_mask`), or is refused saying why. What
the core warns about a file (pages skipped, NaN voxels, a blank image) appears as a napari warning
notification.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from napari.utils.notifications import show_warning

from metaseg_viewer.errors import InputError
from metaseg_viewer.evaluation import read_true_mask
from metaseg_viewer.io import MASK_SUFFIXES, SUFFIXES, read_scan
from metaseg_viewer.io.masks import placed_kind
from metaseg_viewer.io.pairing import mask_stem, true_mask_beside
from metaseg_viewer.segment import output_stem
from metaseg_napari._layers import mask_layer_data, scan_layer_data, scan_of_layer

LayerData = tuple


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """npe2 reader contribution: claim the paths this plugin can open, else None."""
    paths = [Path(p) for p in (path if isinstance(path, list) else [path])]
    if all(p.is_dir() or p.name.lower().endswith((*SUFFIXES, *MASK_SUFFIXES)) for p in paths):
        return read_layers
    return None


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Layers for each path; an unreadable file raises InputError, which napari shows as a notification."""
    layers: list[LayerData] = []
    for p in (path if isinstance(path, list) else [path]):
        layers.extend(_read_one(Path(p)))
    return layers


def _is_mask(path: Path) -> bool:
    return mask_stem(f"{path.parent.name}/{path.name}") is not None


def _read_one(path: Path) -> list[LayerData]:
    if path.is_file() and path.name.lower().endswith((".dcm", *MASK_SUFFIXES)):
        data = path.read_bytes()
        kind = placed_kind(data)
        if kind is not None:
            return [_placed_mask(path, data, kind)]
        if path.name.lower().endswith(MASK_SUFFIXES):
            raise InputError(f"{path.name}: not a NRRD file. Accepted: a NRRD mask such as 3D Slicer's .seg.nrrd")
    name = output_stem(path)
    if _is_mask(path):
        scan = read_scan(path, color="gray")
        return [mask_layer_data(scan.pixels != 0, scan, name)]
    scan = read_scan(path)
    for warning in scan.warnings:
        show_warning(f"{path.name}: {warning}")
    layers = [scan_layer_data(scan, name)]
    truth = true_mask_beside(path)
    if truth is not None:
        mask = read_scan(truth, color="gray")
        if mask.shape != scan.shape:
            raise InputError(f"{truth}: the true mask is {mask.shape[1:]} but the image {path.name} is "
                             f"{scan.shape[1:]}; a mask must have the image's size")
        layers.append(mask_layer_data(mask.pixels != 0, scan, f"{name} true mask"))
    return layers


def _placed_mask(path: Path, data: bytes, kind: str) -> LayerData:
    """A DICOM SEG or NRRD mask as a labels layer on the open image it fits by geometry (the
    most recently added first)."""
    from napari import current_viewer
    from napari.layers import Image

    what = "DICOM SEG" if kind == "dicom-seg" else "NRRD mask"
    viewer = current_viewer()
    images = [layer for layer in (viewer.layers if viewer is not None else []) if isinstance(layer, Image)]
    if not images:
        raise InputError(f"{path.name}: a {what} is laid on its image by position and orientation, and no image is "
                         "open. Open the image (for a SEG, its DICOM series) first, then this mask")
    reasons = []
    for layer in reversed(images):
        scan = scan_of_layer(layer)
        try:
            mask = read_true_mask(data, scan, name=path.name)
        except InputError as exc:
            reasons.append(str(exc) if len(images) == 1 else f"on {layer.name}: {exc}")
            continue
        return mask_layer_data(mask, scan, f"{_mask_name(path)} on {layer.name}")
    raise InputError("; ".join(reasons))


def _mask_name(path: Path) -> str:
    lower = path.name.lower()
    cut = next((s for s in (".seg.nrrd", ".nrrd", ".seg.dcm", ".dcm") if lower.endswith(s)), "")
    return path.name[: len(path.name) - len(cut)]
