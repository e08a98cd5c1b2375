"""The slice view: the panels the user picks, side by side or one large, zoomed around the slice's
largest lesion, with the values under the pointer on hover; for a volume, a strip of the slices
with most lesion, each a button to its slice.

Slices are numbered from 0 everywhere on the page, as napari's slider and the lesion CSV number
them. Panels are plotly figures: hovering shows row and column, and on the probability map (or
the one panel shown large) the pixel's intensity, probability and masks — carried by that panel
alone, so a rerun does not send every pixel's values five times. Dragging zooms further
(double-click: back to the zoom chosen), and that stays over reruns that change only the display.
"""

from __future__ import annotations

import base64

import numpy as np
import streamlit as st
from plotly.colors import sequential

from metaseg_viewer.lesions import lesion_table
from metaseg_viewer.prediction import Prediction
from metaseg_viewer.render import DISAGREEMENT_COLORS, disagreement_overlay, encode_png, overlay, slices_to_show
from metaseg_viewer.scan import Scan

#: Panel key → (short name for the chooser, title above the picture).
PANELS = {"input": ("Input", "Input"), "enhanced": ("Network input", "Network input (CLAHE-enhanced)"),
          "probability": ("Probability", "Lesion probability"), "segmentation": ("Segmentation", "Segmentation"),
          "errors": ("Errors", "Errors against the true mask")}
SIDE_BY_SIDE = "side by side"
TOOLBAR = {"displaylogo": False, "modeBarButtonsToRemove": ["select2d", "lasso2d", "zoomIn2d", "zoomOut2d",
                                                           "autoScale2d"]}
ZOOMS = (1, 2, 4, 8)
SLICE_HELP = ("Slice (0-based, as napari and the lesion CSV): 0 is the first slice as stored (most inferior for "
              "NIfTI).")
# Inferno as render.probability_map draws it, but its first colour #000004 made #000000: Streamlit's
# page replaces the colours #000001..#000010 in a figure with its chart palette.
INFERNO = ["#000000", *sequential.Inferno[1:]]
#: The error map's regions (prediction against the true mask) in the core's three disagreement colours.
ERRORS = {"both": "true positive", "first only": "false positive", "second only": "false negative"}


