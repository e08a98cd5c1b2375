"""Models chosen by the MRI sequence, through two doors: ``metaseg`` as a process on real files,
and the server as a real uvicorn on 127.0.0.1. Each door must say which model it used and why,
warn (not refuse) on a mismatch it can see, and refuse a contradictory or unknown request cleanly.

Only the choice is checked, never the T1c model's masks: its weights are a placeholder for now.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from factories import dicom_bytes, dicom_dataset, nifti_bytes, png_bytes, save_dicom
from metaseg_viewer.cli import main
from metaseg_viewer.inference import Predictor
from metaseg_viewer.samples import make_slice, make_volume

SIZE = 64  # small inputs: these tests are about the choice, not the masks
SLICE = make_slice(SIZE, seed=3)
T1C = make_slice(SIZE, seed=3, sequence="t1c")
DICOM_T1C = dicom_dataset((T1C.image.astype(np.uint16) * 4), SeriesDescription="AX T1 POST GAD")


def metaseg(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "metaseg_viewer.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def line_of(output: str, name: str) -> str:
    """The line ``metaseg segment`` printed about which model segmented ``name`` and why."""
    return next(line for line in output.splitlines() if line.startswith(name) and ", why: " in line)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sequences")
    (folder / "case_flair.png").write_bytes(png_bytes(SLICE.image))
    (folder / "scan.png").write_bytes(png_bytes(SLICE.image))
    (folder / "case_t1c.png").write_bytes(png_bytes(T1C.image))
    volume = make_volume(n_slices=3, size=SIZE, seed=3, sequence="t1c").image
    (folder / "brain_t1ce.nii").write_bytes(nifti_bytes(np.ascontiguousarray(np.transpose(volume, (2, 1, 0)))))
    save_dicom(DICOM_T1C, folder / "IM0001.dcm")  # the name says nothing; the DICOM description does
    return folder


# --- the command line ---------------------------------------------------------------------------


def test_segment_chooses_per_file_and_says_why(files: Path, tmp_path: Path) -> None:
    inputs = ["case_flair.png", "brain_t1ce.nii", "IM0001.dcm", "scan.png"]
    result = metaseg("segment", *inputs, "--out", str(tmp_path / "out"), "--no-tta", cwd=files)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "model ensemble (FLAIR), why: file name says 'flair'" in line_of(out, "case_flair.png")
    assert "model t1c-attention-unet (contrast-enhanced T1 (T1c)), why: file name says 't1ce'" in line_of(
        out, "brain_t1ce.nii")
    assert "why: DICOM SeriesDescription says 't1 post'" in line_of(out, "IM0001.dcm")
    assert "t1c-attention-unet" in line_of(out, "IM0001.dcm")
    assert "model ensemble (FLAIR), why: the default model (FLAIR): the input does not name its sequence" in line_of(
        out, "scan.png")
    assert "warning" not in result.stderr and "Traceback" not in result.stderr
    assert {p.name for p in (tmp_path / "out").glob("*_mask.*")} == {
        "case_flair_mask.png", "brain_t1ce_mask.nii.gz", "IM0001_mask.nii.gz", "scan_mask.png"}


def test_a_forced_model_on_a_file_that_names_another_sequence_is_warned_not_refused(files: Path,
                                                                                     tmp_path: Path) -> None:
    result = metaseg("segment", "case_t1c.png", "--model", "attention-unet", "--out", str(tmp_path), "--no-tta",
                     cwd=files)
    assert result.returncode == 0, result.stderr
    assert "model attention-unet (FLAIR), why: the model you chose" in line_of(result.stdout, "case_t1c.png")
    assert ("warning: case_t1c.png: attention-unet is a FLAIR model but the input looks like contrast-enhanced T1 "
            "(T1c) (file name says 't1c')") in result.stderr
    assert (tmp_path / "case_t1c_mask.png").is_file()


def test_sequence_option_picks_the_family_default_and_bad_requests_are_one_line_errors(files: Path,
                                                                                       tmp_path: Path) -> None:
    chosen = metaseg("segment", "scan.png", "--sequence", "t1c", "--out", str(tmp_path), "--no-tta", cwd=files)
    assert chosen.returncode == 0, chosen.stderr
    assert ("model t1c-attention-unet (contrast-enhanced T1 (T1c)), why: the sequence you chose"
            in line_of(chosen.stdout, "scan.png"))
    both = metaseg("segment", "scan.png", "--model", "attention-unet", "--sequence", "t1c", cwd=files)
    assert both.returncode == 2 and both.stdout == ""
    assert both.stderr.strip().splitlines() == [
        "error: model 'attention-unet' is a FLAIR model but sequence 't1c' was asked for: give one of the two"]
    unknown = metaseg("segment", "scan.png", "--sequence", "t2", cwd=files)
    assert unknown.returncode == 2 and "invalid choice: 't2'" in unknown.stderr and "Traceback" not in unknown.stderr


def test_one_predictor_per_chosen_model(files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    loaded: list[str] = []
    load = Predictor.load.__func__  # type: ignore[attr-defined]

    def counted(cls, model, *args, **kwargs):
        loaded.append(str(model))
        return load(cls, model, *args, **kwargs)

    monkeypatch.setattr(Predictor, "load", classmethod(counted))
    inputs = [str(files / name) for name in ("case_t1c.png", "IM0001.dcm", "brain_t1ce.nii", "case_flair.png")]
    assert main(["segment", *inputs, "--out", str(tmp_path), "--no-tta"]) == 0, capsys.readouterr().err
    assert loaded == ["t1c-attention-unet", "ensemble"]


def test_models_are_listed_by_sequence_with_their_purpose(tmp_path: Path) -> None:
    result = metaseg("models", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    flair = lines.index("FLAIR (--sequence flair; default ensemble)")
    t1c = lines.index("contrast-enhanced T1 (T1c) (--sequence t1c; default t1c-attention-unet)")
    assert flair < t1c
    names = [line.split()[0] for line in lines if line.startswith("  ") and not line.startswith("   ")]
    assert names == ["ensemble", "unetpp", "attention-unet", "t1c-attention-unet"]
    assert lines[flair + 1].split()[0] == "ensemble" and lines[t1c + 1].split()[0] == "t1c-attention-unet"
    purposes = [line.strip() for line in lines if line.strip().startswith("purpose:")]
    assert len(purposes) == 4 and "lower-grade glioma" in purposes[0] and "meningioma" in purposes[3]
    rows = json.loads(metaseg("models", "--json", cwd=tmp_path).stdout)
    assert [(r["name"], r["sequence"]) for r in rows][-1] == ("t1c-attention-unet", "t1c")


def test_a_t1c_sample_is_named_so_and_segmented_with_the_t1c_model(tmp_path: Path) -> None:
    assert metaseg("sample", "--sequence", "t1c", "--slices", "3", "--out", "demo", cwd=tmp_path).returncode == 0
    demo = tmp_path / "demo"
    assert {p.name for p in demo.iterdir()} == {"sample_t1c_slice.png", "sample_t1c_slice_truth.png",
                                                "sample_t1c_volume.nii.gz", "sample_t1c_volume_truth.nii.gz"}
    from metaseg_viewer.io import read_scan

    assert np.array_equal(read_scan(demo / "sample_t1c_slice.png").pixels[0], make_slice(sequence="t1c").image)
    segmented = metaseg("segment", "demo/sample_t1c_slice.png", "--no-tta", "--out", "out", cwd=tmp_path)
    assert segmented.returncode == 0, segmented.stderr
    assert "model t1c-attention-unet" in line_of(segmented.stdout, "demo/sample_t1c_slice.png")


# --- the server -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    pytest.importorskip("fastapi", reason="the server extra is not installed (pip install -e '.[server]')")
    from live_server import start_server, stop

    process, url = start_server({"METASEG_MODELS": json.dumps(["attention-unet", "t1c-attention-unet"]),
                                 "METASEG_DEFAULT_MODEL": "attention-unet", "METASEG_TORCH_THREADS": "1"})
    yield url
    log = stop(process)
    assert "Traceback" not in log, log


def post(url: str, name: str, data: bytes, **params: str):
    import httpx

    return httpx.post(url + "/predict", params={"format": "json", "tta": "false", **params},
                      files={"file": (name, data)}, timeout=120)


def test_server_lists_models_by_sequence(server: str) -> None:
    import httpx

    rows = httpx.get(server + "/models", timeout=30).json()
    assert [(r["name"], r["sequence"], r["default"], r["sequence_default"]) for r in rows] == [
        ("attention-unet", "flair", True, True), ("t1c-attention-unet", "t1c", False, True)]
    assert "meningioma" in rows[1]["purpose"]["target"] and rows[1]["purpose"]["sequence"] == "t1c"
    grouped = httpx.get(server + "/models/by-sequence", timeout=30).json()
    assert grouped == {"flair": {"label": "FLAIR", "default": "attention-unet", "models": ["attention-unet"]},
                       "t1c": {"label": "contrast-enhanced T1 (T1c)", "default": "t1c-attention-unet",
                               "models": ["t1c-attention-unet"]}}


def test_server_chooses_by_sequence_file_name_and_dicom_description(server: str) -> None:
    by_field = post(server, "scan.png", png_bytes(SLICE.image), sequence="t1c")
    assert by_field.status_code == 200, by_field.text
    body = by_field.json()
    assert (body["model"], body["sequence"], body["warnings"]) == ("t1c-attention-unet", "t1c", [])
    assert body["choice"]["reason"] == "the sequence you chose (contrast-enhanced T1 (T1c))"
    by_name = post(server, "brain_t1ce.png", png_bytes(T1C.image)).json()
    assert (by_name["model"], by_name["choice"]["reason"]) == (
        "t1c-attention-unet", "file name says 't1ce': contrast-enhanced T1 (T1c)")
    by_dicom = post(server, "IM0001.dcm", dicom_bytes(DICOM_T1C)).json()
    assert by_dicom["model"] == "t1c-attention-unet" and "SeriesDescription says 't1 post'" in by_dicom["choice"]["reason"]
    unnamed = post(server, "scan.png", png_bytes(SLICE.image)).json()
    assert unnamed["model"] == "attention-unet" and unnamed["choice"]["reason"].startswith("the default model (FLAIR)")


def test_server_warns_on_a_forced_mismatch_and_mixes_models_in_a_batch(server: str) -> None:
    import httpx

    forced = post(server, "case_t1c.png", png_bytes(T1C.image), model="attention-unet")
    assert forced.status_code == 200, forced.text
    [warning] = forced.json()["warnings"]
    assert "attention-unet is a FLAIR model but the input looks like contrast-enhanced T1" in warning
    assert forced.json()["choice"]["warnings"] == [warning]
    as_mask = httpx.post(server + "/predict", params={"model": "attention-unet", "tta": "false"},
                         files={"file": ("case_t1c.png", png_bytes(T1C.image))}, timeout=120)
    assert as_mask.status_code == 200 and as_mask.headers["x-warnings"] == "1"
    assert (as_mask.headers["x-model"], as_mask.headers["x-sequence"]) == ("attention-unet", "flair")
    batch = httpx.post(server + "/predict/batch", params={"tta": "false"}, timeout=120,
                       files=[("files", ("a_flair.png", png_bytes(SLICE.image))),
                              ("files", ("b_t1ce.png", png_bytes(T1C.image)))]).json()
    assert [r["result"]["model"] for r in batch["results"]] == ["attention-unet", "t1c-attention-unet"]


@pytest.mark.parametrize("params, words", [
    ({"sequence": "t2"}, "unknown sequence 't2'; accepted: flair, t1c"),
    ({"model": "attention-unet", "sequence": "t1c"}, "is a FLAIR model but sequence 't1c' was asked for"),
])
def test_server_refuses_unknown_or_contradictory_requests_with_a_422(server: str, params: dict, words: str) -> None:
    response = post(server, "scan.png", png_bytes(SLICE.image), **params)
    assert response.status_code == 422 and words in response.json()["detail"], response.text


def test_a_sequence_whose_models_are_not_loaded_is_a_422_naming_the_loaded_ones() -> None:
    pytest.importorskip("fastapi", reason="the server extra is not installed (pip install -e '.[server]')")
    from fastapi.testclient import TestClient

    from server.app import create_app
    from server.settings import ServerSettings

    with TestClient(create_app(ServerSettings(models=["attention-unet"], torch_threads=1))) as client:
        response = client.post("/predict", data={"sequence": "t1c"}, files={"file": ("s.png", png_bytes(SLICE.image))})
        assert response.status_code == 422
        assert response.json()["detail"] == "no contrast-enhanced T1 (T1c) model is loaded here; loaded: attention-unet"
        auto = client.post("/predict?format=json&tta=false", files={"file": ("s_t1c.png", png_bytes(T1C.image))})
        assert auto.status_code == 200 and auto.json()["model"] == "attention-unet"
        assert "no such model is loaded here" in auto.json()["choice"]["reason"]
        assert client.get("/models/by-sequence").json() == {
            "flair": {"label": "FLAIR", "default": "attention-unet", "models": ["attention-unet"]}}
