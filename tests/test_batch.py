"""``metaseg batch`` / ``run_batch``: real LGG slices and volumes built from them, on a real Dask
LocalCluster, in-process, and through the command line; resumed, changed, interrupted, and with
a worker process killed mid-run."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dicom_series import write_series
from metaseg_viewer.batch import SUMMARY_COLUMNS, BatchSettings, find_studies, run_batch
from metaseg_viewer.errors import InputError
from metaseg_viewer.io import read_scan, write_mask_nifti, write_nifti
from metaseg_viewer.scan import Scan

pytestmark = pytest.mark.filterwarnings("ignore")
MODEL = BatchSettings(model="attention-unet")  # one network: the quickest shipped model
PATIENT = "TCGA_CS_4941_19960909"
CLI = [sys.executable, "-m", "metaseg_viewer.cli", "batch"]


def lgg_volume(shared_data: Path, path: Path, first: int, count: int, patient: str = PATIENT) -> Path:
    """``count`` consecutive real slices of one LGG patient as a NIfTI volume, its true mask beside
    it as ``<name>_mask.nii.gz``."""
    folder = shared_data / "lgg_flair" / patient
    image = np.stack([np.asarray(Image.open(folder / "images" / f"{patient}_{i}.png"))
                      for i in range(first, first + count)])
    mask = np.stack([np.asarray(Image.open(folder / "masks" / f"{patient}_{i}.png")) > 0
                     for i in range(first, first + count)])
    geometry = Scan(image, spacing=(2.5, 0.94, 0.94), is_volume=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_nifti(image, geometry, path)
    write_mask_nifti(mask, geometry, path.with_name(path.name.replace(".nii.gz", "_mask.nii.gz")))
    return path


@pytest.fixture(scope="module")
def archive(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Slices in the images/masks layout, two volumes, a DICOM series folder, a broken file and a note."""
    root = tmp_path_factory.mktemp("archive")
    source = shared_data / "lgg_flair" / PATIENT
    for kind in ("images", "masks"):
        (root / "slices" / kind).mkdir(parents=True)
        for i in (12, 14):
            shutil.copy(source / kind / f"{PATIENT}_{i}.png", root / "slices" / kind)
    lgg_volume(shared_data, root / "volumes" / "a.nii.gz", 10, 6)
    lgg_volume(shared_data, root / "volumes" / "b.nii.gz", 14, 5)
    write_series(shared_data, root / "dicom" / "series1", slices=(12, 14, 15))
    (root / "broken.png").write_bytes(b"this is not a PNG")
    (root / "notes.txt").write_text("not a study")
    return root


def no_temporary_names(out: Path) -> None:
    leftovers = [p for p in out.rglob("*") if ".tmp" in p.name or ".old-" in p.name]
    assert leftovers == [], f"partial outputs left: {leftovers}"


