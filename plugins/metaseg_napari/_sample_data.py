"""Sample data: the core's synthetic FLAIR-like slice and volume and T1c-like slice (not anatomy)
with true masks. Layer names say the sequence, so the widget's automatic model choice finds it."""

from __future__ import annotations

from metaseg_viewer.samples import make_slice, make_volume
from metaseg_viewer.scan import Scan
from metaseg_napari._layers import mask_layer_data, scan_layer_data


def _slice(sequence: str, name: str) -> list[tuple]:
    sample = make_slice(256, seed=0, sequence=sequence)
    scan = Scan(pixels=sample.image[None], source=name)
    return [scan_layer_data(scan, name), mask_layer_data(sample.mask[None], scan, f"{name} true mask")]


def sample_slice() -> list[tuple]:
    return _slice("flair", "synthetic FLAIR slice")


def sample_t1c_slice() -> list[tuple]:
    return _slice("t1c", "synthetic T1c slice")


def sample_volume() -> list[tuple]:
    sample = make_volume(24, 256, seed=0)
    scan = Scan(pixels=sample.image, spacing=sample.spacing, is_volume=True, source="synthetic FLAIR volume")
    return [scan_layer_data(scan, "synthetic FLAIR volume"), mask_layer_data(sample.mask, scan, "synthetic FLAIR volume true mask")]
