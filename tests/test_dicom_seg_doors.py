"""DICOM SEG through the doors: the CLI (a real process) and the server (a real uvicorn on
127.0.0.1) give the same SEG content for the same DICOM input, refuse it for other input with a
clear message, and never write the patient's name, ID or birth date to a log line or lesion CSV."""

from __future__ import annotations

import json
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed (pip install -e '.[server]')")
import highdicom as hd  # noqa: E402
import httpx  # noqa: E402

from dicom_series import BIRTH_DATE, PATIENT_ID, PATIENT_NAME, write_series  # noqa: E402
from factories import png_bytes  # noqa: E402
from live_server import REPO, start_server, stop  # noqa: E402

SECRETS = (*PATIENT_NAME.split("^"), PATIENT_ID, BIRTH_DATE)
THRESHOLD = "0.3"  # the untrained tiny network then marks some pixels, so the SEG has frames


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "metaseg_viewer.cli", "segment", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def _content(data: bytes) -> dict:
    """What two SEGs of one input must share, UIDs and dates aside."""
    seg = hd.seg.segread(BytesIO(data))
    frames = seg.PerFrameFunctionalGroupsSequence
    return {
        "pixels": seg.pixel_array.tobytes(),
        "sources": [f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID for f in frames],
        "positions": [[float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient] for f in frames],
        "series": [str(r.SeriesInstanceUID) for r in seg.ReferencedSeriesSequence],
        "algorithm": seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion,
    }


def test_cli_writes_a_seg_for_a_dicom_series_and_keeps_identifiers_out(shared_data: Path, tmp_path: Path,
                                                                       tiny_checkpoint: Path) -> None:
    series = write_series(shared_data, tmp_path / "series", oblique=True)
    out = tmp_path / "out"
    run = _cli(str(series.folder), "--format", "dicom-seg", "--model", str(tiny_checkpoint), "--device", "cpu",
               "--threshold", THRESHOLD, "--out", str(out))
    assert run.returncode == 0, run.stderr
    content = _content((out / "series_mask.seg.dcm").read_bytes())
    assert content["series"] == [series.series_uid] and set(content["sources"]) <= set(series.sop_uids)
    assert content["sources"]  # the threshold made some lesion
    written = run.stdout + run.stderr + "".join(p.name for p in out.iterdir()) + (out / "series_lesions.csv").read_text()
    assert not [s for s in SECRETS if s in written]


def test_cli_refuses_dicom_seg_for_a_png_before_inference(tmp_path: Path, tiny_checkpoint: Path) -> None:
    image = tmp_path / "slice.png"
    image.write_bytes(png_bytes(np.zeros((16, 16), np.uint8)))
    run = _cli(str(image), "--format", "dicom-seg", "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o"))
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "DICOM SEG is made for a DICOM series" in run.stderr and "accepted for it: auto, png" in run.stderr


def test_server_and_cli_give_the_same_seg_and_no_identifiers_in_logs(shared_data: Path, tmp_path: Path,
                                                                     tiny_checkpoint: Path) -> None:
    series = write_series(shared_data, tmp_path / "series", oblique=True, slices=(12,))
    source = next(series.folder.glob("*.dcm"))
    run = _cli(str(source), "--format", "dicom-seg", "--model", str(tiny_checkpoint), "--device", "cpu",
               "--threshold", THRESHOLD, "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    from_cli = (tmp_path / "out" / f"{source.stem}_mask.seg.dcm").read_bytes()
    process, url = start_server({"METASEG_MODELS": json.dumps([str(tiny_checkpoint)]), "METASEG_DEVICE": "cpu",
                                 "METASEG_TORCH_THREADS": "1"})
    try:
        response = httpx.post(f"{url}/predict", params={"format": "dicom-seg", "threshold": THRESHOLD},
                              files={"file": (source.name, source.read_bytes())}, timeout=120)
        refused = httpx.post(f"{url}/predict", params={"format": "dicom-seg"},
                             files={"file": ("slice.png", png_bytes(np.zeros((16, 16), np.uint8)))}, timeout=60)
        lesions = httpx.post(f"{url}/predict", params={"format": "json", "threshold": THRESHOLD},
                             files={"file": (source.name, source.read_bytes())}, timeout=120)
    finally:
        log = stop(process)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom"
    assert response.headers["content-disposition"].endswith('_mask.seg.dcm"')
    assert _content(response.content) == _content(from_cli)
    assert refused.status_code == 422 and "DICOM SEG is made for a DICOM series" in refused.text
    assert "accepted for it: auto, png (one slice), nifti or nrrd" in refused.text
    assert lesions.status_code == 200
    assert "Traceback" not in log
    assert not [s for s in SECRETS if s in log + run.stdout + run.stderr + lesions.text]