def summary(out: Path) -> list[dict[str, str]]:
    with (out / "summary.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def masks_of(out: Path, records: list[dict]) -> dict[str, np.ndarray]:
    return {r["study_id"]: read_scan(out / r["folder"] / r["files"]["mask"]).pixels
            for r in records if r["status"] != "failed"}


@pytest.fixture(scope="module")
def in_process(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("in-process")
    report = run_batch(archive, out, MODEL, scheduler="none", progress=False)
    return out, report.records


def test_finds_every_study_once_with_its_truth(archive: Path) -> None:
    studies, notes = find_studies(archive)
    by_id = {s.study_id: s for s in studies}
    assert sorted(by_id) == ["broken", "dicom__series1", "slices__images__TCGA_CS_4941_19960909_12",
                             "slices__images__TCGA_CS_4941_19960909_14", "volumes__a", "volumes__b"]
    assert by_id["volumes__a"].truth == str(archive / "volumes" / "a_mask.nii.gz")
    assert by_id["slices__images__TCGA_CS_4941_19960909_12"].truth.endswith("masks/TCGA_CS_4941_19960909_12.png")
    assert by_id["dicom__series1"].path == str(archive / "dicom" / "series1") and by_id["dicom__series1"].truth is None
    assert notes == ["passed over 1 file(s) of other types (e.g. notes.txt)"]


def test_in_process_run_segments_scores_and_reports_the_bad_file(in_process: tuple[Path, list[dict]]) -> None:
    out, records = in_process
    rows = {row["study_id"]: row for row in summary(out)}
    assert list(summary(out)[0]) == list(SUMMARY_COLUMNS)
    assert rows["broken"]["status"] == "failed" and "not an image or volume format" in rows["broken"]["error"]
    assert "Accepted" in rows["broken"]["error"]
    done = [r for r in records if r["status"] == "segmented"]
    assert len(done) == 5 and all(r["weights_sha256"] and r["input_sha256"] for r in done)
    for record in done:  # every study's files are there, complete
        assert {p.name for p in (out / record["folder"]).iterdir()} == {*record["files"].values(), "study.json"}
    assert float(rows["volumes__a"]["dice"]) > 0.7  # real slices with lesion, scored against their truth
    assert rows["dicom__series1"]["dice"] == ""  # no truth, no Dice
    # a volume's total lesion volume in mL: voxels x 2.5 x 0.94 x 0.94 mm³ / 1000
    a = next(r for r in records if r["study_id"] == "volumes__a")
    assert a["lesion_volume_ml"] == pytest.approx(a["lesion_voxels"] * 2.5 * 0.94 * 0.94 / 1000, rel=1e-3)
    with (out / "lesions.csv").open(newline="") as handle:
        lesions = list(csv.DictReader(handle))
    assert sum(r["study_id"] == "volumes__a" for r in lesions) == a["lesions"] > 0
    pq = pytest.importorskip("pyarrow.parquet")
    assert pq.read_table(out / "summary.parquet").num_rows == 6
    no_temporary_names(out)


def test_a_rerun_keeps_everything_and_a_change_is_redone(archive: Path, in_process: tuple[Path, list[dict]],
                                                         tmp_path: Path) -> None:
    source = tmp_path / "archive"
    shutil.copytree(archive, source)
    out = tmp_path / "out"
    first = run_batch(source, out, MODEL, scheduler="none", progress=False)
    stamp = (out / "studies" / "volumes__b" / "study.json").stat().st_mtime_ns
    again = run_batch(source, out, MODEL, scheduler="none", progress=False)
    assert {r["study_id"]: r["status"] for r in again.records} == {
        r["study_id"]: ("failed" if r["study_id"] == "broken" else "kept") for r in first.records}
    assert (out / "studies" / "volumes__b" / "study.json").stat().st_mtime_ns == stamp  # not rewritten
    # a changed input (other slices under the same name) and a changed truth are redone; the rest kept
    shutil.copy(source / "volumes" / "a.nii.gz", source / "volumes" / "b.nii.gz")
    shutil.copy(source / "volumes" / "a_mask.nii.gz", source / "volumes" / "b_mask.nii.gz")
    shutil.copy(source / "slices" / "masks" / f"{PATIENT}_14.png", source / "slices" / "masks" / f"{PATIENT}_12.png")
    changed = {r["study_id"]: r for r in run_batch(source, out, MODEL, scheduler="none", progress=False).records}
    assert changed["volumes__b"]["status"] == changed[f"slices__images__{PATIENT}_12"]["status"] == "segmented"
    assert changed["volumes__a"]["status"] == "kept"
    assert changed["volumes__b"]["lesion_voxels"] == changed["volumes__a"]["lesion_voxels"]
    # other settings are another result: everything is redone
    other = run_batch(source, out, BatchSettings(model="attention-unet", threshold=0.7), scheduler="none",
                      progress=False)
    assert {r["status"] for r in other.records} == {"segmented", "failed"}
    assert all(r["threshold"] == 0.7 for r in other.records if r["status"] == "segmented")
    no_temporary_names(out)


def test_local_cluster_masks_equal_the_in_process_run(archive: Path, in_process: tuple[Path, list[dict]],
                                                      tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    out_a, records_a = in_process
    report = run_batch(archive, tmp_path, MODEL, scheduler="local", workers=2, progress=False)
    assert [r["study_id"] for r in report.records] == [r["study_id"] for r in records_a]
    assert [r["status"] for r in report.records] == [r["status"] for r in records_a]
    expected, got = masks_of(out_a, records_a), masks_of(tmp_path, report.records)
    assert expected.keys() == got.keys()
    for study_id, mask in expected.items():
        np.testing.assert_array_equal(got[study_id], mask, err_msg=study_id)
    no_temporary_names(tmp_path)


def test_a_worker_killed_mid_study_still_gives_a_complete_summary(shared_data: Path, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    source = tmp_path / "volumes"
    for n in range(6):  # long enough per study that one is running when the worker is killed
        lgg_volume(shared_data, source / f"v{n}.nii.gz", 8 + n, 10)
    reference = run_batch(source, tmp_path / "reference", MODEL, scheduler="none", progress=False)
    out, killed, result = tmp_path / "out", [], {}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as cluster, distributed.Client(cluster) as client:
        pids = client.run(os.getpid)

        def run() -> None:
            result["report"] = run_batch(source, out, MODEL, scheduler=cluster.scheduler_address, progress=False)

        runner = threading.Thread(target=run)
        runner.start()
        deadline, most_tasks = time.monotonic() + 300, 0
        while runner.is_alive() and time.monotonic() < deadline:
            most_tasks = max(most_tasks, client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)))
            busy = [worker for worker, keys in client.processing().items() if keys]
            started = (out / "studies").is_dir() and any((out / "studies").iterdir())
            if busy and started and not killed:  # a study is on a worker, and the model is loaded there
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(pids[busy[0]])
            time.sleep(0.05)
        runner.join(timeout=60)
    assert 1 <= most_tasks <= 4, most_tasks  # two studies per worker in flight, not the whole archive
    assert killed, "no study was seen running on a worker"
    records = result["report"].records
    assert sorted(r["study_id"] for r in records) == [f"v{n}" for n in range(6)]  # each exactly once
    assert all(r["status"] == "segmented" for r in records), [r.get("error") for r in records]
    assert [row["study_id"] for row in summary(out)] == [f"v{n}" for n in range(6)]
    expected, got = masks_of(tmp_path / "reference", reference.records), masks_of(out, records)
    for study_id, mask in expected.items():
        np.testing.assert_array_equal(got[study_id], mask, err_msg=study_id)
    no_temporary_names(out)


def test_manifest_with_truth_and_a_missing_file(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "lgg_flair" / PATIENT
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("study_id,path,truth\n"
                        f"s12,{source / 'images' / f'{PATIENT}_12.png'},{source / 'masks' / f'{PATIENT}_12.png'}\n"
                        "gone,missing/scan.nii.gz,\n", encoding="utf-8")
    run = subprocess.run([*CLI, str(manifest), "--out", str(tmp_path / "out"), "--scheduler", "none",
                          "--model", "attention-unet"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert f"error: gone: {tmp_path / 'missing' / 'scan.nii.gz'}: no such file or folder" in run.stderr
    assert "2 studies: 1 segmented, 0 kept from an earlier run, 1 failed" in run.stdout
    rows = {row["study_id"]: row for row in summary(tmp_path / "out")}
    assert float(rows["s12"]["dice"]) > 0.5 and rows["gone"]["status"] == "failed"


@pytest.mark.parametrize(("text", "message"), [
    ("id,file\na,b.png\n", "missing column(s) study_id, path"),
    ("study_id,path\na,x.png\na,y.png\n", "study_id 'a' appears twice"),
    ("study_id,path\n../up,x.png\n", "not usable as a folder name"),
    ("study_id,path\n", "no rows"),
])
def test_a_malformed_manifest_is_refused_before_anything_runs(tmp_path: Path, text: str, message: str) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_batch(manifest, tmp_path / "out", MODEL, scheduler="none", progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    empty, one, out = tmp_path / "empty", tmp_path / "one", tmp_path / "out"
    empty.mkdir()
    one.mkdir()
    (one / "x.png").write_bytes(b"")
    for args, message in (([str(tmp_path / "nowhere")], "not a folder or a .csv manifest"),
                          ([str(empty)], "no studies found"),
                          ([str(empty), "--model", "nonesuch"], "unknown model"),
                          ([str(empty), "--scheduler", "sideways"], "scheduler 'sideways' not understood"),
                          ([str(one), "--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler at tcp://127.0.0.1:9")):
        run = subprocess.run([*CLI, *args, "--out", str(out)], capture_output=True, text=True, timeout=120)
        assert run.returncode == 2, (args, run.stderr)
        assert message in run.stderr and "Traceback" not in run.stderr, run.stderr


@pytest.mark.parametrize("scheduler", ["none", "local"])
def test_ctrl_c_leaves_no_partial_study_and_the_next_run_continues(shared_data: Path, tmp_path: Path,
                                                                   scheduler: str) -> None:
    if scheduler == "local":
        pytest.importorskip("distributed")
    source = tmp_path / "volumes"
    for n in range(5):
        lgg_volume(shared_data, source / f"v{n}.nii.gz", 8 + n, 12)
    out = tmp_path / "out"
    process = subprocess.Popen([*CLI, str(source), "--out", str(out), "--scheduler", scheduler, "--model",
                                "attention-unet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not ((out / "studies").is_dir()
                                               and any(p.name.startswith("v") for p in (out / "studies").iterdir())):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)  # as Ctrl-C in a terminal sends it
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "run the same command again to continue" in stderr and "Traceback" not in stderr
    finished = [p for p in (out / "studies").iterdir()]
    assert 1 <= len(finished) < 5, "interrupt came too late to test anything"
    for folder in finished:  # every study folder there is complete
        assert (folder / "study.json").is_file() and len(list(folder.iterdir())) == 4
    assert {row["study_id"] for row in summary(out)} == {p.name for p in finished}
    no_temporary_names(out)
    rerun = run_batch(source, out, MODEL, scheduler="none", progress=False)
    statuses = {r["study_id"]: r["status"] for r in rerun.records}
    assert {s for s, status in statuses.items() if status == "kept"} == {p.name for p in finished}
    assert set(statuses.values()) <= {"kept", "segmented"} and len(statuses) == 5


def test_an_output_folder_inside_the_archive_is_not_read_as_studies(shared_data: Path, tmp_path: Path) -> None:
    source = tmp_path / "archive"
    lgg_volume(shared_data, source / "v.nii.gz", 10, 4)
    first = run_batch(source, source / "results", MODEL, scheduler="none", progress=False)
    again = run_batch(source, source / "results", MODEL, scheduler="none", progress=False)
    assert [(r["study_id"], r["status"]) for r in first.records] == [("v", "segmented")]
    assert [(r["study_id"], r["status"]) for r in again.records] == [("v", "kept")]


def test_an_unreachable_scheduler_leaves_the_earlier_summary_alone(shared_data: Path, tmp_path: Path) -> None:
    source = tmp_path / "archive"
    lgg_volume(shared_data, source / "v.nii.gz", 10, 4)
    out = tmp_path / "out"
    run_batch(source, out, MODEL, scheduler="none", progress=False)
    before = (out / "summary.csv").read_bytes()
    with pytest.raises(InputError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        run_batch(source, out, MODEL, scheduler="tcp://127.0.0.1:9", progress=False)
    assert (out / "summary.csv").read_bytes() == before


def test_a_checkpoint_whose_card_settings_change_is_redone(shared_data: Path, tiny_checkpoint: Path,
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    models = tmp_path / "models"
    models.mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(tiny_checkpoint.with_suffix(suffix), models / f"tiny{suffix}")
    source = tmp_path / "archive"
    lgg_volume(shared_data, source / "v.nii.gz", 10, 3)
    monkeypatch.chdir(tmp_path)  # a relative checkpoint path is the driver's, made absolute for the workers
    settings = BatchSettings(model="models/tiny.safetensors")
    first = run_batch(source, tmp_path / "out", settings, scheduler="none", progress=False)
    assert first.records[0]["status"] == "segmented" and first.records[0]["threshold"] == 0.5
    assert run_batch(source, tmp_path / "out", settings, scheduler="none", progress=False).records[0]["status"] == "kept"
    card = json.loads((models / "tiny.json").read_text())
    card["inference"]["threshold"] = 0.3  # the same weights, another validated setting
    (models / "tiny.json").write_text(json.dumps(card))
    redone = run_batch(source, tmp_path / "out", settings, scheduler="none", progress=False).records[0]
    assert redone["status"] == "segmented" and redone["threshold"] == 0.3


def test_a_study_that_kills_every_worker_it_is_given_is_a_failed_row(shared_data: Path, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    source = tmp_path / "archive"
    lgg_volume(shared_data, source / "v.nii.gz", 10, 3)
    out = tmp_path / "out"
    # Loading PyTorch and a model takes more than 250 MiB: Dask's nanny kills the worker each time
    # (and restarts it), until the scheduler gives up on the study (KilledWorker).
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                  memory_limit="250MiB", silence_logs=50) as cluster:
        report = run_batch(source, out, MODEL, scheduler=cluster.scheduler_address, progress=False)
    (record,) = report.records
    assert record["status"] == "failed"
    assert record["error"].startswith("the Dask workers running this study died each time it was tried")
    assert [(row["study_id"], row["status"]) for row in summary(out)] == [("v", "failed")]
    no_temporary_names(out)
