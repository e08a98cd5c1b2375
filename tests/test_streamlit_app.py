"""The Streamlit page driven by ``streamlit.testing.v1.AppTest``: uploads, settings, errors.

The browser end-to-end test (real ``streamlit run`` + headless Chromium) is in
test_streamlit_browser.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit", reason="the web extra is not installed (pip install -e '.[web]')")
from streamlit.testing.v1 import AppTest  # noqa: E402

from metaseg_viewer.inference import Predictor  # noqa: E402
from metaseg_viewer.io import encode_mask_png, read_scan  # noqa: E402
from metaseg_viewer.samples import make_slice  # noqa: E402
from factories import png_bytes as png  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app" / "app.py")
SLICE = make_slice(256, seed=5)
T1C = make_slice(256, seed=5, sequence="t1c")


def page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=600)
    at.run()
    assert not at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def figures(at: AppTest) -> list[dict]:
    """The plotly figures on the page (slice panels, 3-D view) as their JSON."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def panel_titles(at: AppTest) -> list[str]:
    return [f["layout"]["title"]["text"] for f in figures(at) if "title" in f["layout"]]


def test_upload_shows_overlay_table_and_scores_against_an_uploaded_mask() -> None:
    at = page()
    assert "Up to 200 MB per file" in " ".join(c.value for c in at.caption)
    at.file_uploader(key="uploads").set_value(("flair.png", png(SLICE.image), "image/png")).run()
    assert not at.exception and not at.error
    header = at.markdown[0].value
    assert "flair.png" in header and "Ensemble" in header and "lesion" in header
    assert panel_titles(at) == ["Input", "Network input (CLAHE-enhanced)", "Lesion probability",
                                "Segmentation"]
    assert any("The error map needs a true mask" in c.value for c in at.caption)
    at.file_uploader(key="truth").set_value(("truth.png", encode_mask_png(SLICE.mask), "image/png")).run()
    assert panel_titles(at)[-1] == "Errors against the true mask"
    at.radio(key="view").set_value("lesions").run()
    expected = Predictor.load("ensemble", device="cpu").predict(read_scan(png(SLICE.image))).mask[0]
    inter = (expected & SLICE.mask).sum()
    assert metric(at, "Dice") == f"{2 * inter / (expected.sum() + SLICE.mask.sum()):.3f}"
    table = at.dataframe[0].value
    assert len(table) >= 1 and {"Pixels", "Centroid row (px)", "Mean probability"} <= set(table.columns)


def test_threshold_re_derives_the_mask_without_running_the_network_again(monkeypatch: pytest.MonkeyPatch) -> None:
    at = page()
    at.radio(key="input_kind").set_value("Sample slice").run()
    at.radio(key="view").set_value("lesions").run()
    dice_at_card = metric(at, "Dice")
    results = dict(at.session_state["results"])
    calls = {"n": 0}
    real = Predictor.member_maps

    def counting(self, *args, **kwargs):  # noqa: ANN001 - a spy on the network
        calls["n"] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Predictor, "member_maps", counting)
    at.slider(key="threshold_ensemble").set_value(0.95).run()
    assert calls["n"] == 0 and dict(at.session_state["results"]).keys() == results.keys()
    assert metric(at, "Dice") != dice_at_card  # the mask did change
    at.slider(key="opacity").set_value(0.8).run()
    at.color_picker(key="color").set_value("#00FF00").run()
    assert calls["n"] == 0 and at.slider(key="threshold_ensemble").value == 0.95  # nothing the user set is lost
    tta = at.checkbox(key="tta_ensemble")
    tta.set_value(not tta.value).run()  # the opposite of the card's TTA setting
    assert calls["n"] == 1  # TTA changes what the network computes: one new pass (both members)


def test_bad_files_get_a_message_and_good_ones_are_still_shown() -> None:
    at = page()
    at.file_uploader(key="uploads").set_value([
        ("notes.txt", b"this is not an image", "text/plain"),
        ("half.png", png(SLICE.image)[:400], "image/png"),
        ("good.png", png(SLICE.image), "image/png"),
    ]).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("notes.txt" in e and "Accepted" in e for e in errors)
    assert any("half.png" in e and "truncated" in e for e in errors)
    assert "good.png" in at.markdown[0].value


