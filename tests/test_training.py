"""``python -m training``: layouts, patient split, and the real loop end to end on tiny runs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from metaseg_viewer.samples import make_slice
from training.cli import main
from training.data import LayoutError, find_slices, split_volumes

TINY = json.dumps({"channels": [4, 8, 16], "strides": [2, 2]})
EVAL_KEYS = {"pooled_dice", "pooled_iou", "per_volume_dice_mean", "per_volume_dice_median", "lesion_sensitivity",
             "lesion_precision", "lesion_f1", "lesionwise_dice", "hd95_median", "n_volumes", "n_slices",
             "seconds_per_slice"}


def _write_flat(root: Path, patients: int = 4, per_patient: int = 4, size: int = 64) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for p in range(patients):
        for n in range(1, per_patient + 1):
            s = make_slice(size=size, lesions=(6.0,) if n % 2 else (), seed=100 * p + n)
            cv2.imwrite(str(root / "images" / f"P{p}_{n}.png"), s.image)
            cv2.imwrite(str(root / "masks" / f"P{p}_{n}.png"), s.mask.astype("uint8") * 255)
    return root


def test_flat_layout_pairs_by_stem_and_volume_is_stem_prefix(tmp_path: Path) -> None:
    slices = find_slices(_write_flat(tmp_path / "d", patients=2, per_patient=3))
    assert [(s.volume, s.index) for s in slices] == [("P0", 1), ("P0", 2), ("P0", 3), ("P1", 1), ("P1", 2), ("P1", 3)]
    assert all(s.mask.parent.name == "masks" and s.mask.stem == s.image.stem for s in slices)


def test_kaggle_and_per_patient_layouts_from_generated_files(tmp_path: Path) -> None:
    import tifffile

    kaggle = tmp_path / "kaggle_3m" / "TCGA_XX_0001_20000101"
    kaggle.mkdir(parents=True)
    per_patient = tmp_path / "pp" / "P7"
    (per_patient / "images").mkdir(parents=True)
    (per_patient / "masks").mkdir()
    for n in (1, 2, 10):
        s = make_slice(size=64, seed=n)
        rgb = np.stack([s.image // 2, s.image, s.image // 3], axis=-1)  # FLAIR in channel 1
        tifffile.imwrite(kaggle / f"TCGA_XX_0001_20000101_{n}.tif", rgb)
        tifffile.imwrite(kaggle / f"TCGA_XX_0001_20000101_{n}_mask.tif", s.mask.astype(np.uint8) * 255)
        cv2.imwrite(str(per_patient / "images" / f"{n}.png"), s.image)
        cv2.imwrite(str(per_patient / "masks" / f"{n}.png"), s.mask.astype(np.uint8) * 255)
    found = find_slices(tmp_path / "kaggle_3m")
    assert [(s.volume, s.index) for s in found] == [("TCGA_XX_0001_20000101", n) for n in (1, 2, 10)]
    assert [s.index for s in find_slices(tmp_path / "pp")] == [1, 2, 10]  # numeric, not name order
    from metaseg_viewer.config import PreprocessConfig
    from training.data import load_slices

    loaded = load_slices(found, PreprocessConfig())
    expected = make_slice(size=64, seed=1)
    assert loaded.images.shape == (3, 256, 256)  # preprocessed by the core: resized to 256
    assert loaded.masks[0].sum() > 0.5 * expected.mask.sum() * (256 / 64) ** 2


def test_mask_of_another_size_is_refused_by_name(tmp_path: Path) -> None:
    from metaseg_viewer.config import PreprocessConfig
    from training.data import load_slices

    root = _write_flat(tmp_path / "d", patients=1, per_patient=1)
    cv2.imwrite(str(root / "masks" / "P0_1.png"), np.zeros((32, 48), np.uint8))
    with pytest.raises(LayoutError, match="P0_1.png is 48x32 pixels but its image"):
        load_slices(find_slices(root), PreprocessConfig())


def test_real_layouts_are_detected(shared_data: Path) -> None:
    kaggle = find_slices(shared_data / "lgg_kaggle3m_sample" / "kaggle_3m")
    assert len({s.volume for s in kaggle}) == 3
    assert all(s.mask.name == s.image.stem + "_mask.tif" for s in kaggle)
    flair = find_slices(shared_data / "lgg_flair")
    assert len({s.volume for s in flair}) == 88 and len(flair) == 3263
    assert all(s.image.parent.name == "images" and s.mask.parent.name == "masks" for s in flair[:50])


def test_layout_errors_name_the_offender(tmp_path: Path) -> None:
    root = _write_flat(tmp_path / "d", patients=1, per_patient=2)
    (root / "masks" / "P0_2.png").unlink()
    with pytest.raises(LayoutError, match="P0_2.png has no mask"):
        find_slices(root)
    odd = tmp_path / "odd" / "patientX"
    odd.mkdir(parents=True)
    (odd / "notes.txt").write_text("hello")
    with pytest.raises(LayoutError, match="patientX is in neither layout"):
        find_slices(tmp_path / "odd")
    with pytest.raises(LayoutError, match="does not exist"):
        find_slices(tmp_path / "missing")
    lonely = tmp_path / "lonely" / "images"
    lonely.mkdir(parents=True)
    with pytest.raises(LayoutError, match="has images/ but no masks/"):
        find_slices(tmp_path / "lonely")


def test_cli_reports_user_mistakes_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--crop", "8"]) == 2
    assert "crop must be at least 16" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_settings_errors_and_run_folder_errors_are_told_apart(tmp_path: Path) -> None:
    from training.config import RunFolderError, TrainConfig, TrainingError, TrainingSettingsError
    from training.loop import train

    assert issubclass(RunFolderError, TrainingError) and issubclass(TrainingSettingsError, TrainingError)
    assert not issubclass(TrainingSettingsError, RunFolderError)
    with pytest.raises(TrainingSettingsError, match="crop must be at least 16"):
        TrainConfig(data="", out="", crop=8)
    with pytest.raises(RunFolderError, match="nothing to resume"):
        train(TrainConfig(data=str(tmp_path), out=str(tmp_path / "r")), resume=True)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.csv").write_text("")
    with pytest.raises(RunFolderError, match="already holds a run"):
        train(TrainConfig(data=str(tmp_path), out=str(tmp_path / "r")))
    if not torch.cuda.is_available():
        with pytest.raises(TrainingSettingsError, match="CUDA is not available"):
            train(TrainConfig(data=str(tmp_path), out=str(tmp_path / "s"), device="cuda"))


def test_split_is_by_patient_seeded_and_disjoint() -> None:
    volumes = [f"P{i}" for i in range(20) for _ in range(5)]
    train, val = split_volumes(volumes, 0.2, seed=3)
    assert not set(train) & set(val) and set(train) | set(val) == set(volumes)
    assert len(val) == 4
    assert split_volumes(volumes, 0.2, seed=3) == (train, val)
    assert split_volumes(volumes, 0.2, seed=4) != (train, val)


def test_schedule_by_epochs_and_by_wall_clock() -> None:
    from training.config import TrainConfig
    from training.schedule import Schedule, lr_at

    cfg = TrainConfig(data="", out="", epochs=4, full_slice_fraction=0.5, val_every=2, val_from=0.5, lr=1.0)
    by_epochs = Schedule(cfg)
    assert [by_epochs.progress(e) for e in (0, 1, 2.5, 4, 5)] == [0.0, 0.25, 0.625, 1.0, 1.0]
    assert [by_epochs.whole_slices(e) for e in range(4)] == [False, False, True, True]
    assert [by_epochs.validation_due(e) for e in (1, 2, 3, 4)] == [False, True, False, True]
    assert [by_epochs.ends(e) for e in (3, 4)] == [False, True]
    assert lr_at(cfg, 0.0) == pytest.approx(0.05) and lr_at(cfg, 1.0) == pytest.approx(0.01)
    # Under a budget the schedule follows the minutes spent, earlier sessions of the run included.
    budget = Schedule(TrainConfig(data="", out="", epochs=100, minutes=10), minutes_before=7.5)
    assert 0.75 <= budget.progress(1) < 0.76 and budget.whole_slices(1) and not budget.ends(1)
    assert Schedule(TrainConfig(data="", out="", epochs=100, minutes=10), minutes_before=10).ends(1)


def _train(data: Path, out: Path, *extra: str) -> int:
    return main(["train", "--data", str(data), "--out", str(out), "--arch", "attention-unet", "--model-params", TINY,
                 "--samples-per-epoch", "16", "--batch-size", "8", "--crop", "32", "--val-fraction", "0.25",
                 "--lr", "0.01", "--threads", "2", *extra])


def test_training_loop_end_to_end_with_resume_and_evaluate(tmp_path: Path) -> None:
    data = _write_flat(tmp_path / "data")
    run = tmp_path / "run"
    assert _train(data, run, "--epochs", "6", "--full-slice-fraction", "0.34") == 0
    for name in ("config.json", "split.json", "metrics.csv", "curves.png", "best.safetensors", "best.json",
                 "last.safetensors", "last.json", "state.pt"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [r["phase"] for r in rows] == ["crops"] * 4 + ["slices"] * 2
    losses = [float(r["train_loss"]) for r in rows]
    assert min(losses[2:]) < losses[0]
    split = json.loads((run / "split.json").read_text())
    assert not set(split["train"]) & set(split["validation"])
    card = json.loads((run / "best.json").read_text())
    assert 0 <= card["metrics"]["validation"]["volume_dice_mean"] <= 1
    assert card["training"]["validation_patients"] == split["validation"]
    assert _train(data, run, "--epochs", "6") == 2  # an existing run is never overwritten
    assert card["training"]["command"].startswith("python -m training train --data")

    out = tmp_path / "eval" / "result.json"
    assert main(["evaluate", "--model", str(run / "best.safetensors"), "--data", str(data), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert EVAL_KEYS <= set(result)
    assert all(isinstance(result[k], (int, float)) for k in EVAL_KEYS)
    assert result["n_slices"] == 16 and result["n_volumes"] == 4
    assert out.with_name("result_volumes.csv").is_file() and out.with_name("result_sheet.png").is_file()


def test_init_fine_tunes_from_a_checkpoint_and_keeps_its_validation_patients(tmp_path: Path) -> None:
    data = _write_flat(tmp_path / "data", patients=4, per_patient=2)
    first, second = tmp_path / "first", tmp_path / "second"
    assert _train(data, first, "--epochs", "2") == 0
    # A different seed would pick other validation patients; --init must keep the first run's.
    assert _train(data, second, "--epochs", "1", "--seed", "5", "--full-slice-fraction", "1",
                  "--init", str(first / "best.safetensors")) == 0
    split_a = json.loads((first / "split.json").read_text())
    split_b = json.loads((second / "split.json").read_text())
    assert split_b["validation"] == split_a["validation"] and split_b["train"] == split_a["train"]
    card_a = json.loads((first / "best.json").read_text())
    card_b = json.loads((second / "last.json").read_text())
    assert card_b["training"]["started_from"]["sha256"] == card_a["sha256"]
    assert card_b["training"]["minutes"] >= card_a["training"]["minutes"]
    assert [r["phase"] for r in csv.DictReader(open(second / "metrics.csv"))] == ["slices"]
    # The starting weights must be a checkpoint of the same architecture and size.
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "third"), "--arch", "unetpp",
                 "--init", str(first / "best.safetensors")]) == 2


def test_ctrl_c_saves_and_resume_continues_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training.sampling import SliceSampler

    data = _write_flat(tmp_path / "data", patients=3, per_patient=2)
    straight, resumed = tmp_path / "a", tmp_path / "b"
    assert _train(data, straight, "--epochs", "3", "--val-every", "10") == 0

    real_batch = SliceSampler.batch
    calls = {"n": 0}

    def interrupted_batch(self, size):  # Ctrl-C after one optimizer step of epoch 3 (2 steps/epoch)
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real_batch(self, size)

    monkeypatch.setattr(SliceSampler, "batch", interrupted_batch)
    with pytest.raises(SystemExit) as stop:
        _train(data, resumed, "--epochs", "3", "--val-every", "10")
    assert stop.value.code == 130
    assert len(list(csv.DictReader(open(resumed / "metrics.csv")))) == 2
    monkeypatch.setattr(SliceSampler, "batch", real_batch)
    assert main(["train", "--data", str(data), "--out", str(resumed), "--resume"]) == 0
    a = [float(r["train_loss"]) for r in csv.DictReader(open(straight / "metrics.csv"))]
    b = [float(r["train_loss"]) for r in csv.DictReader(open(resumed / "metrics.csv"))]
    assert len(b) == 3
    assert b == a  # bit for bit: same batches, same augmentations, same optimizer state
    from safetensors.torch import load_file

    weights_a, weights_b = load_file(straight / "last.safetensors"), load_file(resumed / "last.safetensors")
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_train_on_real_slices(shared_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "lgg"
    for patient in sorted((shared_data / "lgg_flair").iterdir())[:3]:
        if patient.is_dir():
            shutil.copytree(patient, data / patient.name)
    assert _train(data, tmp_path / "run", "--epochs", "2", "--crop", "64", "--val-fraction", "0.34") == 0
    card = json.loads((tmp_path / "run" / "best.json").read_text())
    assert len(card["training"]["validation_patients"]) == 1


def test_export_ensemble_writes_the_card_the_registry_reads(tmp_path: Path) -> None:
    from metaseg_viewer.checkpoints import ModelCard, save_checkpoint
    from metaseg_viewer.config import ModelConfig
    from metaseg_viewer.models import build_model
    from metaseg_viewer.registry import SINGLE_MODELS, read_ensemble_card
    from training.export import export_ensemble

    data = _write_flat(tmp_path / "data", patients=2, per_patient=1)
    (tmp_path / "split.json").write_text(json.dumps({"seed": 0, "train": [], "validation": ["P0", "P1"]}))
    to, config = tmp_path / "weights", ModelConfig("attention-unet", json.loads(TINY))
    for seed, file in enumerate(SINGLE_MODELS.values()):
        torch.manual_seed(seed)
        card = ModelCard(name=file, model=config, training={"validation_patients": ["P1", "P0"]})
        save_checkpoint(build_model(config), card, to / file)
    ensemble = export_ensemble(list(SINGLE_MODELS), tmp_path / "split.json", str(data), to, command="test")
    written = json.loads((to / "ensemble.json").read_text())
    assert list(written) == ["card_format", "name", "description", "members", "inference", "metrics"]
    assert written["members"] == list(SINGLE_MODELS)  # names in the file, card paths once read
    assert written["metrics"]["validation"]["patients"] == 2 and written["metrics"]["measured_with"] == "test"
    read = read_ensemble_card(to / "ensemble.json")
    assert read.members == ensemble.members == tuple(to / f for f in SINGLE_MODELS.values())
    assert (read.name, read.inference, read.description) == (ensemble.name, ensemble.inference, ensemble.description)


def test_evaluation_hd95_follows_the_core_empty_convention(capsys: pytest.CaptureFixture[str]) -> None:
    from training.evaluate import VolumePrediction, score

    lesion = np.zeros((16, 16), np.float32)
    lesion[4:8, 4:8] = 1.0
    empty = np.zeros((16, 16), np.float32)
    volumes = [VolumePrediction("missed", [1], [empty], [empty], [lesion > 0]),  # empty prediction
               VolumePrediction("invented", [1], [empty], [lesion], [empty > 0]),  # empty truth
               VolumePrediction("clean", [1], [empty], [empty], [empty > 0])]  # both empty
    summary, rows = score(volumes, threshold=0.5, min_lesion_size=0)
    assert [r["hd95_px"] for r in rows] == [None, None, 0.0]  # undefined, undefined, nothing to find
    assert summary["hd95_median"] is None and summary["hd95_volumes"] == 0
    json.dumps(summary, allow_nan=False)  # never NaN or Infinity in the JSON


def test_evaluate_against_fp32_prints_both_runs_and_their_mask_agreement(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_checkpoint: Path) -> None:
    patient = next(p for p in sorted((shared_data / "lgg_flair").iterdir()) if p.is_dir())
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / patient.name).symlink_to(patient)
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(tiny_checkpoint), "--data", str(tmp_path / "data"), "--precision", "bf16",
                 "--against-fp32", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "in bf16" in printed and "masks bf16 vs fp32: pooled Dice" in printed
    saved = json.loads(out.read_text())
    assert saved["precision"] == "bf16" and 0 <= saved["against_fp32"]["mask_agreement_dice"] <= 1
    assert set(saved["against_fp32"]["fp32"]) >= {"per_volume_dice_mean", "pooled_dice"}


def test_short_t1c_run_on_real_brisc_slices_started_from_a_flair_model(shared_data: Path, tmp_path: Path) -> None:
    """BRISC's flat layout as it is (512 px JPEG images, PNG masks), a start from a model of
    another data set (a fresh split, recorded), and an export whose card says it is a T1c model."""
    brisc = shared_data / "brisc_t1c"
    if not (brisc / "images").is_dir():
        pytest.skip(f"BRISC T1c data not found at {brisc}")
    data = tmp_path / "brisc"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for image in sorted((brisc / "images").glob("*.jpg"))[::490][:8]:  # all three tumours and planes
        shutil.copy(image, data / "images" / image.name)
        shutil.copy(brisc / "masks" / f"{image.stem}.png", data / "masks" / f"{image.stem}.png")
    flair_run = tmp_path / "flair"
    assert _train(_write_flat(tmp_path / "flair_data", patients=4, per_patient=2), flair_run, "--epochs", "1") == 0
    run = tmp_path / "t1c"
    assert _train(data, run, "--epochs", "2", "--crop", "64", "--init", str(flair_run / "best.safetensors")) == 0
    split = json.loads((run / "split.json").read_text())
    assert len(split["validation"]) == 2 and all(v.startswith("brisc2025_train_") for v in split["validation"])
    card = json.loads((run / "last.json").read_text())
    assert card["training"]["started_from"]["data"] == str(tmp_path / "flair_data")
    assert main(["export", "--run", str(run), "--name", "t1c-attention-unet", "--to", str(tmp_path / "ship"),
                 "--purpose", "brisc-t1c"]) == 0
    shipped = json.loads((tmp_path / "ship" / "t1c_attention_unet.json").read_text())
    assert shipped["purpose"]["sequence"] == "t1c" and "CC BY 4.0" in shipped["purpose"]["licence"]
    assert "contrast-enhanced T1" in shipped["description"]
    assert 0 <= shipped["metrics"]["validation"]["per_volume_dice_mean"] <= 1
    out = tmp_path / "eval" / "t1c.json"
    assert main(["evaluate", "--model", str(tmp_path / "ship" / "t1c_attention_unet.safetensors"), "--data", str(data),
                 "--json", str(out), "--breakdown", "_(?P<tumour>gl|me|pi)_(?P<plane>ax|co|sa)"]) == 0
    table = json.loads(out.read_text())["breakdown"]
    assert set(table) == {"tumour", "plane"}
    assert sum(v["volumes"] for v in table["plane"].values()) == 8 == sum(v["volumes"] for v in table["tumour"].values())
    assert set(table["plane"]) <= {"ax", "co", "sa"}
    rows = list(csv.DictReader(open(out.with_name("t1c_volumes.csv"))))
    for plane, figures in table["plane"].items():
        dices = [float(r["dice"]) for r in rows if r["volume"].endswith(f"_{plane}")]
        assert figures["dice_mean"] == pytest.approx(np.mean(dices))
