"""The training loop: one run folder, resumable, early-stopping, saving the best by validation.

:func:`train` is a short sequence of steps, each owned by one module: the run folder's rules and
the patient split (:mod:`training.run_folder`), the data, the network and its optimizer, the
saved state on ``--resume`` (:mod:`training.state`), then the epochs, paced by
:mod:`training.schedule`.

Run folder contents: ``config.json``, ``split.json`` (patients on each side), ``metrics.csv`` (one
row per epoch), ``curves.png``, ``best.safetensors``/``best.json`` (highest validation per-volume
mean Dice), ``last.safetensors``/``last.json`` and ``state.pt`` (optimizer, schedule, counters,
random states; loaded with ``weights_only=True``) for ``--resume``.
"""

from __future__ import annotations

import csv
import platform
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceCELoss
from tqdm import tqdm

from metaseg_viewer.checkpoints import ModelCard, load_checkpoint, read_card, save_checkpoint
from metaseg_viewer.config import ModelConfig, PreprocessConfig
from metaseg_viewer.inference import default_device
from metaseg_viewer.models import build_model
from metaseg_viewer.precision import autocast, resolve_precision
from training.config import TrainConfig, TrainingSettingsError
from training.data import SliceSet, find_slices, load_slices
from training.run_folder import check_run_folder, choose_split, split_report, write_run_files
from training.sampling import SliceSampler
from training.schedule import Schedule
from training.state import RunProgress, restore_state, save_state
from training.validation import shifted_set, validate

CSV_FIELDS = ["epoch", "phase", "train_loss", "lr", "val_pooled_dice", "val_volume_dice_mean",
              "val_volume_dice_median", "val_shifted_volume_dice_mean", "val_selection_score", "seconds"]


def train(cfg: TrainConfig, resume: bool = False, command: str = "") -> Path:
    """Train one network; returns the run folder. Ctrl-C exits cleanly, keeping the state of the
    last completed epoch, from which ``--resume`` continues exactly.

    ``command`` is the command line that started the run, recorded in the model cards."""
    out = Path(cfg.out)
    check_run_folder(out, resume)
    device = _device(cfg)
    init_model, init_card = _starting_model(cfg, resume)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    _seed_everything(cfg.seed)
    preprocess = PreprocessConfig()
    try:
        slices = find_slices(cfg.data)
        train_vols, val_vols = choose_split(cfg, [s.volume for s in slices], resume, init_card)
        val_vols, report_vols = split_report(cfg, val_vols, resume)
        if not resume:
            write_run_files(out, cfg, train_vols, val_vols, report_vols)
        train_set = load_slices([s for s in slices if s.volume in set(train_vols)], preprocess)
        val_set = load_slices([s for s in slices if s.volume in set(val_vols)], preprocess)
        val_sets = [val_set] + ([shifted_set(val_set, cfg.val_shift, preprocess, cfg.seed)] if cfg.val_shift else [])
    except KeyboardInterrupt:
        print("\ninterrupted while loading data; nothing to save", flush=True)
        raise SystemExit(130) from None
    print(f"{len(train_set.images)} training slices ({len(train_vols)} patients), "
          f"{len(val_set.images)} validation slices ({len(val_vols)} patients), device {device}, "
          f"precision {resolve_precision(cfg.precision, device)}", flush=True)

    nets = _build_nets(cfg, device, init_model)
    sampler = SliceSampler(train_set, cfg.crop, cfg.lesion_fraction, cfg.seed, cfg.robust_fraction, preprocess)
    progress = RunProgress(command=command)
    if resume:
        progress = restore_state(out / "state.pt", nets.model, nets.optimizer, nets.scaler, sampler.rng)
        print(f"resumed at epoch {progress.epoch} (best per-volume Dice {progress.best:.4f})", flush=True)
    run = _Run(cfg, out, train_vols, val_vols, report_vols, preprocess, progress.command, init_card)
    _run_epochs(run, nets, sampler, val_sets, progress)
    return out


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _device(cfg: TrainConfig) -> str:
    device = cfg.device or default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingSettingsError(f"device {device!r} requested but CUDA is not available here; use --device cpu")
    return device


def _starting_model(cfg: TrainConfig, resume: bool) -> tuple[torch.nn.Module | None, ModelCard | None]:
    """The ``--init`` checkpoint: its card always (this run's cards name it), its weights only for
    a new run (a resumed run continues from its own)."""
    if not cfg.init:
        return None, None
    if resume:
        return None, read_card(cfg.init)
    model, card = load_checkpoint(cfg.init)
    if card.model != ModelConfig(cfg.arch, cfg.model_params):
        raise TrainingSettingsError(f"--init {cfg.init} is a {card.model.arch} {card.model.params}, "
                                    f"not the requested {cfg.arch} {cfg.model_params}")
    return model, card


