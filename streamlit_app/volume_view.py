"""The 3-D view of a volume: each lesion's surface in its own colour inside a faint outline of the
head, beside the lesion table; selecting a table row highlights that lesion (the others fade)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.colors import qualitative

from metaseg_viewer.scan import Scan
from streamlit_app.surfaces import Surface, head_surface, lesion_surfaces, voxel_mm
from streamlit_app.views import lesion_frame

COLORS = qualitative.Plotly  # lesion n (from 1) has COLORS[(n - 1) % len(COLORS)], in the table too
FADED = 0.15  # opacity of the lesions not selected
SHOWN = ("Lesion", "Slices", "Volume (mL)", "Voxels", "Mean probability")  # the lesion table's columns here


@st.cache_data(max_entries=8, show_spinner="Building the 3-D surfaces…")
def surfaces(mask: np.ndarray, display: np.ndarray,
             spacing: tuple[float, float, float] | None) -> tuple[list[Surface], Surface | None]:
    """Lesion surfaces (in the lesion table's order) and the head's outline, kept while the mask is."""
    return lesion_surfaces(mask, spacing), head_surface(display, spacing)


def _mesh(surface: Surface, **style) -> go.Mesh3d:
    v, f = surface.vertices.astype(np.float32), surface.faces.astype(np.int32)
    return go.Mesh3d(x=v[:, 2], y=v[:, 1], z=v[:, 0], i=f[:, 0], j=f[:, 1], k=f[:, 2], **style)


def figure(lesions: list[Surface], head: Surface | None, names: list[str], selected: int | None) -> go.Figure:
    """Lesion ``selected`` (0-based row, ``None``: all) at full opacity, the others faded."""
    traces = [] if head is None else [_mesh(head, color="lightgray", opacity=0.08, name="head", hoverinfo="skip")]
    for row, (surface, name) in enumerate(zip(lesions, names)):
        traces.append(_mesh(surface, color=COLORS[row % len(COLORS)], name=name, hovertemplate=name + "<extra></extra>",
                            opacity=1.0 if selected in (None, row) else FADED, showlegend=True, flatshading=False))
    fig = go.Figure(traces)
    axes = {"x": "x: column (mm)", "y": "y: row (mm)", "z": "z: slice (mm)"}
    fig.update_layout(scene={"aspectmode": "data", **{f"{a}axis": {"title": {"text": t}} for a, t in axes.items()}},
                      height=640, margin={"l": 0, "r": 0, "t": 0, "b": 0}, uirevision="volume",
                      legend={"itemclick": False, "itemdoubleclick": False, "x": 0, "y": 0})
    return fig


def volume_panel(scan: Scan, display: np.ndarray, mask: np.ndarray, rows: list[dict]) -> None:
    if not scan.is_volume:
        what = "one image" if scan.n_slices == 1 else f"a stack of {scan.n_slices} images without slice positions"
        st.caption(f"The 3-D view needs a volume (NIfTI or a DICOM series); this input is {what}.")
        return
    lesions, head = surfaces(mask, display, scan.spacing)
    frame = lesion_frame(rows, scan) if rows else pd.DataFrame()
    left, right = st.columns([3, 2])
    selected = None
    if rows:
        right.caption("Select a row to highlight its lesion.")
        colours = frame.style.apply(lambda c: [f"background-color: {COLORS[i % len(COLORS)]}; color: white"
                                               for i in range(len(c))], subset=["Lesion"])
        colours = colours.format(lambda v: f"{v:.10g}" if isinstance(v, float) else v)  # as the plain table
        event = right.dataframe(colours, hide_index=True, on_select="rerun", selection_mode="single-row",
                                key="lesion_pick", column_order=[c for c in SHOWN if c in frame])
        picked = event.selection.rows
        selected = picked[0] if picked and picked[0] < len(lesions) else None
    else:
        right.info("No lesion at this threshold and minimum size.")
    names = [f"Lesion {n} ({row['volume_mm3'] / 1000:.2f} mL)" if row.get("volume_mm3") else f"Lesion {n}"
             for n, row in enumerate(rows, start=1)]
    left.plotly_chart(figure(lesions, head, names, selected), key="volume_3d", config={"displaylogo": False})
    mm = voxel_mm(scan.spacing)
    spacing = (f"spacing {mm[0]:g} × {mm[1]:g} × {mm[2]:g} mm (slice × row × column)" if scan.spacing is not None
               else "voxel units: the file gives no spacing")
    left.caption(f"Lesion surfaces by marching cubes at the scan's {spacing}; grey: a coarse outline of the head. "
                 "Drag to turn, scroll to zoom.")
