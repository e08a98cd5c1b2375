"""Between napari layers and the core's Scan: the one place that knows both conventions.

napari layers hold ``(H, W)`` for one image and ``(Z, H, W)`` for a stack, with ``scale`` in
millimetres per axis; the core works on ``(Z, H, W)`` scans. A layer opened by this plugin's
reader keeps its Scan in ``metadata["metaseg_scan"]`` (for the affine when saving NIfTI), and so
does a labels layer the widget or the reader makes for it; the widget's result layers also keep
their :class:`~metaseg_napari._results.LayerResult` in ``metadata["metaseg_result"]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metaseg_viewer.errors import InputError
from metaseg_viewer.io import to_single_channel
from metaseg_viewer.preprocessing import DISPLAY_PERCENTILES
from metaseg_viewer.render import DISAGREEMENT_COLORS
from metaseg_viewer.scan import Scan

SCAN_KEY = "metaseg_scan"
RESULT_KEY = "metaseg_result"


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


#: Every colour the plugin gives a layer, in one table (the widget's legend is written from it).
#: A prediction has its model's colour (``prediction`` for any model not named here). Compare's
#: disagreement and a score's errors use the core's disagreement colours, as the Streamlit page's
#: error map does: an error map is the disagreement of the prediction (first) and the truth (second).
COLOURS: dict[str, str] = {
    "truth": "#ffd700",  # gold
    "prediction": "#ff00ff",  # magenta: the ensemble, the T1c model, a checkpoint
    "unetpp": "#ff1744",  # red
    "attention-unet": "#b388ff",  # violet
    "first model only": _hex(DISAGREEMENT_COLORS["first only"]),  # orange
    "second model only": _hex(DISAGREEMENT_COLORS["second only"]),  # blue
    "true positive": _hex(DISAGREEMENT_COLORS["both"]),  # green
    "false positive": _hex(DISAGREEMENT_COLORS["first only"]),
    "false negative": _hex(DISAGREEMENT_COLORS["second only"]),
}
#: The disagreement layer's values 1, 2 and the error layer's values 1, 2, 3.
DISAGREEMENT = ("first model only", "second model only")
ERRORS = ("true positive", "false positive", "false negative")


def labels_colormap(*names: str) -> dict[int | None, str]:
    """A napari labels colormap: value k in the colour of ``names[k - 1]``, 0 transparent, any
    other value (a brush with another label) in the first colour."""
    colours = [COLOURS[name] for name in names]
    return {0: "transparent", None: colours[0], **{k: c for k, c in enumerate(colours, start=1)}}


def model_colour_name(model: str) -> str:
    """The :data:`COLOURS` entry of a model's prediction."""
    return model if model in COLOURS else "prediction"


def short_model(model: str) -> str:
    """A model as layer names show it: the registry name, or a checkpoint's file stem."""
    return Path(model).name.split(".")[0]


def layer_name(kind: str, model: str, image: str) -> str:
    """The name of a widget layer: what it is first (``pred``, ``prob``, ``errors``), so that
    names cut short in the layer list still differ, e.g. ``pred: ensemble (brain.nii.gz)``."""
    return f"{kind}: {short_model(model)} ({image})"


def scan_layer_data(scan: Scan, name: str) -> tuple[np.ndarray, dict, str]:
    """A napari image-layer tuple for a scan: 2-D when it has one slice, scale from its spacing."""
    data = scan.pixels[0] if scan.n_slices == 1 and not scan.is_volume else scan.pixels
    low, high = np.percentile(scan.pixels, DISPLAY_PERCENTILES)
    meta = {"name": name, "metadata": {SCAN_KEY: scan}, "colormap": "gray",
            "contrast_limits": (float(low), float(high) if high > low else float(low) + 1.0)}
    meta["scale"] = _scale(scan, data.ndim)
    return data, meta, "image"


def mask_layer_data(mask: np.ndarray, scan: Scan, name: str) -> tuple[np.ndarray, dict, str]:
    data = np.asarray(mask, np.uint8)
    data = data[0] if data.ndim == 3 and data.shape[0] == 1 and not scan.is_volume else data
    return data, {"name": name, "metadata": {SCAN_KEY: scan}, "scale": _scale(scan, data.ndim), "opacity": 0.5,
                  "colormap": labels_colormap("truth")}, "labels"


def _scale(scan: Scan, ndim: int) -> tuple[float, ...]:
    if scan.spacing is None:
        return (1.0,) * ndim
    spacing = tuple(float(s) if np.isfinite(s) and s > 0 else 1.0 for s in scan.spacing)
    return spacing[-ndim:]


def scan_of_layer(layer) -> Scan:
    """The Scan behind an image layer: the reader's own, or one built from the layer's pixels."""
    scan = layer.metadata.get(SCAN_KEY)
    if isinstance(scan, Scan) and scan.pixels.shape[-2:] == np.shape(layer.data)[-2:]:
        return scan
    data = np.asarray(layer.data)
    if getattr(layer, "rgb", False):
        data = to_single_channel(data, "gray") if data.ndim == 3 else np.stack([to_single_channel(s, "gray") for s in data])
    if data.ndim == 2:
        return Scan(pixels=data[None], source=layer.name)
    if data.ndim == 3:
        dz, dy, dx = (float(s) for s in layer.scale[-3:])
        return Scan(pixels=data, spacing=(dz, dy, dx), is_volume=True, source=layer.name)
    raise InputError(f"layer {layer.name!r} has {data.ndim} dimensions {data.shape}; accepted: a 2-D image or a "
                     "3-D stack of slices (Z, H, W)")


def as_stack(array: np.ndarray) -> np.ndarray:
    """``(H, W)`` → ``(1, H, W)``; a stack unchanged."""
    array = np.asarray(array)
    return array[None] if array.ndim == 2 else array


def like_layer(stack: np.ndarray, layer_ndim: int) -> np.ndarray:
    """Back from ``(Z, H, W)`` to the layer's own dimensionality."""
    return stack[0] if layer_ndim == 2 else stack


def legend_html() -> str:
    """The colour table (:data:`COLOURS`) as the widget's legend, a line per kind of layer."""
    def line(names) -> str:
        return " · ".join(f'<span style="color:{COLOURS[name]}">■</span> {name}' for name in names)

    masks = [name for name in COLOURS if name not in DISAGREEMENT + ERRORS]
    return f"Masks: {line(masks)}<br>Compare: {line(DISAGREEMENT)}<br>Score, errors: {line(ERRORS)}"