def pick_slice(scan: Scan, mask: np.ndarray, key: str) -> int:
    """A slice slider for volumes (starting at the slice with the most lesion); 0 for one image."""
    if scan.n_slices == 1:
        return 0
    areas = mask.reshape(scan.n_slices, -1).sum(axis=1)
    # Started through the session (not a default value), as the strip's buttons set it there too.
    st.session_state.setdefault(key, int(np.argmax(areas)) if areas.any() else scan.n_slices // 2)
    return st.slider("Slice", 0, scan.n_slices - 1, key=key, persist_state="page", help=SLICE_HELP)


def error_legend() -> None:
    st.markdown(" · ".join(f"<span style='color:rgb{DISAGREEMENT_COLORS[k]}'>■</span> {label}"
                           for k, label in ERRORS.items()), unsafe_allow_html=True)


def display_controls() -> tuple[list[str], str, int]:
    """The panels chosen, the one shown large (or :data:`SIDE_BY_SIDE`) and the zoom factor, all
    kept in the session."""
    left, middle, right = st.columns([3, 2, 2])
    chosen = left.pills("Panels", list(PANELS), selection_mode="multi", default=list(PANELS), key="panels",
                        format_func=lambda p: PANELS[p][0], persist_state="page",
                        help="Hover the probability map (or a panel shown large) to read a pixel's intensity, "
                             "probability and masks.")
    large = middle.selectbox("Large view", [SIDE_BY_SIDE, *PANELS], key="large", persist_state="page",
                             format_func=lambda p: "Off (side by side)" if p == SIDE_BY_SIDE else PANELS[p][0],
                             help="One panel at the page's full width.")
    zoom = right.select_slider("Zoom", ZOOMS, 1, key="zoom", persist_state="page", format_func=lambda f: f"{f}×",
                               help="Centred on the slice's largest lesion (predicted, else true). Drag in a panel "
                                    "to zoom further; double-click to come back.")
    return chosen, large, zoom


def zoom_box(mask: np.ndarray, truth: np.ndarray | None, factor: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((row0, row1), (col0, col1))``, stops exclusive: 1/``factor`` of a 2-D slice around the
    centroid of its largest predicted lesion, else the largest true one, else the slice's centre."""
    h, w = mask.shape
    lesions = lesion_table(mask) or (lesion_table(truth) if truth is not None else [])
    row, col = lesions[0].centroid if lesions else (h / 2, w / 2)
    size_h, size_w = max(1, round(h / factor)), max(1, round(w / factor))
    r0 = int(np.clip(round(row - size_h / 2), 0, h - size_h))
    c0 = int(np.clip(round(col - size_w / 2), 0, w - size_w))
    return (r0, r0 + size_h), (c0, c0 + size_w)


@st.cache_data(max_entries=64, show_spinner=False)
def png(picture: np.ndarray) -> bytes:
    """PNG bytes of a picture, encoded once while it stays the same (panels and strip)."""
    return encode_png(picture)


def png_uri(picture: np.ndarray) -> str:
    """A picture as a PNG data URI (plotly draws it; far smaller than its pixels as numbers)."""
    return "data:image/png;base64," + base64.b64encode(png(picture)).decode()


def panel_figure(title: str, picture: np.ndarray, box: tuple, height: int, readout: np.ndarray | None = None,
                 probability: bool = False) -> dict:
    """One panel's plotly figure: an RGB/gray ``picture`` (or, with ``probability``, the map itself
    as a heatmap with a 0–1 colour bar), ``box`` the zoom; ``readout`` ``(H, W, k)``: intensity,
    probability, predicted and (k = 4) true mask, shown on hover."""
    hover = "row %{y}, column %{x}"
    if readout is not None:
        hover += ("<br>intensity %{customdata[0]:.4~g}<br>probability %{customdata[1]:.3f}<br>predicted lesion "
                  "%{customdata[2]}" + ("<br>true lesion %{customdata[3]}" if readout.shape[2] > 3 else ""))
    hover += "<extra></extra>"
    trace = {"customdata": readout, "hovertemplate": hover}
    if probability:
        trace.update(type="heatmap", z=picture, zmin=0, zmax=1, colorscale=INFERNO,
                     colorbar={"title": {"text": "probability", "side": "right"}, "orientation": "h",
                               "thickness": 10, "y": -0.02, "yanchor": "top"})
    else:
        trace.update(type="image", source=png_uri(picture))
    (r0, r1), (c0, c1) = box
    layout = {
        "xaxis": {"range": [c0 - 0.5, c1 - 0.5], "visible": False, "constrain": "domain"},
        "yaxis": {"range": [r1 - 0.5, r0 - 0.5], "visible": False, "scaleanchor": "x", "constrain": "domain",
                  "constraintoward": "top"},
        "title": {"text": title, "font": {"size": 14}, "yref": "container", "y": 0.01,
                  "yanchor": "bottom"},  # below the picture, clear of plotly's toolbar
        "height": height, "uirevision": str(box),  # the user's own zoom stays until the zoom box changes
        "margin": {"l": 0, "r": 0, "t": 28, "b": 80 if probability else 28}}
    # A plain figure dict: st.plotly_chart checks it once (building a go.Figure here would twice).
    return {"data": [trace], "layout": layout}


def slice_panels(scan: Scan, display: np.ndarray, prediction: Prediction, z: int, shown: np.ndarray,
                 truth: np.ndarray | None) -> None:
    """Slice ``z``: the panels the user picked (the error map only with a true mask), side by side
    or one large, with a colour bar on the probability map and the error map's legend."""
    chosen, large, zoom = display_controls()
    mask = prediction.mask[z]
    wanted = chosen if large == SIDE_BY_SIDE else [large]
    available = [p for p in wanted if p != "errors" or truth is not None]
    if "errors" in wanted and truth is None:
        st.caption("The error map needs a true mask: upload it above (or with the image).")
    if not available:
        st.info("Pick at least one panel to show.")
        return
    layers = [scan.pixels[z].astype(np.float32), prediction.probabilities[z], mask]
    readout = np.stack(layers + ([truth[z]] if truth is not None else []), axis=-1).astype(np.float32)
    box = zoom_box(mask, None if truth is None else truth[z], zoom)
    height = 720 if len(available) == 1 else 420 if len(available) <= 3 else 340
    pictures = {"input": lambda: display[z], "enhanced": lambda: prediction.enhanced[z],
                "probability": lambda: prediction.probabilities[z], "segmentation": lambda: shown,
                "errors": lambda: disagreement_overlay(display[z], mask, truth[z])}
    for column, name in zip(st.columns(len(available)), available):
        if name == "enhanced" and prediction.enhanced is None:
            column.caption("The model's preprocessed input is not available for this result.")
            continue
        values = readout if name == "probability" or len(available) == 1 else None
        column.plotly_chart(panel_figure(PANELS[name][1], pictures[name](), box, height, values,
                                         probability=name == "probability"),
                            key=f"panel_{name}", theme=None, config=TOOLBAR)
    if "errors" in available:
        error_legend()


def go_to_slice(key: str, z: int) -> None:
    st.session_state[key] = z


def lesion_strip(display: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], opacity: float,
                 slice_key: str, truth: np.ndarray | None = None) -> None:
    """Thumbnails of up to 8 slices with the most lesion, so nothing in a volume goes unseen, each
    with a button that shows that slice above; with a true mask, error maps of the slices with the
    most lesion in either (missed lesions too)."""
    either = mask if truth is None else mask | truth
    with_lesion = np.flatnonzero(either.reshape(len(mask), -1).any(axis=1))
    if not len(with_lesion):
        st.caption("No slice of this volume has a lesion at this threshold"
                   + ("." if truth is None else " or in the true mask."))
        return
    picks = slices_to_show(either, limit=8)
    where = "lesions" if truth is None else "lesions (predicted or true)"
    st.caption(f"Slices with {where}: {len(with_lesion)} of {len(mask)} (showing the {len(picks)} with most lesion; "
               "numbered from 0)")
    for column, z in zip(st.columns(len(picks)), picks):
        picture = (overlay(display[z], mask[z], color=color, alpha=opacity) if truth is None
                   else disagreement_overlay(display[z], mask[z], truth[z]))
        column.image(png(picture), caption=f"slice {z}", width="stretch")
        column.button(f"Show slice {z}", key=f"go_to_{z}", on_click=go_to_slice, args=(slice_key, z),
                      disabled=st.session_state.get(slice_key) == z, width="stretch")  # disabled: shown now
    if truth is not None:
        error_legend()
