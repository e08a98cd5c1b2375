"""MetaSeg Viewer in the browser: ``streamlit run streamlit_app/app.py`` (or ``metaseg-web``).

The page adds UI only: reading, segmentation, thresholding, lesion tables, scores and pictures all
come from the core library (or a MetaSeg server). Results are kept per file, model and TTA in
the session, so changing the threshold, colours or slice never runs a network again, and going
back to an earlier setting is instant.
"""

from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st

from metaseg_viewer.errors import InputError
from metaseg_viewer.evaluation import read_true_mask
from metaseg_viewer.inference import Predictor
from metaseg_viewer.io import ReadLimits
from metaseg_viewer.precision import PRECISIONS
from metaseg_viewer.preprocessing import DISPLAY_PERCENTILES, window_to_uint8
from metaseg_viewer.registry import DEFAULT_MODEL, MODEL_LABELS, SINGLE_MODELS, model_label
from metaseg_viewer.segment import lesion_rows
from streamlit_app import views
from streamlit_app.backends import BackendError, LocalBackend, RemoteBackend, Result
from streamlit_app.cases import Case, cases_from_uploads, sample_case

COMPARED = tuple(SINGLE_MODELS)  # the two networks the "Compare" tab runs
HONESTY = ("Models trained and validated on axial FLAIR MRI of **lower-grade glioma** (LGG data set of Buda et "
           "al. 2019, TCGA-LGG); they outline FLAIR abnormality. Not validated for metastases, other lesions, "
           "sequences or scanners. Research use only — not a medical device.")
KEPT_BYTES = 1 << 30  # probability maps kept per session (oldest dropped first)


@st.cache_resource(show_spinner="Loading the model (once per server process)…")
def load_predictor(name: str, precision: str = "auto") -> Predictor:
    return Predictor.load(name, precision=precision)


def sidebar() -> tuple[LocalBackend | RemoteBackend, str, dict]:
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
    try:
        models = {m["name"]: m for m in backend.models()}
    except BackendError as exc:
        bar.error(str(exc))
        st.error(str(exc))
        st.stop()
    known = list(MODEL_LABELS)  # shipped models first, in the core's menu order; a server's own checkpoints after
    names = sorted(models, key=lambda n: known.index(n) if n in known else len(known))
    if not names:
        st.error(f"{backend.where} offers no model.")
        st.stop()
    model = bar.selectbox("Model", names, index=names.index(DEFAULT_MODEL) if DEFAULT_MODEL in names else 0,
                          format_func=model_label, key="model", persist_state="page")
    card = models[model]["inference"]
    figures = models[model].get("metrics", {}).get("validation", {})
    if figures:
        bar.caption(f"Validation ({figures.get('patients', '?')} LGG patients, optimistic): per-volume Dice {figures.get('per_volume_dice_mean', float('nan')):.3f}, "
                    f"pooled {figures.get('pooled_dice', float('nan')):.3f}")
    if bar.button("Reset to the model's validated settings"):
        for key in (f"threshold_{model}", f"tta_{model}", f"min_size_{model}"):
            st.session_state.pop(key, None)
    settings = {
        "threshold": bar.slider("Threshold", 0.05, 0.95, float(card["threshold"]), 0.01, key=f"threshold_{model}", persist_state="page",
                                help="Probability above which a pixel is lesion; moving it re-derives the mask "
                                     "without running the network."),
        "tta": bar.checkbox("Test-time augmentation (flip)", bool(card["tta"]), key=f"tta_{model}",
                            persist_state="page"),
        "min_size": bar.number_input("Minimum lesion size (pixels; voxels for volumes)", 0, 10000,
                                     int(card["min_lesion_size"]), key=f"min_size_{model}", persist_state="page"),
    }
    bar.header("Display")
    settings["opacity"] = bar.slider("Overlay opacity", 0.0, 1.0, 0.35, 0.05, key="opacity")
    settings["color"] = views.hex_to_rgb(bar.color_picker("Overlay colour", "#FF3030", key="color"))
    settings["outline"] = bar.checkbox("Outline lesions", True, key="outline")
    return backend, model, settings


def choose_case() -> Case | None:
    """The uploader stays on the page (its files are kept) whichever input is shown."""
    limit_mb = int(st.get_option("server.maxUploadSize"))
    uploads = st.file_uploader(
        "Brain MRI: PNG, JPEG, TIFF, DICOM or NIfTI", accept_multiple_files=True, key="uploads",
        on_change=lambda: st.session_state.update(input_kind="Upload files"),
        help="The format is recognised from the content. Several images are segmented one by one; "
             "the .dcm files of one series, uploaded together, form one volume.")
    st.caption(f"Up to {limit_mb} MB per file. LGG kaggle_3m 3-channel TIFFs are read as their FLAIR channel; "
               "other colour images as luminance.")
    kind = st.radio("Show", ["Upload files", "Sample slice", "Sample volume"], horizontal=True, key="input_kind",
                    persist_state="page")
    if kind != "Upload files":
        return cached("sample", kind, lambda: [sample_case(kind.split()[1])])[0]
    if not uploads:
        st.info("Upload a FLAIR image or volume, or show a built-in sample.")
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