def hardware() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


@dataclass(frozen=True)
class _Run:
    """What the run's model cards record besides the weights and the metrics."""

    cfg: TrainConfig
    out: Path
    train_vols: list[str]
    val_vols: list[str]
    report_vols: list[str]
    preprocess: PreprocessConfig
    command: str
    init: ModelCard | None

    def card(self, name: str, epochs_done: int, minutes: float, metrics: dict) -> ModelCard:
        """A checkpoint's card; a fine-tuned model's minutes include its starting model's."""
        cfg, init = self.cfg, self.init
        started_from = {} if init is None else {"started_from": {
            "checkpoint": cfg.init, "sha256": init.sha256, "data": init.training.get("data"),
            "command": init.training.get("command"),
            "minutes": init.training.get("minutes", 0.0)}}
        minutes += 0.0 if init is None else float(init.training.get("minutes", 0.0))
        return ModelCard(
            name=name,
            model=ModelConfig(cfg.arch, cfg.model_params),
            preprocess=self.preprocess,
            description=(f"{cfg.arch} trained on {cfg.data} (a training checkpoint: `python -m training export "
                         "--purpose` writes what it is for, its sequence and target, into the shipped card)."),
            training={
                "data": cfg.data,
                "train_patients": len(self.train_vols),
                "validation_patients": sorted(self.val_vols + self.report_vols),
                **({"selection_patients": self.val_vols, "report_patients": self.report_vols} if self.report_vols else {}),
                "command": self.command,
                "epochs_completed": epochs_done,
                "minutes": round(minutes, 1),
                "hardware": hardware(),
                "precision": resolve_precision(cfg.precision, cfg.device or default_device()),
                "config": cfg.to_dict(),
                **started_from,
            },
            metrics=metrics,
        )


