"""MetaSeg Viewer in the browser: ``streamlit run streamlit_app/app.py`` (or ``metaseg-web``).

The page adds UI only: reading, the model choice (by the sequence the file names, or the user's),
segmentation, thresholding, lesion tables, scores and pictures all come from the core library (or
a MetaSeg server). Results are kept per file, model and TTA in the session, so changing the
threshold, colours or slice never runs a network again, and going back to an earlier setting is
instant.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable

import numpy as np
import streamlit as st

from metaseg_viewer.errors import InputError
from metaseg_viewer.evaluation import read_true_mask
from metaseg_viewer.inference import Predictor
from metaseg_viewer.io import ReadLimits
from metaseg_viewer.model_choice import ModelChoice, ModelChoiceError, choose_model
from metaseg_viewer.precision import PRECISIONS
from metaseg_viewer.prediction import Prediction
from metaseg_viewer.preprocessing import DISPLAY_PERCENTILES, window_to_uint8
from metaseg_viewer.registry import (
    DEFAULT_MODEL,
    FAMILIES,
    MODEL_NAMES,
    family_networks,
    group_by_sequence,
    model_label,
)
from metaseg_viewer.scan import Scan
from metaseg_viewer.segment import lesion_rows
from metaseg_viewer.sequences import sequence_hint, sequence_label
from streamlit_app import slice_view, views, volume_view
from streamlit_app.backends import BackendError, LocalBackend, RemoteBackend, Result
from streamlit_app.cases import SAMPLES, Case, cases_from_uploads, sample_case

AUTO = "auto"  # the "Sequence" and "Model" menus' entry for "let the input (or the family) decide"
HONESTY = ("Each model outlines what its sequence shows: the FLAIR models the FLAIR abnormality of **lower-grade "
           "glioma** (LGG data set of Buda et al. 2019, TCGA-LGG), the T1c model enhancing tumour on "
           "contrast-enhanced T1. Not validated for metastases or other scanners. Research use only — not a "
           "medical device.")
KEPT_BYTES = 1 << 30  # probability maps kept per session (oldest dropped first)


@st.cache_resource(show_spinner="Loading the model (once per server process)…")
def load_predictor(name: str, precision: str = "auto") -> Predictor:
    return Predictor.load(name, precision=precision)


def sidebar() -> tuple[LocalBackend | RemoteBackend, dict[str, dict], str | None, str | None, dict]:
    """The backend, its models by name, the sequence and model asked for (``None``: automatic) and
    the display settings, with ``settings["box"]``: the sidebar's place for the per-model settings,
    drawn by :func:`model_settings` once the input has decided the model. A backend that cannot
    list its models gives ``settings["problem"]`` (reported once by :func:`main`, below the
    uploader, which stays usable) and no models."""
    bar = st.sidebar
    bar.header("Segmentation")
    where = bar.radio("Run the network on", ["This computer", "A MetaSeg server"], key="where", persist_state="page",
                      help="This computer: the core library in this app's process. Server: a `metaseg-server` "
                           "reached over HTTP.")
    if where == "A MetaSeg server":
        url = bar.text_input("Server address", "http://127.0.0.1:8000", key="server_url", persist_state="page")
        api_key = bar.text_input("API key (if the server has one)", type="password", key="api_key",
                                 persist_state="page")
        backend: LocalBackend | RemoteBackend = RemoteBackend(url, api_key)
    else:
        precision = bar.radio("Precision", PRECISIONS, horizontal=True, key="precision", persist_state="page",
                              help="auto: bf16 where this computer's CPU (AMX / AVX512-BF16) or GPU computes it "
                                   "natively (about 2x faster, masks within 0.99 Dice of fp32), fp32 elsewhere.")
        backend = LocalBackend(lambda name: load_predictor(name, precision), precision)
    problem = ""
    try:
        models = {m["name"]: m for m in backend.models()}
    except BackendError as exc:
        models, problem = {}, str(exc)
    if not models and not problem:
        problem = f"{backend.where} offers no model."
    sequence = bar.radio("Sequence", [AUTO, *FAMILIES], key="sequence", persist_state="page",
                         format_func=lambda s: "Auto (from the file)" if s == AUTO else sequence_label(s),
                         help="The MRI sequence of the input: each model was trained for one. Auto reads it from "
                              "the DICOM description or the file name (flair, t1c, t1ce, post, gad…) and says "
                              "which it chose and why; with no such word, the default model runs.")
    groups = group_by_sequence(sorted(models.values(), key=lambda m: _menu_order(m["name"])))
    names = [n for seq, members in groups.items() if sequence == AUTO or seq == sequence for n in members]
    model = bar.selectbox("Model", [AUTO, *names], key="model", persist_state="page",
                          format_func=lambda n: _model_entry(n, sequence, models),
                          help="Automatic: the default model of the sequence chosen above (or the file's). A "
                               "model picked here runs whatever the file says; a visible mismatch is warned about.")
    settings: dict = {"box": bar.container(), "problem": problem}
    bar.header("Display")
    settings["opacity"] = bar.slider("Overlay opacity", 0.0, 1.0, 0.35, 0.05, key="opacity")
    settings["color"] = views.hex_to_rgb(bar.color_picker("Overlay colour", "#FF3030", key="color"))
    settings["outline"] = bar.checkbox("Outline lesions", True, key="outline")
    return backend, models, None if sequence == AUTO else sequence, None if model == AUTO else model, settings


def _menu_order(name: str) -> int:
    """Shipped models in the core's family order; a server's own checkpoints after them."""
    return MODEL_NAMES.index(name) if name in MODEL_NAMES else len(MODEL_NAMES)


def _model_entry(name: str, sequence: str, models: dict[str, dict]) -> str:
    if name == AUTO:
        return "Automatic: the file's family" if sequence == AUTO else \
            f"Automatic: the {sequence_label(sequence)} default"
    label, trained_for = model_label(name), models[name].get("sequence")
    return label if label != name or not trained_for else f"{name} ({sequence_label(trained_for)})"


def choose(case: Case, models: dict[str, dict], sequence: str | None, model: str | None) -> ModelChoice:
    """The core's model choice for this input among the backend's models (hint: the input's DICOM
    tags and its name)."""
    default = next((m["name"] for m in models.values() if m.get("default")), DEFAULT_MODEL)
    available = sorted(models, key=_menu_order)
    return choose_model(sequence_hint(case.label, case.scan.metadata), model=model, sequence=sequence,
                        available=available, default=default if default in models else available[0])


def model_settings(box, model: str, card: dict) -> dict:
    """Threshold, TTA and minimum size of ``model`` in the sidebar's ``box``, starting at its
    card's values (kept per model for the session)."""
    figures = card.get("metrics", {}).get("validation", {})
    box.caption(f"Settings of {model_label(model)}")
    if figures:
        box.caption(f"Validation ({figures.get('patients', '?')} patients, optimistic): per-volume Dice "
                    f"{figures.get('per_volume_dice_mean', float('nan')):.3f}, pooled "
                    f"{figures.get('pooled_dice', float('nan')):.3f}")
    if box.button("Reset to the model's validated settings"):
        for key in (f"threshold_{model}", f"tta_{model}", f"min_size_{model}"):
            st.session_state.pop(key, None)
    inference = card["inference"]
    return {
        "threshold": box.slider("Threshold", 0.05, 0.95, float(inference["threshold"]), 0.01, key=f"threshold_{model}",
                                persist_state="page",
                                help="Probability above which a pixel is lesion; moving it re-derives the mask "
                                     "without running the network."),
        "tta": box.checkbox("Test-time augmentation (flip)", bool(inference["tta"]), key=f"tta_{model}",
                            persist_state="page"),
        "min_size": box.number_input("Minimum lesion size (pixels; voxels for volumes)", 0, 10000,
                                     int(inference["min_lesion_size"]), key=f"min_size_{model}", persist_state="page"),
    }