def test_volume_has_a_slice_slider_strip_and_nifti_and_nrrd_downloads() -> None:
    at = page()
    at.radio(key="input_kind").set_value("Sample volume").run()
    assert not at.exception and not at.error
    slider = next(s for s in at.slider if s.label == "Slice")
    assert (slider.min, slider.max) == (0, 23) and 0 <= slider.value <= 23
    assert any("Slices with lesions" in c.value for c in at.caption)
    at.radio(key="view").set_value("downloads").run()
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Mask (NIfTI)", "Mask (.seg.nrrd, 3D Slicer)", "Overlay (PNG)", "Lesion table (CSV)"]


def test_compare_runs_both_networks_and_reports_agreement() -> None:
    at = page()
    at.radio(key="input_kind").set_value("Sample slice").run()
    at.radio(key="view").set_value("compare").run()
    at.button(key="compare").click().run()
    assert not at.exception and not at.error
    text = " ".join(m.value for m in at.markdown)
    assert "Agreement (Dice between the two masks" in text and "Attention U-Net (FLAIR) only" in text


def test_server_that_is_down_gives_a_clear_message() -> None:
    at = page()
    at.radio(key="where").set_value("A MetaSeg server").run()
    at.text_input(key="server_url").input("http://127.0.0.1:9").run()  # nothing listens on port 9
    assert not at.exception
    message = at.error[0].value
    assert "Cannot reach the MetaSeg server at http://127.0.0.1:9" in message and "metaseg-server" in message


def test_settings_and_uploads_survive_switching_away_and_back() -> None:
    at = page()
    at.file_uploader(key="uploads").set_value(("mine.png", png(SLICE.image), "image/png")).run()
    at.slider(key="threshold_ensemble").set_value(0.7).run()
    at.selectbox(key="model").set_value("unetpp").run()
    at.selectbox(key="model").set_value("ensemble").run()
    assert at.slider(key="threshold_ensemble").value == 0.7
    at.radio(key="input_kind").set_value("Sample slice").run()
    at.radio(key="input_kind").set_value("Upload files").run()
    assert not at.exception and "mine.png" in at.markdown[0].value
    at.radio(key="where").set_value("A MetaSeg server").run()
    at.text_input(key="server_url").input("http://[::1").run()
    assert "is not a server address" in at.error[0].value
    at.radio(key="where").set_value("This computer").run()
    at.radio(key="where").set_value("A MetaSeg server").run()
    assert at.text_input(key="server_url").value == "http://[::1"


def test_remote_mode_against_a_real_server_matches_the_local_core() -> None:
    import json

    from live_server import start_server, stop

    process, url = start_server({"METASEG_MODELS": json.dumps(["attention-unet"])})
    try:
        at = page()
        at.radio(key="input_kind").set_value("Sample slice").run()
        at.selectbox(key="model").set_value("attention-unet").run()
        at.radio(key="view").set_value("lesions").run()
        local = metric(at, "Dice")
        at.radio(key="where").set_value("A MetaSeg server").run()
        at.text_input(key="server_url").input(url).run()
        assert not at.exception and not at.error
        assert f"on {url}" in at.markdown[0].value
        assert metric(at, "Dice") == local  # 8-bit probabilities from the server, same mask at 3 decimals
    finally:
        stop(process)


@pytest.mark.parametrize(("image", "truth", "expected"), [
    (np.zeros((256, 256), np.uint8), SLICE.mask, "undefined (the prediction is empty)"),
    (SLICE.image, np.zeros((256, 256), bool), "undefined (the true mask is empty)"),
])
def test_empty_prediction_or_truth_shows_hd95_as_the_core_words_it(image: np.ndarray, truth: np.ndarray,
                                                                  expected: str) -> None:
    at = page()
    at.file_uploader(key="uploads").set_value(("flair.png", png(image), "image/png")).run()
    at.file_uploader(key="truth").set_value(("truth.png", encode_mask_png(truth), "image/png")).run()
    at.radio(key="view").set_value("lesions").run()
    assert not at.exception and not at.error
    assert metric(at, "HD95") == expected
    assert metric(at, "Dice") == "0.000"


def test_sequence_menu_offers_t1c_and_the_model_menu_follows_it() -> None:
    at = page()
    sequence = at.radio(key="sequence")
    assert sequence.options == ["Auto (from the file)", "FLAIR", "contrast-enhanced T1 (T1c)"]
    assert at.selectbox(key="model").options == ["Automatic: the file's family", "Ensemble (FLAIR)", "U-Net++ (FLAIR)",
                                                 "Attention U-Net (FLAIR)", "Attention U-Net (T1c)"]
    sequence.set_value("t1c").run()
    assert at.selectbox(key="model").options == ["Automatic: the contrast-enhanced T1 (T1c) default",
                                                 "Attention U-Net (T1c)"]


