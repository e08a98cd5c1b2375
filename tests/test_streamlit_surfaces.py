"""The 3-D view's surfaces (streamlit_app/surfaces.py): where they lie in millimetres."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("skimage", reason="the web extra is not installed (pip install -e '.[web]')")

from metaseg_viewer.lesions import lesion_table  # noqa: E402
from metaseg_viewer.samples import make_volume  # noqa: E402
from streamlit_app.surfaces import head_surface, lesion_surfaces  # noqa: E402


def test_each_lesion_surface_spans_its_voxels_times_the_spacing_in_table_order() -> None:
    sample = make_volume(16, 128, seed=3)
    surfaces = lesion_surfaces(sample.mask, sample.spacing)
    lesions = lesion_table(sample.mask, spacing=sample.spacing)
    assert len(surfaces) == len(lesions) >= 2
    spacing = np.array(sample.spacing)
    for surface, lesion in zip(surfaces, lesions):
        start, stop = np.array(lesion.bbox).T
        # the surface lies half a voxel outside the outermost voxels: its extent is voxels x spacing
        np.testing.assert_allclose(surface.vertices.min(axis=0), (start - 0.5) * spacing, atol=1e-6)
        np.testing.assert_allclose(surface.vertices.max(axis=0), (stop - 0.5) * spacing, atol=1e-6)
        assert surface.faces.max() < len(surface.vertices)


def test_a_one_voxel_lesion_on_the_border_is_closed_and_unknown_spacing_is_voxel_units() -> None:
    mask = np.zeros((3, 5, 5), bool)
    mask[0, 0, 0] = True
    (surface,) = lesion_surfaces(mask, None)
    np.testing.assert_allclose(surface.vertices.min(axis=0), [-0.5] * 3)
    np.testing.assert_allclose(surface.vertices.max(axis=0), [0.5] * 3)
    assert lesion_surfaces(np.zeros((3, 5, 5), bool), (1.0, 1.0, 1.0)) == []


def test_the_head_outline_lies_in_the_scan_and_a_flat_image_has_none() -> None:
    sample = make_volume(16, 128, seed=3)
    head = head_surface(sample.image, sample.spacing)
    extent = (np.array(sample.image.shape) - 1) * np.array(sample.spacing)
    assert head is not None and len(head.faces) > 100
    assert (head.vertices.min(axis=0) >= -np.array(sample.spacing) * 4).all()
    assert (head.vertices.max(axis=0) <= extent + np.array(sample.spacing) * 4).all()
    assert head_surface(np.zeros((4, 32, 32), np.uint8), None) is None