def choose_case() -> Case | None:
    """The uploader stays on the page (its files are kept) whichever input is shown."""
    limit_mb = int(st.get_option("server.maxUploadSize"))
    uploads = st.file_uploader(
        "Brain MRI: PNG, JPEG, TIFF, DICOM or NIfTI", accept_multiple_files=True, key="uploads",
        on_change=lambda: st.session_state.update(input_kind="Upload files"),
        help="The format is recognised from the content. Several images are segmented one by one; "
             "the .dcm files of one series, uploaded together, form one volume. A mask uploaded with its "
             "image is that image's true mask, paired by name: `X_mask.*` (or `masks/X.*`) belongs to `X.*`.")
    st.caption(f"Up to {limit_mb} MB per file. LGG kaggle_3m 3-channel TIFFs are read as their FLAIR channel; "
               "other colour images as luminance.")
    kind = st.radio("Show", ["Upload files", *SAMPLES], horizontal=True, key="input_kind", persist_state="page")
    if kind != "Upload files":
        return cached("sample", kind, lambda: [sample_case(*SAMPLES[kind])])[0]
    if not uploads:
        st.info("Upload a FLAIR or contrast-enhanced T1 image or volume, or show a built-in sample.")
        return None
    files = unique_names([(f.name, f.getvalue()) for f in uploads])
    digest = hashlib.sha1(b"".join(hashlib.sha1(d).digest() for _, d in files)).hexdigest()
    cases, problems = cached("uploads", digest, lambda: cases_from_uploads(files, ReadLimits(max_bytes=limit_mb << 20)))
    for problem in problems:
        st.error(problem)
    if not cases:
        return None
    if len(cases) == 1:
        return cases[0]
    labels = [c.label for c in cases]
    return cases[labels.index(st.selectbox("Image", labels, key="case", persist_state="page"))]