def test_an_upload_named_t1ce_gets_the_t1c_model_and_the_page_says_why() -> None:
    at = page()
    at.file_uploader(key="uploads").set_value(("P7_t1ce.png", png(T1C.image), "image/png")).run()
    assert not at.exception and not at.error and not at.warning
    assert "Attention U-Net (T1c)" in at.markdown[0].value  # the result's own header: what ran
    said = at.markdown[1].value
    assert "**Model:** Attention U-Net (T1c), trained for contrast-enhanced T1 (T1c)" in said
    assert "**Why:** file name says 't1ce'" in said
    assert "Settings of Attention U-Net (T1c)" in [c.value for c in at.sidebar.caption]
    assert at.slider(key="threshold_t1c-attention-unet").value == 0.45  # the T1c card's own threshold
    at.radio(key="view").set_value("compare").run()
    assert "nothing to compare" in " ".join(c.value for c in at.caption)  # one network in the T1c family


def test_a_flair_model_forced_on_a_t1c_file_shows_a_warning_not_a_refusal() -> None:
    at = page()
    at.file_uploader(key="uploads").set_value(("case_t1c.png", png(T1C.image), "image/png")).run()
    at.selectbox(key="model").set_value("attention-unet").run()
    assert not at.exception and not at.error
    assert "Attention U-Net (FLAIR)" in at.markdown[0].value and "the model you chose" in at.markdown[1].value
    warnings = [w.value for w in at.warning]
    assert any("attention-unet is a FLAIR model" in w and "contrast-enhanced T1 (T1c)" in w for w in warnings), warnings


def test_the_t1c_sample_case_is_offered_beside_the_flair_ones() -> None:
    at = page()
    at.radio(key="input_kind").set_value("Sample T1c slice").run()
    assert not at.exception and not at.error
    assert "synthetic T1c" in at.markdown[0].value and "Attention U-Net (T1c)" in at.markdown[1].value
    at.radio(key="view").set_value("lesions").run()
    assert metric(at, "Lesions found")  # scored against the sample's own true mask