def cached(kind: str, key: str, make):
    """Session memory of read inputs (decoding a volume once, not on every widget change)."""
    store = st.session_state.setdefault(f"cache_{kind}", {})
    if key not in store:
        store.clear()
        store[key] = make()
    return store[key]


def result_for(backend: LocalBackend | RemoteBackend, case: Case, model: str, tta: bool) -> Result:
    """The probability map for this case, model and TTA: from the session, else computed now."""
    results: dict = st.session_state.setdefault("results", {})
    key = (backend.where, backend.precision, case.key, model, tta)
    if key not in results:
        label = f"Segmenting {case.label} with {model_label(model)} on {backend.where}…"
        if isinstance(backend, LocalBackend):
            bar = st.progress(0.0, text=label)
            results[key] = backend.segment(case, model, tta, lambda done, total: bar.progress(done / total, text=label))
            bar.empty()
        else:
            with st.spinner(label):
                results[key] = backend.segment(case, model, tta)
        while len(results) > 1 and sum(r.prediction.probabilities.nbytes for r in results.values()) > KEPT_BYTES:
            results.pop(next(iter(results)))
    return results[key]


def truth_for(case: Case) -> tuple[np.ndarray | None, str]:
    upload = st.file_uploader("True mask (optional): same size as the image; any nonzero value is lesion",
                              key="truth")
    if upload is not None:
        try:
            return read_true_mask(upload.getvalue(), case.scan.shape, name=upload.name), upload.name
        except InputError as exc:
            st.error(str(exc))
    if case.truth is not None:
        return case.truth, "the sample's synthetic true mask"
    return None, ""


def main() -> None:
    st.set_page_config(page_title="MetaSeg Viewer", page_icon="🧠", layout="wide")
    st.title("MetaSeg Viewer — FLAIR abnormality segmentation")
    st.caption(HONESTY)
    backend, model, settings = sidebar()
    case = choose_case()
    if case is None:
        return
    scan = case.scan
    display = cached("display", case.key, lambda: window_to_uint8(scan.pixels, DISPLAY_PERCENTILES))
    try:
        result = result_for(backend, case, model, settings["tta"])
    except BackendError as exc:
        st.error(str(exc))
        return
    prediction = result.prediction.rethreshold(settings["threshold"], settings["min_size"])
    mask = prediction.mask
    rows = lesion_rows(scan, mask, prediction.probabilities)
    st.markdown(f"**{case.label}** — {scan.description or 'image'}, {scan.shape[1]} × {scan.shape[2]} pixels"
                + (f" × {scan.n_slices} slices" if scan.n_slices > 1 else "")
                + f" · {model_label(prediction.model_name)} ({prediction.model_version}) in {prediction.precision} on "
                f"{result.where}, {prediction.seconds:.1f} s · **{len(rows)} lesion{'s' if len(rows) != 1 else ''}**")
    for warning in scan.warnings:
        st.warning(warning)
    z = views.pick_slice(scan, mask, key=f"slice_{case.key}")
    compare_title = "Compare " + " and ".join(model_label(m) for m in COMPARED)
    tabs = st.tabs(["Segmentation", compare_title, "Lesions and scores", "Downloads"])
    with tabs[0]:
        shown = views.segmentation_panel(display, prediction, z, settings["color"], settings["opacity"],
                                         settings["outline"])
        if scan.n_slices > 1:
            views.lesion_strip(display, mask, settings["color"], settings["opacity"])
    with tabs[1]:
        compare(backend, case, display, z, settings)
    with tabs[2]:
        views.lesion_table(rows, scan)
        truth, truth_name = truth_for(case)
        views.scores_panel(mask, truth, scan, truth_name)
    with tabs[3]:
        views.downloads(scan, case.file_name, display, mask, shown, rows)


def compare(backend: LocalBackend | RemoteBackend, case: Case, display: np.ndarray, z: int, settings: dict) -> None:
    """Both networks on this case, each with its own validated threshold and minimum size."""
    results: dict = st.session_state.setdefault("results", {})
    ready = all((backend.where, backend.precision, case.key, name, settings["tta"]) in results for name in COMPARED)
    if not ready and not st.button("Run both models on this image", key="compare"):
        st.caption(f"Runs {' and '.join(model_label(m) for m in COMPARED)} on the same input and shows where "
                   "they disagree.")
        return
    try:
        masks = [(model_label(name), result_for(backend, case, name, settings["tta"]).prediction.mask)
                 for name in COMPARED]
    except BackendError as exc:
        st.error(str(exc))
        return
    views.compare_panel(display, z, masks[0], masks[1], settings["color"], settings["opacity"])


main()
