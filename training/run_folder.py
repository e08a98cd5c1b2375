"""The run folder's rules: never overwrite a run, resume only a saved one, and keep every patient
on one side of the split for the whole life of a model.

A new run writes ``split.json`` (patients on each side) and ``config.json`` (its
:class:`~training.config.TrainConfig`) before training; a resumed run reads its saved split; a
fine-tuned run (``--init``) keeps its starting model's validation patients, so they stay unseen.
With ``report_fraction`` a seeded share of the validation patients becomes the *report* group:
no epoch, threshold or size is chosen on them, so the figures measured there are not optimistic.
"""

from __future__ import annotations

import json
from pathlib import Path

from metaseg_viewer.checkpoints import ModelCard
from training.config import RunFolderError, TrainConfig, TrainingSettingsError
from training.data import LayoutError, read_report, read_split, split_volumes, write_split

#: Files whose presence means the folder already holds a run.
RUN_MARKERS = ("state.pt", "metrics.csv", "best.safetensors")


def check_run_folder(out: Path, resume: bool) -> None:
    """Refuse to resume a folder without ``state.pt``, or to start a run over an existing one."""
    if resume and not (out / "state.pt").exists():
        raise RunFolderError(f"nothing to resume in {out}: no state.pt (a run saves it after each completed epoch)")
    if not resume and any((out / name).exists() for name in RUN_MARKERS):
        raise RunFolderError(f"{out} already holds a run: continue it with --resume or choose a new --out")


def choose_split(cfg: TrainConfig, volumes: list[str], resume: bool,
                 init_card: ModelCard | None) -> tuple[list[str], list[str]]:
    """(train, validation) patients: the saved split on resume, never a new one; the starting
    model's validation patients when fine-tuning on its data set; otherwise a new seeded split of ``volumes``."""
    available = set(volumes)
    if resume:
        path = Path(cfg.out) / "split.json"
        train, val = read_split(path)
        missing = sorted(set(train + val) - available)
        if missing:
            raise LayoutError(f"patients of {path} are missing from the data folder: {missing[:5]}")
        return train, val
    if init_card is not None and not _other_data_set(init_card, available):
        val = sorted(init_card.training.get("validation_patients", []))
        train = sorted(available - set(val))
        if not val or not train:
            raise TrainingSettingsError(f"{cfg.init}: its card lists no validation patients, or they are all the data")
        missing = set(val) - available
        if missing:
            raise TrainingSettingsError(f"validation patients of {cfg.init} are missing from {cfg.data}: {sorted(missing)[:5]}")
        return train, val
    return split_volumes(volumes, cfg.val_fraction, cfg.seed)


def _other_data_set(init_card: ModelCard, available: set[str]) -> bool:
    """True when the starting model was trained on another data set (e.g. a FLAIR model starting a
    T1c run): none of its validation patients exist here, so none of this data was seen and a new
    split is drawn. A partial overlap stays an error (the wrong folder, or a damaged copy)."""
    val = set(init_card.training.get("validation_patients", []))
    return bool(val) and not (val & available)


def split_report(cfg: TrainConfig, val: list[str], resume: bool) -> tuple[list[str], list[str]]:
    """(selection, report) patients out of ``val``: the saved ones on resume, else a seeded
    ``report_fraction`` of them (none when it is 0)."""
    if resume:  # split.json's "validation" already holds the selection patients only
        return val, read_report(Path(cfg.out) / "split.json")
    if not cfg.report_fraction:
        return val, []
    if len(val) < 2:
        raise TrainingSettingsError(f"report_fraction needs at least 2 validation patients, found {len(val)}")
    selection, report = split_volumes(val, cfg.report_fraction, cfg.seed)
    return selection, report


def write_run_files(out: Path, cfg: TrainConfig, train: list[str], val: list[str], report: list[str]) -> None:
    """``split.json`` and ``config.json`` of a new run (a resumed run keeps its own)."""
    write_split(out / "split.json", train, val, cfg.seed, report)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1) + "\n")