def test_the_server_backend_names_the_model_and_sends_the_sequence(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a server: what RemoteBackend sends, and that it reads an answer that also says how
    the server chose (``choice``, as server/schemas.py's PredictionResult)."""
    import httpx

    from metaseg_viewer.encoding import encode_probabilities
    from metaseg_viewer.registry import describe_models
    from streamlit_app.backends import RemoteBackend
    from streamlit_app.cases import sample_case

    case = sample_case("slice", "t1c")
    row = next(r for r in describe_models() if r["name"] == "t1c-attention-unet")
    answer = {"model": "t1c-attention-unet", "model_version": "x", "precision": "fp32",
              "probabilities": encode_probabilities(np.zeros(case.scan.shape, np.float32)),
              "settings": row["inference"], "sequence": "t1c",
              "choice": {"model": "t1c-attention-unet", "sequence": "t1c", "reason": "the model you chose", "warnings": []}}
    sent = []

    def fake(method, url, **kwargs):  # noqa: ANN001, ANN003 - stands in for httpx.request
        sent.append((method, url, kwargs))
        return httpx.Response(200, json=[row] if url.endswith("/models") else answer)

    monkeypatch.setattr(httpx, "request", fake)
    result = RemoteBackend("http://server").segment(case, "t1c-attention-unet", True, "t1c")
    method, url, kwargs = sent[0]
    assert (method, url) == ("POST", "http://server/predict")
    assert kwargs["params"]["model"] == "t1c-attention-unet" and kwargs["data"] == {"sequence": "t1c"}
    assert result.prediction.model_name == "t1c-attention-unet"
    assert result.prediction.settings.to_dict() == row["inference"]


def test_the_chosen_view_and_slice_survive_every_widget_change() -> None:
    at = page()
    at.radio(key="input_kind").set_value("Sample volume").run()
    slider = next(s for s in at.slider if s.label == "Slice")
    slider.set_value(3).run()
    at.radio(key="view").set_value("lesions").run()
    for change in (lambda: at.slider(key="threshold_ensemble").set_value(0.8),
                   lambda: at.slider(key="opacity").set_value(0.6),
                   lambda: at.checkbox(key="outline").set_value(False)):
        change().run()
        assert not at.exception
        assert at.radio(key="view").value == "lesions" and at.dataframe  # the table is still what is shown
        assert next(s for s in at.slider if s.label == "Slice").value == 3
    at.radio(key="view").set_value("compare").run()
    at.button(key="compare").click().run()
    assert at.radio(key="view").value == "compare"
    assert any("Agreement" in m.value for m in at.markdown)


def test_an_image_and_its_mask_uploaded_together_are_one_case_scored_against_the_mask() -> None:
    at = page()
    assert "`X_mask.*`" in at.file_uploader(key="uploads").proto.help
    at.file_uploader(key="uploads").set_value([("P1_flair.png", png(SLICE.image), "image/png"),
                                               ("P1_flair_mask.png", encode_mask_png(SLICE.mask), "image/png")]).run()
    assert not at.exception and not at.error
    assert not [s for s in at.selectbox if s.label == "Image"]  # one case, not two images
    assert "Errors against the true mask" in panel_titles(at)  # the mask is the image's truth
    at.radio(key="view").set_value("lesions").run()
    assert any("Scores against P1_flair_mask.png" in m.value for m in at.markdown)
    at.file_uploader(key="uploads").set_value([("P2_mask.png", encode_mask_png(SLICE.mask), "image/png")]).run()
    assert not at.exception
    assert any("P2_mask.png is named as the mask of an image P2" in e.value for e in at.error)


def test_a_volume_with_a_true_mask_shows_an_error_map_and_legend_in_slice_and_strip() -> None:
    at = page()
    at.radio(key="input_kind").set_value("Sample volume").run()
    assert not at.exception and not at.error
    legends = [m.value for m in at.markdown if "false negative" in m.value]
    assert len(legends) == 2 and all("true positive" in m and "false positive" in m for m in legends)
    assert any(c.value.startswith("Slices with lesions (predicted or true)") for c in at.caption)
    assert "Errors against the true mask" in panel_titles(at)


def test_lesion_table_reads_in_ml_with_zero_based_slices_and_blank_unknowns() -> None:
    from metaseg_viewer.scan import Scan
    from metaseg_viewer.segment import lesion_rows
    from streamlit_app.views import lesion_frame

    mask = np.zeros((6, 8, 8), bool)
    mask[1:4, 1:4, 1:4] = True  # 27 voxels on slices 1..3 (0-based, as napari and the CSV)
    mask[5, 6, 6] = True
    pixels = np.zeros(mask.shape, np.float32)
    scan = Scan(pixels=pixels, spacing=(2.0, 1.0, 1.0), is_volume=True)
    frame = lesion_frame(lesion_rows(scan, mask, mask.astype(np.float32)), scan)
    assert list(frame.columns) == ["Lesion", "Slices", "Voxels", "Volume (mL)", "Centroid slice",
                                   "Centroid row (px)", "Centroid column (px)", "Mean probability"]
    assert list(frame["Slices"]) == ["1–3", "5"] and list(frame["Centroid slice"]) == [2.0, 5.0]
    assert list(frame["Volume (mL)"]) == [0.054, 0.002]
    image = Scan(pixels=np.zeros((1, 8, 8), np.float32), spacing=None)
    flat = lesion_frame(lesion_rows(image, mask[2:3]), image)
    assert "Area (mm²)" not in flat and "None" not in flat.to_csv() and "Mean probability" not in flat
    stack = Scan(pixels=pixels, spacing=None)
    rows = lesion_rows(stack, mask, mask.astype(np.float32))
    rows[0]["mean_probability"] = None  # one value unknown: blank, not "None"
    shown = lesion_frame(rows, stack)
    assert list(shown["Slice"]) == [1, 2, 3, 5] and shown["Mean probability"][0] == ""
    assert "None" not in shown.to_csv() and "nan" not in shown.to_csv()


def test_an_unreachable_server_is_reported_once_and_the_upload_box_stays_usable() -> None:
    at = page()
    at.radio(key="where").set_value("A MetaSeg server").run()
    at.text_input(key="server_url").input("http://127.0.0.1:9").run()
    assert len(at.error) == 1 and not at.sidebar.error
    at.file_uploader(key="uploads").set_value(("flair.png", png(SLICE.image), "image/png")).run()
    assert not at.exception and len(at.error) == 1 and "Cannot reach" in at.error[0].value
    at.radio(key="where").set_value("This computer").run()
    assert not at.exception and not at.error and "flair.png" in at.markdown[0].value  # the upload was kept


def test_slices_count_from_zero_in_slider_table_and_strip_and_a_thumbnail_jumps_to_its_slice() -> None:
    at = page()
    at.radio(key="input_kind").set_value("Sample volume").run()
    slider = next(s for s in at.slider if s.label == "Slice")
    assert (slider.min, slider.max) == (0, 23) and "0-based, as napari and the lesion CSV" in slider.proto.help
    start = slider.value  # the slice with the most lesion, which the largest lesion spans
    at.radio(key="view").set_value("lesions").run()
    spans = [[int(n) for n in str(cell).split("–")] for cell in at.dataframe[0].value["Slices"]]
    assert spans[0][0] <= start <= spans[0][-1]
    assert all(slider.min <= n <= slider.max for span in spans for n in span)
    at.radio(key="view").set_value("segmentation").run()
    jump = next(b for b in at.button if b.key and b.key.startswith("go_to_") and b.key != f"go_to_{start}")
    target = int(jump.key.removeprefix("go_to_"))
    assert jump.proto.label == f"Show slice {target}"
    assert f"slice {target}" in [caption for image in at.image for caption in image.captions]
    jump.click().run()
    assert not at.exception and next(s for s in at.slider if s.label == "Slice").value == target
    assert at.button(key=f"go_to_{target}").disabled  # the slice shown now


def test_panels_are_chosen_enlarged_and_zoomed_and_hover_reads_the_pixel_and_all_survive_reruns() -> None:
    at = page()
    at.radio(key="input_kind").set_value("Sample slice").run()
    assert not at.exception
    shown = figures(at)
    assert len(shown) == 5  # the sample has its own true mask: the error map too
    readout = ("row %{y}", "intensity", "probability", "predicted lesion", "true lesion")
    probability = next(f for f in shown if f["layout"]["title"]["text"] == "Lesion probability")["data"][0]
    assert all(word in probability["hovertemplate"] for word in readout)
    assert "intensity" not in shown[0]["data"][0]["hovertemplate"]  # the values ride on one panel only
    assert probability["type"] == "heatmap" and (probability["zmin"], probability["zmax"]) == (0, 1)
    assert probability["colorbar"]["title"]["text"] == "probability"
    at.pills(key="panels").set_value(["probability", "segmentation"]).run()
    assert panel_titles(at) == ["Lesion probability", "Segmentation"]
    at.selectbox(key="large").set_value("segmentation").run()
    (large,) = figures(at)
    assert large["layout"]["title"]["text"] == "Segmentation" and large["layout"]["height"] == 720
    assert all(word in large["data"][0]["hovertemplate"] for word in readout)
    assert large["layout"]["xaxis"]["range"] == [-0.5, 255.5]
    at.select_slider(key="zoom").set_value(4).run()
    x0, x1 = figures(at)[0]["layout"]["xaxis"]["range"]
    assert x1 - x0 == 64  # a quarter of the 256-pixel slice, around the lesion
    for change in (lambda: at.slider(key="opacity").set_value(0.7),
                   lambda: at.slider(key="threshold_ensemble").set_value(0.6)):
        change().run()
        assert not at.exception and at.selectbox(key="large").value == "segmentation"
        assert at.select_slider(key="zoom").value == 4
        assert at.pills(key="panels").value == ["probability", "segmentation"]
    at.selectbox(key="large").set_value("side by side").run()
    at.pills(key="panels").set_value([]).run()
    assert not at.exception and "Pick at least one panel" in at.info[0].value


def test_the_3d_view_draws_each_lesion_in_its_colour_and_a_table_row_highlights_it() -> None:
    at = page()
    at.radio(key="input_kind").set_value("Sample volume").run()
    at.radio(key="view").set_value("3d").run()
    assert not at.exception and not at.error
    (figure,) = figures(at)
    head, *lesions = figure["data"]
    table = at.dataframe[0].value
    assert head["name"] == "head" and head["opacity"] < 0.2
    assert len(lesions) == len(table) >= 2 and all(t["type"] == "mesh3d" and t["opacity"] == 1 for t in lesions)
    assert len({t["color"] for t in lesions}) == len(lesions)
    at.session_state["lesion_pick"] = {"selection": {"rows": [1], "columns": []}}  # a click on the table's row 2
    at.run()
    opacities = [t["opacity"] for t in figures(at)[0]["data"][1:]]
    assert opacities[1] == 1 and all(o < 1 for i, o in enumerate(opacities) if i != 1)
    at.radio(key="input_kind").set_value("Sample slice").run()
    assert not at.exception and any("needs a volume" in c.value for c in at.caption)