@dataclass(frozen=True)
class _Nets:
    """The network and what updates it, on one device. ``precision`` bf16: forward and loss under
    bf16 autocast (fp32 master weights and optimizer state; bf16 needs no loss scaling, so the
    scaler only stays for the state format)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss_fn: DiceCELoss
    device: str
    precision: str


def _build_nets(cfg: TrainConfig, device: str, init_model: torch.nn.Module | None) -> _Nets:
    model = build_model(ModelConfig(cfg.arch, cfg.model_params))
    if init_model is not None:
        model.load_state_dict(init_model.state_dict())
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    precision = resolve_precision(cfg.precision, device)
    return _Nets(model, optimizer, scaler, DiceCELoss(sigmoid=True, batch=True), device, precision)


def _run_epochs(run: _Run, nets: _Nets, sampler: SliceSampler, val_sets: list[SliceSet], progress: RunProgress) -> None:
    """Epochs until the schedule ends or validation stops improving, saving after each one."""
    cfg = run.cfg
    schedule = Schedule(cfg, progress.minutes)
    epoch = progress.epoch
    try:
        for epoch in range(progress.epoch, cfg.epochs):
            whole = schedule.whole_slices(epoch)
            sampler.set_phase(None if whole else cfg.crop, cfg.full_slice_lesion_fraction if whole else cfg.lesion_fraction)
            loss, lr = _train_epoch(nets, sampler, schedule, epoch, whole)
            row = {"epoch": epoch + 1, "phase": "slices" if whole else "crops", "train_loss": loss,
                   "lr": lr, "seconds": round(schedule.minutes() * 60, 1)}
            last = schedule.ends(epoch + 1)
            if last or schedule.validation_due(epoch + 1):
                _validate(run, nets, val_sets, progress, row, schedule)
            progress.history.append(row)
            progress.epoch, progress.minutes = epoch + 1, schedule.minutes()
            save_checkpoint(nets.model, run.card("last", progress.epoch, progress.minutes, {}), run.out / "last")
            save_state(run.out / "state.pt", progress, nets.model, nets.optimizer, nets.scaler, sampler.rng)
            _write_csv(run.out / "metrics.csv", progress.history)
            plot_curves(run.out)
            if progress.stale >= cfg.patience:
                print(f"early stop: no improvement for {progress.stale} validations", flush=True)
                break
            if last:
                print(f"schedule complete after epoch {epoch + 1} ({schedule.minutes():.1f} min)", flush=True)
                break
    except KeyboardInterrupt:
        # The state of the last completed epoch is already on disk; saving mid-epoch weights
        # under an epoch boundary would make --resume replay steps.
        done = "nothing completed yet" if not (run.out / "state.pt").exists() else \
            f"--resume continues from the end of epoch {epoch}"
        print(f"\ninterrupted during epoch {epoch + 1}: {done} ({run.out})", flush=True)
        raise SystemExit(130) from None


def _train_epoch(nets: _Nets, sampler: SliceSampler, schedule: Schedule, epoch: int, whole: bool) -> tuple[float, float]:
    """One epoch of optimizer steps (the learning rate set before each); returns the mean loss
    and the last learning rate."""
    cfg = schedule.cfg
    steps = max(1, cfg.samples_per_epoch // cfg.batch_size)
    nets.model.train()
    losses = []
    bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs} {'slices' if whole else 'crops'}",
               file=sys.stdout, dynamic_ncols=True, mininterval=5)
    for step in bar:
        lr = schedule.lr(epoch + step / steps)
        for group in nets.optimizer.param_groups:
            group["lr"] = lr
        images, masks = sampler.batch(cfg.batch_size)
        x = torch.from_numpy(images)[:, None].to(nets.device)
        y = torch.from_numpy(masks)[:, None].to(nets.device)
        nets.optimizer.zero_grad(set_to_none=True)
        with autocast(nets.precision, nets.device):  # type: ignore[arg-type]
            loss = nets.loss_fn(nets.model(x).float(), y)
        loss.backward()
        nets.optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", lr=f"{lr:.2e}")
    return float(np.mean(losses)), lr


def _validate(run: _Run, nets: _Nets, val_sets: list[SliceSet], progress: RunProgress, row: dict,
              schedule: Schedule) -> None:
    """Score the validation patients into ``row`` (as they are, and shifted when the run has a
    ``val_shift``); the selection score is the mean per-volume Dice over those sets. A new best is
    saved as ``best``, otherwise the validation counts towards early stopping."""
    model = nets.model.eval()
    scores = validate(model, val_sets[0], nets.device)
    shifted = [validate(model, data, nets.device) for data in val_sets[1:]]
    selection = float(np.mean([scores["volume_dice_mean"]] + [s["volume_dice_mean"] for s in shifted]))
    row.update({f"val_{k}": v for k, v in scores.items() if f"val_{k}" in CSV_FIELDS})
    row["val_selection_score"] = selection
    if shifted:
        row["val_shifted_volume_dice_mean"] = shifted[0]["volume_dice_mean"]
    if selection > progress.best:
        progress.best, progress.stale = selection, 0
        extra = {"shifted": {"condition": run.cfg.val_shift, **shifted[0]}, "selection_score": selection} if shifted else {}
        metrics = {"validation": {**scores, **extra, "patients": len(run.val_vols), "epoch": row["epoch"]}}
        save_checkpoint(nets.model, run.card("best", row["epoch"], schedule.minutes(), metrics), run.out / "best")
    else:
        progress.stale += 1
    shifted_text = f" {run.cfg.val_shift} {shifted[0]['volume_dice_mean']:.4f}" if shifted else ""
    print(f"epoch {row['epoch']}: loss {row['train_loss']:.4f} val per-volume Dice {scores['volume_dice_mean']:.4f} "
          f"pooled {scores['pooled_dice']:.4f}{shifted_text} (best selection score {progress.best:.4f})", flush=True)


def _write_csv(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows({k: row.get(k, "") for k in CSV_FIELDS} for row in rows)
    tmp.replace(path)


def plot_curves(run: Path) -> None:
    """``curves.png``: training loss and validation Dice per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(run / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    epochs = [int(r["epoch"]) for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(epochs, [float(r["train_loss"]) for r in rows])
    a.set(xlabel="epoch", ylabel="Dice + BCE loss", title="training loss")
    for key, label in (("val_volume_dice_mean", "per-volume mean Dice"), ("val_pooled_dice", "pooled Dice"),
                       ("val_shifted_volume_dice_mean", "per-volume mean Dice, shifted")):
        pts = [(int(r["epoch"]), float(r[key])) for r in rows if r.get(key)]
        if pts:
            b.plot(*zip(*pts), label=label)
    b.set(xlabel="epoch", ylabel="Dice", title="validation", ylim=(0, 1))
    if b.lines:
        b.legend()
    fig.tight_layout()
    fig.savefig(run / "curves.png", dpi=80)
    plt.close(fig)
