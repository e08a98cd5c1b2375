"""Sample data: the core's synthetic FLAIR-like slice and volume (not anatomy) with true masks."""

from __future__ import annotations

from metaseg_viewer.samples import make_slice, make_volume
from metaseg_viewer.scan import Scan
from metaseg_napari._layers import mask_layer_data, scan_layer_data


def sample_slice() -> list[tuple]:
    sample = make_slice(256, seed=0)
    scan = Scan(pixels=sample.image[None], source="synthetic FLAIR slice")
    return [scan_layer_data(scan, "synthetic FLAIR slice"), mask_layer_data(sample.mask[None], scan, "synthetic FLAIR slice true mask")]


def sample_volume() -> list[tuple]:
    sample = make_volume(24, 256, seed=0)
    scan = Scan(pixels=sample.image, spacing=sample.spacing, is_volume=True, source="synthetic FLAIR volume")
    return [scan_layer_data(scan, "synthetic FLAIR volume"), mask_layer_data(sample.mask, scan, "synthetic FLAIR volume true mask")]
