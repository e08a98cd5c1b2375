"""The one preprocessing path: windowing, CLAHE, square padding, resizing, and its inverse."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from metaseg_viewer.config import PreprocessConfig
from metaseg_viewer.errors import InputError
from metaseg_viewer.preprocessing import preprocess, restore, window_to_uint8
from metaseg_viewer.samples import make_slice


def test_uint8_slice_of_network_size_is_clahe_scaled_to_unit_range() -> None:
    image = make_slice(seed=3).image
    out = preprocess(image)
    expected = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(image)
    assert out.network_input.shape == (1, 256, 256)
    assert out.network_input.dtype == np.float32
    np.testing.assert_array_equal(out.enhanced[0], expected)
    np.testing.assert_allclose(out.network_input[0], expected / 255.0, atol=1e-7)


def test_clahe_settings_are_used() -> None:
    image = make_slice(seed=3).image
    default = preprocess(image).network_input
    stronger = preprocess(image, PreprocessConfig(clahe_clip_limit=6.0, clahe_tile_grid=4)).network_input
    assert not np.array_equal(default, stronger)


def test_16_bit_is_windowed_with_robust_percentiles() -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(1000, 3000, size=(64, 64)).astype(np.uint16)
    data[0, 0] = 65535  # one outlier must not compress the window
    eight = window_to_uint8(data, (0.5, 99.5))
    assert eight.dtype == np.uint8
    assert eight[0, 0] == 255
    assert eight[1:].max() == 255 and eight.min() == 0
    assert np.median(eight) > 100  # the body of the data spans the range, not squeezed near 0


def test_constant_and_nan_float_images_do_not_crash() -> None:
    assert window_to_uint8(np.full((8, 8), 7.5, np.float32), (0.5, 99.5)).max() == 0
    data = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    data[0, 0] = np.nan
    assert window_to_uint8(data, (0.5, 99.5))[0, 0] == 0


def test_volume_shares_one_window() -> None:
    volume = np.stack([np.full((16, 16), v, np.int16) for v in (100, 200, 300)])
    eight = window_to_uint8(volume, (0.0, 100.0))
    assert eight[0].max() == 0 and eight[2].min() == 255 and 0 < eight[1, 0, 0] < 255


def test_non_square_input_is_padded_and_restored_exactly_in_place() -> None:
    image = np.zeros((120, 200), np.uint8)
    image[40:80, 150:190] = 200
    out = preprocess(image)
    assert out.network_input.shape == (1, 256, 256)
    g = out.geometry
    assert (g.height, g.width, g.side, g.pad_top, g.pad_left) == (120, 200, 200, 40, 0)
    # A map that is 1 where the bright block is comes back at the block's place and size.
    back = restore(out.network_input, g)
    assert back.shape == (1, 120, 200)
    assert back[0, 50:70, 160:180].min() > 0.5
    assert back[0, :30, :100].max() < 0.1


def test_bad_arrays_raise_input_error() -> None:
    with pytest.raises(InputError, match="one-channel"):
        preprocess(np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(InputError, match="empty"):
        preprocess(np.zeros((0, 10), np.uint8))
    with pytest.raises(InputError, match="numeric"):
        preprocess(np.zeros((10, 10), bool))


def test_config_round_trips_and_rejects_nonsense() -> None:
    cfg = PreprocessConfig(clahe_clip_limit=3.0)
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        PreprocessConfig(size=100)
    with pytest.raises(ValueError):
        PreprocessConfig(window_percentiles=(99.0, 1.0))
