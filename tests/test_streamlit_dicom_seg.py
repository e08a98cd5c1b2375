"""The Streamlit page with a real DICOM series (real LGG slices stacked by pydicom): a DICOM SEG and
a ``.seg.nrrd`` download whose bytes highdicom and the core read back on the uploaded series, and
true masks given as DICOM SEG or NRRD scored by geometry (a SEG of another series refused, naming
both). The patient's name, ID and birth date appear in no download's file name or lesion table."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit", reason="the web extra is not installed (pip install -e '.[web]')")
import highdicom as hd  # noqa: E402
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage  # noqa: E402
from streamlit.testing.v1 import AppTest, app_test  # noqa: E402

from dicom_series import BIRTH_DATE, PATIENT_ID, PATIENT_NAME, write_series  # noqa: E402
from metaseg_viewer.evaluation import read_true_mask, score_against  # noqa: E402
from metaseg_viewer.io import read_scan  # noqa: E402
from metaseg_viewer.io.dicom_seg import seg_bytes  # noqa: E402
from metaseg_viewer.io.nrrd import nrrd_bytes  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app" / "app.py")
SECRETS = (*PATIENT_NAME.split("^"), PATIENT_ID, BIRTH_DATE)


@pytest.fixture()
def served(monkeypatch: pytest.MonkeyPatch) -> dict:
    """What the page served for download, by media file id (AppTest drops its store after each run)."""
    files: dict = {}

    class Keeping(MemoryMediaFileStorage):
        def load_and_get_id(self, *args, **kwargs):  # noqa: ANN002, ANN003 - streamlit's signature
            file_id = super().load_and_get_id(*args, **kwargs)
            files[file_id] = self._files_by_id[file_id]
            return file_id

    monkeypatch.setattr(app_test, "MemoryMediaFileStorage", Keeping)
    return files


def download(at: AppTest, served: dict, label: str) -> tuple[bytes, str]:
    """The bytes and file name behind the download button ``label``."""
    button = next(b for b in at.get("download_button") if b.proto.label == label)
    kept = served[Path(button.proto.url).name.split(".")[0]]
    return bytes(kept.content), kept.filename


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_a_dicom_series_gets_seg_and_nrrd_downloads_and_seg_or_nrrd_truths_score(shared_data: Path, tmp_path: Path,
                                                                                 served: dict) -> None:
    series = write_series(shared_data, tmp_path / "study", oblique=True, slices=(9, 12, 14))
    other = write_series(shared_data, tmp_path / "other", slices=(12,))
    at = AppTest.from_file(APP, default_timeout=600)
    at.run()
    at.selectbox(key="model").set_value("attention-unet")
    at.file_uploader(key="uploads").set_value(
        [(p.name, p.read_bytes(), "application/dicom") for p in sorted(series.folder.iterdir())]).run()
    assert not at.exception and not at.error
    at.radio(key="view").set_value("downloads").run()
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Mask (NIfTI)", "Mask (.seg.nrrd, 3D Slicer)", "Mask (DICOM SEG)", "Overlay (PNG)",
                      "Lesion table (CSV)"]
    [result] = at.session_state["results"].values()
    page_mask = result.prediction.mask  # the page runs at the card's settings here
    assert page_mask.any()  # the model found lesion, so the SEG has frames to check
    scan = read_scan(series.folder)

    data, name = download(at, served, "Mask (DICOM SEG)")
    assert name == "series_mask.seg.dcm"
    seg = hd.seg.segread(BytesIO(data))
    assert [str(r.SeriesInstanceUID) for r in seg.ReferencedSeriesSequence] == [series.series_uid]
    sources = {f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
               for f in seg.PerFrameFunctionalGroupsSequence}
    assert sources <= set(series.sop_uids)
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == (result.prediction.model_name,
                                                                     result.prediction.model_version)
    assert np.array_equal(read_true_mask(data, scan), page_mask)
    nrrd_data, nrrd_name = download(at, served, "Mask (.seg.nrrd, 3D Slicer)")
    assert nrrd_name == "series_mask.seg.nrrd" and np.array_equal(read_true_mask(nrrd_data, scan), page_mask)
    table, _ = download(at, served, "Lesion table (CSV)")
    kept = "".join(f.filename or "" for f in served.values()) + table.decode()
    assert not [s for s in SECRETS if s in kept]

    uids = [str(scan.dicom.headers[i].SOPInstanceUID) for i, _ in scan.dicom.frames]
    truth = np.stack([series.truth[series.sop_uids.index(uid)] for uid in uids])
    expected = f"{score_against(page_mask, truth, scan.spacing)['dice']:.3f}"
    truth_seg = seg_bytes(truth, scan, "", "", algorithm_type="manual")
    at.radio(key="view").set_value("lesions").run()
    for upload in (("truth.seg.dcm", truth_seg, "application/dicom"),
                   ("truth.seg.nrrd", nrrd_bytes(truth, scan), "application/octet-stream")):
        at.file_uploader(key="truth").set_value(upload).run()
        assert not at.exception and not at.error
        assert metric(at, "Dice") == expected
        assert any(f"Scores against {upload[0]}" in m.value for m in at.markdown)

    elsewhere = read_scan(other.folder)
    elsewhere_seg = seg_bytes(other.truth, elsewhere, "", "", algorithm_type="manual")
    at.file_uploader(key="truth").set_value(("other.seg.dcm", elsewhere_seg, "application/dicom")).run()
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert other.series_uid in error and series.series_uid in error
