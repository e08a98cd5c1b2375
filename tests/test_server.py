"""The FastAPI app in-process (FastAPI's TestClient): routes, options, error mapping, JSON shapes.

The same behaviour against a real uvicorn process is in test_server_live.py.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed (pip install -e '.[server]')")
from fastapi.testclient import TestClient  # noqa: E402
from openapi_spec_validator import validate  # noqa: E402

from metaseg_viewer.encoding import decode_probabilities, rle_decode  # noqa: E402
from metaseg_viewer.inference import Predictor  # noqa: E402
from metaseg_viewer.prediction import binarize  # noqa: E402
from metaseg_viewer.io import encode_mask_png, read_scan  # noqa: E402
from metaseg_viewer.samples import make_slice  # noqa: E402
from server.app import create_app  # noqa: E402
from server.settings import ServerSettings  # noqa: E402
from factories import nifti_volume, png_bytes as png  # noqa: E402


SLICE = make_slice(256, seed=0)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    settings = ServerSettings(models=["attention-unet", "unetpp", "ensemble"], default_model="attention-unet",
                              max_upload_mb=2, max_slices=40, max_batch_files=3,
                              save_uploads_dir=tmp_path_factory.mktemp("kept"))
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_predict_returns_the_core_mask_as_png(client: TestClient) -> None:
    response = client.post("/predict", files={"file": ("slice.png", png(SLICE.image), "image/png")})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"] == 'attachment; filename="slice_mask.png"'
    served = read_scan(response.content).pixels[0] > 0
    expected = Predictor.load("attention-unet", device="cpu").predict(read_scan(png(SLICE.image))).mask[0]
    assert np.array_equal(served, expected)
    assert served.sum() > 100  # the sample's lesions are found, so the comparison is not of empty masks
    assert int(response.headers["x-lesion-count"]) >= 1
    assert response.headers["x-model"] == "attention-unet"


def test_options_as_query_or_form_and_json_result(client: TestClient) -> None:
    data = png(SLICE.image)
    by_query = client.post("/predict?format=json&model=unetpp&threshold=0.6&tta=false",
                           files={"file": ("s.png", data)}).json()
    by_form = client.post("/predict/", files={"file": ("s.png", data)},
                          data={"format": "json", "model": "unetpp", "threshold": "0.6", "tta": "false"}).json()
    assert by_query["model"] == by_form["model"] == "unetpp"
    card_min_size = Predictor.load("unetpp", device="cpu").defaults.min_lesion_size
    assert by_query["settings"] == by_form["settings"] == {"threshold": 0.6, "tta": False,
                                                           "min_lesion_size": card_min_size}
    assert by_query["mask"] == by_form["mask"]
    mask = rle_decode(by_query["mask"])
    expected = Predictor.load("unetpp", device="cpu").predict(read_scan(data), threshold=0.6, tta=False).mask
    assert np.array_equal(mask, expected)
    assert by_query["lesion_count"] == len(by_query["lesions"]) >= 1
    assert by_query["shape"] == [1, 256, 256] and set(by_query["timings_ms"]) == {"read", "inference", "total"}
    assert len(by_query["model_version"]) == 12
    with_probabilities = client.post("/predict?format=json&probabilities=true&model=unetpp&threshold=0.6&tta=false",
                                     files={"file": ("s.png", data)}).json()
    probabilities = decode_probabilities(with_probabilities["probabilities"])
    assert probabilities.shape == (1, 256, 256)
    rederived = binarize(probabilities, 0.6, card_min_size)
    assert (rederived != mask).sum() <= 5  # 8-bit quantisation moves only pixels at the threshold
    assert client.post("/predict?probabilities=true", files={"file": ("s.png", data)}).status_code == 422
    conflicting = client.post("/predict?threshold=0.6", files={"file": ("s.png", data)}, data={"threshold": "0.4"})
    assert conflicting.status_code == 422 and "different values" in conflicting.json()["detail"]


def test_volume_gives_nifti_in_the_input_grid(client: TestClient, tmp_path: Path) -> None:
    data, truth = nifti_volume(tmp_path)
    response = client.post("/predict", files={"file": ("brain.nii.gz", data)})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/gzip"
    assert response.headers["content-disposition"] == 'attachment; filename="brain_mask.nii.gz"'
    mask = read_scan(gzip.decompress(response.content), name="mask.nii").pixels > 0
    assert mask.shape == truth.shape
    assert np.array_equal(mask, Predictor.load("attention-unet", device="cpu").predict(read_scan(data)).mask)
    assert client.post("/predict?format=png", files={"file": ("b.nii.gz", data)}).status_code == 422


@pytest.mark.parametrize("payload, status, words", [
    (b"patient name\n" * 50, 415, "not an image or volume format"),
    (b"PK\x03\x04" + b"\0" * 100, 415, "ZIP archive"),
    (png(SLICE.image)[:300], 422, "truncated"),
    (b"", 422, "empty"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 4, 422, "accepted"),  # a PNG signature and nothing else
])
def test_bad_files_get_a_clear_4xx(client: TestClient, payload: bytes, status: int, words: str) -> None:
    response = client.post("/predict", files={"file": ("scan.png", payload, "image/png")})
    assert response.status_code == status, response.text
    body = response.json()
    assert words.lower() in body["detail"].lower()
    assert body["request_id"] == response.headers["x-request-id"]


def test_limits_and_invalid_options(client: TestClient) -> None:
    noise = png(np.random.default_rng(0).integers(0, 256, (1200, 2400), dtype=np.uint8))
    assert len(noise) > 2.5 * 2**20  # noise does not compress
    over = client.post("/predict", files={"file": ("big.png", noise)})
    assert over.status_code == 413 and "2 MiB" in over.json()["detail"]
    many = np.zeros((41, 8, 8), np.uint8)
    path_bytes = io.BytesIO()
    import tifffile

    tifffile.imwrite(path_bytes, many)
    slices = client.post("/predict", files={"file": ("stack.tif", path_bytes.getvalue())})
    assert slices.status_code == 413 and "41 slices" in slices.json()["detail"]
    for query, words in [("threshold=1.5", "threshold"), ("threshold=abc", "threshold"), ("tta=maybe", "tta"),
                         ("format=gif", "format"), ("model=resnet", "unknown model"), ("min_lesion_size=-1", "min_lesion_size")]:
        response = client.post(f"/predict?{query}", files={"file": ("s.png", png(SLICE.image))})
        assert response.status_code == 422, query
        assert words in response.json()["detail"], response.json()
    missing = client.post("/predict")
    assert missing.status_code == 422 and "file" in missing.json()["detail"]


def test_batch_keeps_order_and_reports_bad_files_alone(client: TestClient) -> None:
    files = [("files", ("a.png", png(SLICE.image))), ("files", ("b.txt", b"not an image")),
             ("files", ("c.png", png(make_slice(128, lesions=[], seed=3).image)))]
    response = client.post("/predict/batch", files=files)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["file"] for r in results] == ["a.png", "b.txt", "c.png"]
    assert [r["ok"] for r in results] == [True, False, True]
    assert results[1]["status"] == 415 and "Accepted" in results[1]["error"]
    assert results[0]["result"]["lesion_count"] >= 1
    assert rle_decode(results[2]["result"]["mask"]).shape == (1, 128, 128)
    too_many = client.post("/predict/batch", files=files + [("files", ("d.png", png(SLICE.image)))])
    assert too_many.status_code == 422 and "at most 3" in too_many.json()["detail"]


def test_evaluate_scores_like_the_core(client: TestClient) -> None:
    from metaseg_viewer.evaluation import score_against

    data = png(SLICE.image)
    response = client.post("/evaluate", files={"file": ("s.png", data), "mask": ("m.png", encode_mask_png(SLICE.mask))})
    assert response.status_code == 200, response.text
    scores = response.json()["scores"]
    pred = rle_decode(response.json()["prediction"]["mask"])
    expected = score_against(pred, SLICE.mask[None])
    assert scores["dice"] == pytest.approx(expected["dice"]) and scores["dice"] > 0.5
    assert scores["lesions"] == expected["lesions"]
    wrong_size = client.post("/evaluate", files={"file": ("s.png", data), "mask": ("m.png", encode_mask_png(SLICE.mask[:100]))})
    assert wrong_size.status_code == 422 and "100 x 256" in wrong_size.json()["detail"]


def test_models_health_ready_and_request_id(client: TestClient) -> None:
    models = client.get("/models").json()
    assert [m["name"] for m in models] == ["attention-unet", "unetpp", "ensemble"]
    assert [m["default"] for m in models] == [True, False, False]
    assert all(len(m["sha256"]) >= 12 and m["metrics"] for m in models)
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["ready"] is True and ready["models"] == ["attention-unet", "unetpp", "ensemble"]
    assert client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    generated = client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"}).headers["x-request-id"]
    assert len(generated) == 32 and " " not in generated


def test_uploads_are_kept_only_under_generated_names(client: TestClient) -> None:
    folder = client.app.state.settings.save_uploads_dir
    before = set(folder.iterdir())
    client.post("/predict", files={"file": ("../../etc/evil name.png", png(SLICE.image))})
    new = set(folder.iterdir()) - before
    assert len(new) == 1
    (kept,) = new
    assert kept.parent == folder and kept.suffix == ".png" and "evil" not in kept.name
    assert kept.read_bytes() == png(SLICE.image)


def test_nothing_is_written_without_an_uploads_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with TestClient(create_app(ServerSettings(models=["attention-unet"], default_model="attention-unet"))) as c:
        big = np.random.default_rng(1).integers(0, 256, (1100, 1100), dtype=np.uint8)  # over Starlette's 1 MiB spool
        assert c.post("/predict", files={"file": ("big.png", png(big))}).status_code == 200
    assert list(tmp_path.iterdir()) == []


def test_api_key_and_cors() -> None:
    settings = ServerSettings(models=["attention-unet"], default_model="attention-unet", api_key="s3cret",
                              cors_origins=["https://viewer.example.org"])
    with TestClient(create_app(settings)) as c:
        assert c.get("/health").status_code == 200  # liveness stays open for orchestrators
        assert c.get("/models").status_code == 401
        denied = c.post("/predict", files={"file": ("s.png", png(SLICE.image))}, headers={"X-API-Key": "wrong"})
        assert denied.status_code == 401 and "X-API-Key" in denied.json()["detail"]
        assert c.get("/models", headers={"X-API-Key": "s3cret"}).status_code == 200
        preflight = c.options("/predict", headers={"Origin": "https://viewer.example.org",
                                                   "Access-Control-Request-Method": "POST"})
        assert preflight.headers["access-control-allow-origin"] == "https://viewer.example.org"
        other = c.get("/health", headers={"Origin": "https://evil.example.com"})
        assert "access-control-allow-origin" not in other.headers


def test_every_route_the_openapi_document_marks_as_keyed_refuses_a_missing_key() -> None:
    """The key is checked in one place (the admission middleware); the document must say the same."""
    settings = ServerSettings(models=["attention-unet"], default_model="attention-unet", api_key="s3cret")
    with TestClient(create_app(settings)) as c:
        for path in ["/openapi.json", "/docs", "/redoc"]:  # the documents need the key too, by default
            assert c.get(path).status_code == 401, path
        schema = c.get("/openapi.json", headers={"X-API-Key": "s3cret"}).json()
        assert schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
        keyed = {(method.upper(), path) for path, operations in schema["paths"].items()
                 for method, operation in operations.items() if operation.get("security")}
        assert keyed == {("POST", "/predict"), ("POST", "/predict/batch"), ("POST", "/evaluate"), ("GET", "/models"),
                         ("GET", "/models/by-sequence")}
        assert all("401" in schema["paths"][path][method.lower()]["responses"] for method, path in keyed)
        for method, path in [*keyed, ("POST", "/predict/")]:  # /predict/ is the brief's address, not in the document
            refused = c.request(method, path)
            assert refused.status_code == 401, (method, path)
            assert "X-API-Key" in refused.json()["detail"] and refused.headers["www-authenticate"] == "APIKey"
            assert refused.json()["request_id"] == refused.headers["x-request-id"]
        for path in ["/health", "/ready"]:
            assert c.get(path).status_code == 200, path
        assert c.get("/nowhere").status_code == 404 and c.get("/predict").status_code == 405  # as without a key
    with TestClient(create_app(settings.model_copy(update={"public_docs": True}))) as c:
        assert all(c.get(path).status_code == 200 for path in ["/openapi.json", "/docs", "/redoc"])
        assert c.get("/models").status_code == 401


def test_unknown_model_and_png_of_a_volume_are_refused_before_inference(
        client: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slice_png = ("s.png", png(SLICE.image))
    monkeypatch.setattr(client.app.state.queue, "run", lambda job: pytest.fail("the request was queued"))
    for path, files in [("/predict", {"file": slice_png}), ("/predict/batch", [("files", slice_png)]),
                        ("/evaluate", {"file": slice_png, "mask": ("m.png", encode_mask_png(SLICE.mask))})]:
        response = client.post(f"{path}?model=resnet", files=files)
        assert response.status_code == 422 and "unknown model 'resnet'" in response.json()["detail"], path
    monkeypatch.undo()
    monkeypatch.setattr(Predictor, "predict", lambda *a, **k: pytest.fail("the network ran"))
    volume, _ = nifti_volume(tmp_path)
    response = client.post("/predict?format=png", files={"file": ("b.nii.gz", volume)})
    detail = response.json()["detail"]
    assert response.status_code == 422 and "format=png" in detail and "holds one slice" in detail


def test_settings_come_from_the_environment_and_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METASEG_MODELS", json.dumps(["unetpp"]))
    monkeypatch.setenv("METASEG_DEFAULT_MODEL", "unetpp")
    monkeypatch.setenv("METASEG_QUEUE_SIZE", "3")
    settings = ServerSettings()
    assert settings.models == ["unetpp"] and settings.queue_size == 3
    monkeypatch.setenv("METASEG_DEFAULT_MODEL", "ensemble")
    with pytest.raises(ValueError, match="not among the loaded models"):
        ServerSettings()


def test_openapi_schema_validates_and_documents_the_contract(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    validate(schema)
    assert {"/predict", "/predict/batch", "/evaluate", "/models", "/health", "/ready"} <= set(schema["paths"])
    predict = schema["paths"]["/predict"]["post"]
    assert {p["name"] for p in predict["parameters"]} >= {"model", "threshold", "tta", "format", "min_lesion_size"}
    assert {"413", "415", "422", "503"} <= set(predict["responses"])
    assert schema["components"]["schemas"]["PredictionResult"]["examples"]


def test_unknown_slice_spacing_is_null_in_json_not_a_500(client: TestClient) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = MRImageStorage, meta.MediaStorageSOPInstanceUID, "MR"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 64, 64, 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation, ds.PixelSpacing = 15, 0, [0.5, 0.5]  # no slice thickness
    ds.PixelData = (SLICE.image[::4, ::4].astype(np.uint16) * 10).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    response = client.post("/predict?format=json", files={"file": ("one.dcm", buffer.getvalue())})
    assert response.status_code == 200, response.text
    assert response.json()["spacing_mm"] == [None, 0.5, 0.5]


def test_same_option_given_both_ways_in_different_spellings_is_accepted(client: TestClient) -> None:
    response = client.post("/predict?format=json&threshold=0.5&tta=true", files={"file": ("s.png", png(SLICE.image))},
                           data={"threshold": "0.50", "tta": "1"})
    assert response.status_code == 200, response.text
    assert response.json()["settings"]["threshold"] == 0.5 and response.json()["settings"]["tta"] is True


def test_wrong_key_or_full_queue_is_refused_before_the_upload_is_read() -> None:
    settings = ServerSettings(models=["attention-unet"], api_key="k", max_upload_mb=1)
    assert settings.default_model == "attention-unet"  # the first loaded when ensemble is not
    with TestClient(create_app(settings)) as c:
        huge = b"\0" * (3 * 2**20)  # over the limit: a 413 would mean the body was looked at first
        refused = c.post("/predict", content=huge, headers={"Content-Type": "application/octet-stream"})
        assert refused.status_code == 401 and refused.json()["request_id"] == refused.headers["x-request-id"]
        queue = c.app.state.queue
        queue._admitted = queue.capacity  # as if every worker and queue place were taken
        try:
            busy = c.post("/predict", content=huge, headers={"X-API-Key": "k"})
        finally:
            queue._admitted = 0
        assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1


@pytest.mark.parametrize(("image", "truth", "pred_empty"), [
    (np.zeros((256, 256), np.uint8), SLICE.mask, True),
    (SLICE.image, np.zeros((256, 256), bool), False),
])
def test_evaluate_with_an_empty_prediction_or_truth_answers_null_hd95(client: TestClient, image: np.ndarray,
                                                                    truth: np.ndarray, pred_empty: bool) -> None:
    response = client.post("/evaluate", files={"file": ("s.png", png(image)), "mask": ("m.png", encode_mask_png(truth))})
    assert response.status_code == 200, response.text
    assert "NaN" not in response.text and "Infinity" not in response.text
    scores = response.json()["scores"]
    assert scores["hd95"] is None and scores["dice"] == 0.0
    assert (scores["predicted_voxels"] == 0) is pred_empty and (scores["true_voxels"] == 0) is not pred_empty


def test_models_lists_label_and_preprocessing_from_the_registry(client: TestClient) -> None:
    from metaseg_viewer.registry import describe_models

    shipped = {row["name"]: row for row in describe_models()}
    for row in client.get("/models").json():
        assert row["label"] == shipped[row["name"]]["label"]
        assert row["preprocess"] == shipped[row["name"]]["preprocess"]
