"""The page's panels. Each takes what it shows and draws it; pictures come from the core's render."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from metaseg_viewer.errors import InputError
from metaseg_viewer.evaluation import compare_models, hd95_text, score_against
from metaseg_viewer.lesions import slice_span
from metaseg_viewer.model_choice import ModelChoice
from metaseg_viewer.prediction import Prediction
from metaseg_viewer.registry import model_label
from metaseg_viewer.render import (
    DISAGREEMENT_COLORS,
    disagreement_overlay,
    encode_png,
    overlay,
    overlay_stack,
)
from metaseg_viewer.scan import Scan
from metaseg_viewer.segment import MEDIA_TYPES, lesion_csv, mask_file, output_stem
from metaseg_viewer.sequences import sequence_label


def hex_to_rgb(value: str) -> tuple[int, int, int]:
    value = value.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def choice_line(choice: ModelChoice, row: dict) -> None:
    """Which model ran, the sequence it was trained for and why it was chosen (the core's reason),
    with what the model outlines and was trained on when its card says."""
    purpose = row.get("purpose") or {}
    trained = f" It outlines {purpose['target']}; trained on {purpose['dataset']}." if purpose else ""
    st.markdown(f"**Model:** {model_label(choice.model)}, trained for {sequence_label(choice.sequence)}. "
                f"**Why:** {choice.reason}.{trained}")


def overlay_of(display: np.ndarray, mask: np.ndarray, z: int, settings: dict) -> np.ndarray:
    """Slice ``z`` with the mask in the sidebar's colour, opacity and outline (shown and downloaded)."""
    return overlay(display[z], mask[z], color=settings["color"], alpha=settings["opacity"],
                   outline=settings["outline"])


def lesion_frame(rows: list[dict], scan: Scan) -> pd.DataFrame:
    """The core's lesion rows as a reader sees them: headers with units, volumes in mL, slices
    numbered from 0 (as the page's slider, napari's and the CSV), each 3-D lesion's first–last
    slice, and blank where a value is unknown (no spacing, no world position). Row and column are
    0-based pixel indices, as in the CSV."""
    frame = pd.DataFrame(index=range(len(rows)))
    frame["Lesion"] = range(1, len(rows) + 1)

    def column(header: str, key: str, scale: float = 1.0) -> None:
        values = [row.get(key) for row in rows]
        if any(v is not None for v in values):
            frame[header] = [None if v is None else v * scale for v in values]

    if scan.is_volume:
        frame["Slices"] = [slice_span(row) for row in rows]
        column("Voxels", "size_px")
        column("Volume (mL)", "volume_mm3", 1e-3)
        column("Centroid slice", "centroid_z")
    else:
        column("Slice", "slice_index")
        column("Pixels", "size_px")
        column("Area (mm²)", "area_mm2")
    column("Centroid row (px)", "centroid_row")
    column("Centroid column (px)", "centroid_col")
    for axis in "xyz":
        column(f"Centroid {axis} (mm)", f"centroid_{axis}_mm")
    column("Mean probability", "mean_probability")
    frame = frame.round({c: 3 if c in ("Volume (mL)", "Mean probability") else 1 for c in frame.columns})
    for header in frame.columns:  # a partly unknown column: text, blank where unknown
        if frame[header].isna().any():
            frame[header] = ["" if pd.isna(v) else str(v) for v in frame[header]]
    return frame


def lesion_table(rows: list[dict], scan: Scan) -> None:
    if not rows:
        st.info("No lesion at this threshold and minimum size.")
        return
    st.markdown(f"**{len(rows)} lesion{'s' if len(rows) != 1 else ''}**"
                + ("" if scan.spacing is not None else " (sizes in pixels: the file gives no pixel spacing)"))
    st.dataframe(lesion_frame(rows, scan), hide_index=True, width="stretch")
    st.caption("Slices, rows and columns count from 0, as the slice slider, napari and the lesion CSV.")


def scores_panel(mask: np.ndarray, truth: np.ndarray | None, scan: Scan, truth_name: str) -> None:
    if truth is None:
        st.caption("Upload the true mask above (or with the image) to see Dice, IoU and lesion-wise scores.")
        return
    scores = score_against(mask, truth, scan.spacing)
    lesions = scores["lesions"]
    st.markdown(f"**Scores against {truth_name}**")
    cells = st.columns(6)
    values = [("Dice", f"{scores['dice']:.3f}"), ("IoU", f"{scores['iou']:.3f}"), ("HD95", hd95_text(scores)),
              ("Lesions found", f"{lesions['tp_ref']} of {lesions['n_ref']}"),
              ("False-positive lesions", str(lesions["fp_pred"])), ("Lesion-wise F1", f"{lesions['f1']:.3f}")]
    for cell, (label, value) in zip(cells, values):
        cell.metric(label, value)


def compare_panel(display: np.ndarray, z: int, first: tuple[str, np.ndarray], second: tuple[str, np.ndarray],
                  color: tuple[int, int, int], opacity: float) -> None:
    """Two models' masks side by side and a map of where they disagree."""
    (name_a, mask_a), (name_b, mask_b) = first, second
    stats = compare_models(mask_a, mask_b)
    columns = st.columns(3)
    columns[0].image(overlay(display[z], mask_a[z], color=color, alpha=opacity), caption=name_a, width="stretch")
    columns[1].image(overlay(display[z], mask_b[z], color=color, alpha=opacity), caption=name_b, width="stretch")
    columns[2].image(disagreement_overlay(display[z], mask_a[z], mask_b[z]), caption="Where they disagree",
                     width="stretch")
    legend = " · ".join(f"<span style='color:rgb{DISAGREEMENT_COLORS[k]}'>■</span> {label}" for k, label in
                        [("first only", f"{name_a} only"), ("second only", f"{name_b} only"), ("both", "both")])
    st.markdown(legend, unsafe_allow_html=True)
    unit = "voxels" if display.shape[0] > 1 else "pixels"
    st.markdown(f"Agreement (Dice between the two masks, whole {'volume' if display.shape[0] > 1 else 'image'}): "
                f"**{stats['dice_between']:.3f}** — both: {stats['both']} {unit}, {name_a} only: "
                f"{stats['first_only']}, {name_b} only: {stats['second_only']}.")


def downloads(scan: Scan, file_name: str, display: np.ndarray, prediction: Prediction, shown: np.ndarray,
              rows: list[dict]) -> None:
    """Mask, overlay and lesion table; for a volume also 3D Slicer's ``.seg.nrrd``, and for a DICOM
    series a DICOM SEG on that series (naming the model that made the mask). File names come from
    the upload's name, never from the DICOM headers."""
    stem = output_stem(file_name) or "scan"
    mask, model = prediction.mask, (prediction.model_name, prediction.model_version)
    data, suffix = mask_file(scan, mask)
    files = [("Mask (" + ("PNG" if suffix.endswith(".png") else "NIfTI") + ")", data, suffix)]
    if suffix != "_mask.png":
        files.append(("Mask (.seg.nrrd, 3D Slicer)", *mask_file(scan, mask, "nrrd")))
    seg_problem = ""
    if scan.dicom is not None:
        try:
            files.append(("Mask (DICOM SEG)", *mask_file(scan, mask, "dicom-seg", model)))
        except InputError as exc:
            seg_problem = str(exc)
    columns = st.columns(len(files) + 2)
    for column, (label, content, suffix) in zip(columns, files):
        column.download_button(label, content, file_name=stem + suffix, mime=MEDIA_TYPES[suffix],
                               on_click="ignore", width="stretch")
    picture = shown if scan.n_slices == 1 else overlay_stack(display, mask)
    columns[-2].download_button("Overlay (PNG)", encode_png(picture), file_name=f"{stem}_overlay.png",
                                mime="image/png", on_click="ignore", width="stretch")
    columns[-1].download_button("Lesion table (CSV)", lesion_csv(rows), file_name=f"{stem}_lesions.csv",
                                mime="text/csv", on_click="ignore", width="stretch")
    if seg_problem:
        st.caption(f"No DICOM SEG for this input: {seg_problem}")