def unique_names(files: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Two uploads with one name (from different folders) get "name (2)", so each stays itself."""
    seen: dict[str, int] = {}
    out = []
    for name, data in files:
        seen[name] = seen.get(name, 0) + 1
        out.append((name if seen[name] == 1 else f"{name} ({seen[name]})", data))
    return out


def cached(kind: str, key: Hashable, make):
    """Session memory of the latest value of one kind: read inputs (decoding a volume once, not on
    every widget change) and what a threshold derives from a result."""
    store = st.session_state.setdefault(f"cache_{kind}", {})
    if key not in store:
        store.clear()
        store[key] = make()
    return store[key]


def result_for(backend: LocalBackend | RemoteBackend, case: Case, model: str, tta: bool,
               sequence: str | None = None) -> Result:
    """The probability map for this case, model and TTA: from the session, else computed now."""
    results: dict = st.session_state.setdefault("results", {})
    key = (backend.where, backend.precision, case.key, model, tta)
    if key not in results:
        label = f"Segmenting {case.label} with {model_label(model)} on {backend.where}…"
        if isinstance(backend, LocalBackend):
            bar = st.progress(0.0, text=label)
            results[key] = backend.segment(case, model, tta, sequence,
                                           lambda done, total: bar.progress(done / total, text=label))
            bar.empty()
        else:
            with st.spinner(label):
                results[key] = backend.segment(case, model, tta, sequence)
        while len(results) > 1 and sum(r.prediction.probabilities.nbytes for r in results.values()) > KEPT_BYTES:
            results.pop(next(iter(results)))
    return results[key]


def derive(result: Result, scan: Scan, settings: dict) -> tuple[Prediction, list[dict]]:
    """The result at the sidebar's threshold and minimum size, and its lesion table."""
    prediction = result.prediction.rethreshold(settings["threshold"], settings["min_size"])
    return prediction, lesion_rows(scan, prediction.mask, prediction.probabilities)


def truth_for(case: Case) -> tuple[np.ndarray | None, str]:
    """The true mask: uploaded here, else the one uploaded beside the image (or the sample's)."""
    upload = st.file_uploader("True mask (optional): same size as the image, or a DICOM SEG or .seg.nrrd "
                              "(laid on the image by position); any nonzero value is lesion", key="truth")
    if upload is not None:
        try:
            return read_true_mask(upload.getvalue(), case.scan, name=upload.name), upload.name
        except InputError as exc:
            st.error(str(exc))
    if case.truth is not None:
        return case.truth, case.truth_name or "the true mask"
    return None, ""


def main() -> None:
    st.set_page_config(page_title="MetaSeg Viewer", page_icon="🧠", layout="wide")
    st.title("MetaSeg Viewer — brain-lesion segmentation by MRI sequence")
    st.caption(HONESTY)
    backend, models, sequence, asked_model, settings = sidebar()
    case = choose_case()
    if settings["problem"]:
        st.error(settings["problem"])
        return
    if case is None:
        return
    scan = case.scan
    try:
        choice = choose(case, models, sequence, asked_model)
    except ModelChoiceError as exc:
        st.error(f"{case.label}: {exc}")
        return
    model = choice.model
    settings.update(model_settings(settings["box"], model, models[model]))
    display = cached("display", case.key, lambda: window_to_uint8(scan.pixels, DISPLAY_PERCENTILES))
    try:
        result = result_for(backend, case, model, settings["tta"], choice.sequence)
    except BackendError as exc:
        st.error(str(exc))
        return
    # Re-derived when the result, threshold or minimum size change; a display change reuses them.
    derived = (backend.where, backend.precision, case.key, model, settings["tta"], settings["threshold"],
               settings["min_size"])
    prediction, rows = cached("derived", derived, lambda: derive(result, scan, settings))
    mask = prediction.mask
    st.markdown(f"**{case.label}** — {scan.description or 'image'}, {scan.shape[1]} × {scan.shape[2]} pixels"
                + (f" × {scan.n_slices} slices" if scan.n_slices > 1 else "")
                + f" · {model_label(prediction.model_name)} ({prediction.model_version}) in {prediction.precision} on "
                f"{result.where}, {prediction.seconds:.1f} s · **{len(rows)} lesion{'s' if len(rows) != 1 else ''}**")
    views.choice_line(choice, models[model])
    for warning in (*choice.warnings, *scan.warnings):
        st.warning(warning)
    truth, truth_name = truth_for(case)
    slice_key = f"slice_{case.key}"
    z = slice_view.pick_slice(scan, mask, key=slice_key)
    networks = [n for n in family_networks(choice.sequence or "") if n in models]
    compare_title = "Compare " + " and ".join(model_label(m) for m in networks[:2]) if len(networks) > 1 else "Compare"
    titles = {"segmentation": "Segmentation", "compare": compare_title, "lesions": "Lesions and scores",
              "3d": "3-D view", "downloads": "Downloads"}
    # A radio bound to the session, not st.tabs: tabs fall back to the first on every rerun.
    view = st.radio("View", list(titles), format_func=titles.get, horizontal=True, key="view",
                    persist_state="page", label_visibility="collapsed")
    shown = views.overlay_of(display, mask, z, settings)
    if view == "segmentation":
        slice_view.slice_panels(scan, display, prediction, z, shown, truth)
        if scan.n_slices > 1:
            slice_view.lesion_strip(display, mask, settings["color"], settings["opacity"], slice_key, truth)
    elif view == "compare":
        compare(backend, case, display, z, settings, networks, choice.sequence)
    elif view == "lesions":
        views.lesion_table(rows, scan)
        views.scores_panel(mask, truth, scan, truth_name)
    elif view == "3d":
        volume_view.volume_panel(scan, display, mask, rows)
    else:
        views.downloads(scan, case.file_name, display, prediction, shown, rows)


def compare(backend: LocalBackend | RemoteBackend, case: Case, display: np.ndarray, z: int, settings: dict,
            networks: list[str], sequence: str | None) -> None:
    """The first two networks of the chosen model's family on this case, each with its own
    validated threshold and minimum size."""
    if len(networks) < 2:
        st.caption(f"Compare runs two networks of one sequence family; {backend.where} has "
                   f"{' '.join(model_label(n) for n in networks) or 'no single network'} for "
                   f"{sequence_label(sequence)}, so there is nothing to compare.")
        return
    compared = networks[:2]
    results: dict = st.session_state.setdefault("results", {})
    ready = all((backend.where, backend.precision, case.key, name, settings["tta"]) in results for name in compared)
    if not ready and not st.button("Run both models on this image", key="compare"):
        st.caption(f"Runs {' and '.join(model_label(m) for m in compared)} on the same input and shows where "
                   "they disagree.")
        return
    try:
        masks = [(model_label(name), result_for(backend, case, name, settings["tta"], sequence).prediction.mask)
                 for name in compared]
    except BackendError as exc:
        st.error(str(exc))
        return
    views.compare_panel(display, z, masks[0], masks[1], settings["color"], settings["opacity"])


main()
