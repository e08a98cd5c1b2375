"""The training loop: one run folder, resumable, early-stopping, saving the best by validation.

Run folder contents: ``config.json``, ``split.json`` (patients on each side), ``metrics.csv`` (one
row per epoch), ``curves.png``, ``best.safetensors``/``best.json`` (highest validation per-volume
mean Dice), ``last.safetensors``/``last.json`` and ``state.pt`` (optimizer, schedule, counters,
random states; loaded with ``weights_only=True``) for ``--resume``.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceCELoss
from tqdm import tqdm

from metaseg_viewer.checkpoints import ModelCard, load_checkpoint, read_card, save_checkpoint
from metaseg_viewer.config import ModelConfig, PreprocessConfig
from metaseg_viewer.inference import default_device
from metaseg_viewer.models import build_model
from training.config import RunFolderError, TrainConfig
from training.data import find_slices, load_slices, read_split, split_volumes, write_split
from training.sampling import SliceSampler
from training.validation import validate

CSV_FIELDS = ["epoch", "phase", "train_loss", "lr", "val_pooled_dice", "val_volume_dice_mean",
              "val_volume_dice_median", "seconds"]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _lr_at(cfg: TrainConfig, progress: float) -> float:
    """Linear warm-up, then cosine decay to 1% at the end of the schedule (progress 0..1)."""
    if progress < cfg.warmup_fraction:
        return cfg.lr * max(0.05, progress / cfg.warmup_fraction)
    t = (progress - cfg.warmup_fraction) / max(1e-9, 1 - cfg.warmup_fraction)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def hardware() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _card(cfg: TrainConfig, name: str, train: list[str], val: list[str], metrics: dict, minutes: float,
          epoch: int, command: str, preprocess: PreprocessConfig, init: ModelCard | None = None) -> ModelCard:
    """The card of a checkpoint of this run; a fine-tuned model's minutes include its starting model's."""
    started_from = {} if init is None else {"started_from": {
        "checkpoint": cfg.init, "sha256": init.sha256, "command": init.training.get("command"),
        "minutes": init.training.get("minutes", 0.0)}}
    minutes += 0.0 if init is None else float(init.training.get("minutes", 0.0))
    return ModelCard(
        name=name,
        model=ModelConfig(cfg.arch, cfg.model_params),
        preprocess=preprocess,
        description=(
            f"{cfg.arch} trained to segment FLAIR abnormality of lower-grade glioma on axial FLAIR "
            "slices (LGG data set of Buda et al. 2019, TCGA-LGG). Not trained or validated on "
            "metastases or any other lesion type."
        ),
        training={
            "data": cfg.data,
            "train_patients": len(train),
            "validation_patients": val,
            "command": command,
            "epochs_completed": epoch,
            "minutes": round(minutes, 1),
            "hardware": hardware(),
            "config": cfg.to_dict(),
            **started_from,
        },
        metrics=metrics,
    )


def train(cfg: TrainConfig, resume: bool = False, command: str = "") -> Path:
    """Train one network; returns the run folder. Ctrl-C exits cleanly, keeping the state of the
    last completed epoch, from which ``--resume`` continues exactly.

    ``command`` is the command line that started the run, recorded in the model cards."""
    out = Path(cfg.out)
    if resume and not (out / "state.pt").exists():
        raise RunFolderError(f"nothing to resume in {out}: no state.pt (a run saves it after each completed epoch)")
    if not resume and any((out / name).exists() for name in ("state.pt", "metrics.csv", "best.safetensors")):
        raise RunFolderError(f"{out} already holds a run: continue it with --resume or choose a new --out")
    device = cfg.device or default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RunFolderError(f"device {device!r} requested but CUDA is not available here; use --device cpu")
    init_model, init_card = None, (read_card(cfg.init) if cfg.init else None)
    if cfg.init and not resume:
        init_model, init_card = load_checkpoint(cfg.init)
        if init_card.model != ModelConfig(cfg.arch, cfg.model_params):
            raise RunFolderError(f"--init {cfg.init} is a {init_card.model.arch} {init_card.model.params}, "
                                 f"not the requested {cfg.arch} {cfg.model_params}")
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    _seed_everything(cfg.seed)

    try:
        slices = find_slices(cfg.data)
        if resume:  # the saved split, never a new one: patients must not change sides
            train_vols, val_vols = read_split(out / "split.json", [s.volume for s in slices])
        elif init_card is not None:  # fine-tuning keeps the starting model's validation patients unseen
            val_vols = sorted(init_card.training.get("validation_patients", []))
            train_vols = sorted(set(s.volume for s in slices) - set(val_vols))
            if not val_vols or not train_vols:
                raise RunFolderError(f"{cfg.init}: its card lists no validation patients, or they are all the data")
            missing = set(val_vols) - set(s.volume for s in slices)
            if missing:
                raise RunFolderError(f"validation patients of {cfg.init} are missing from {cfg.data}: {sorted(missing)[:5]}")
            write_split(out / "split.json", train_vols, val_vols, cfg.seed)
            (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1) + "\n")
        else:
            train_vols, val_vols = split_volumes([s.volume for s in slices], cfg.val_fraction, cfg.seed)
            write_split(out / "split.json", train_vols, val_vols, cfg.seed)
            (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1) + "\n")
        preprocess_cfg = PreprocessConfig()
        train_set = load_slices([s for s in slices if s.volume in set(train_vols)], preprocess_cfg)
        val_set = load_slices([s for s in slices if s.volume in set(val_vols)], preprocess_cfg)
    except KeyboardInterrupt:
        print("\ninterrupted while loading data; nothing to save", flush=True)
        raise SystemExit(130) from None
    print(f"{len(train_set.images)} training slices ({len(train_vols)} patients), "
          f"{len(val_set.images)} validation slices ({len(val_vols)} patients), device {device}", flush=True)

    model = build_model(ModelConfig(cfg.arch, cfg.model_params))
    if init_model is not None:
        model.load_state_dict(init_model.state_dict())
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = DiceCELoss(sigmoid=True, batch=True)
    use_amp = device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    sampler = SliceSampler(train_set, cfg.crop, cfg.lesion_fraction, cfg.seed)

    start_epoch, best, stale, minutes_before = 0, -1.0, 0, 0.0
    history: list[dict] = []  # metrics.csv rows, saved inside state.pt so the CSV always matches it
    if resume:
        state = torch.load(out / "state.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, best, stale = int(state["epoch"]), float(state["best"]), int(state["stale"])
        minutes_before = float(state["minutes"])
        command = str(state["command"])  # the cards name the command that started the run
        history = json.loads(state["history"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(list(state["cuda_rng"]))
        extra = json.loads(state["python_rng"])
        sampler.rng.bit_generator.state = extra["sampler"]
        np.random.set_state(tuple(extra["numpy"]))
        random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in extra["random"]))
        print(f"resumed at epoch {start_epoch} (best per-volume Dice {best:.4f})", flush=True)

    t0 = time.perf_counter()
    elapsed = lambda: minutes_before + (time.perf_counter() - t0) / 60  # noqa: E731
    steps = max(1, cfg.samples_per_epoch // cfg.batch_size)
    epoch = start_epoch

    def progress(epoch_float: float) -> float:
        """Fraction of the schedule done: by wall-clock with a budget, else by epochs. A time
        budget keeps the whole schedule (warm-up, crops, whole slices, decay) inside it however
        busy the machine is."""
        by_epochs = epoch_float / cfg.epochs
        if cfg.minutes:
            return min(1.0, max(by_epochs, elapsed() / cfg.minutes))
        return min(1.0, by_epochs)

    def save_state(next_epoch: int) -> None:
        """Everything --resume needs, written atomically (temporary file, then rename)."""
        card = _card(cfg, "last", train_vols, val_vols, {}, elapsed(), next_epoch, command, preprocess_cfg, init_card)
        save_checkpoint(model, card, out / "last")
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                 "epoch": next_epoch, "best": best, "stale": stale, "minutes": elapsed(),
                 "torch_rng": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        rng = {"sampler": sampler.rng.bit_generator.state, "numpy": list(np.random.get_state()),
               "random": list(random.getstate())}
        rng["numpy"][1] = rng["numpy"][1].tolist()
        state["python_rng"] = json.dumps(rng)
        state["command"] = command
        state["history"] = json.dumps(history)
        torch.save(state, out / "state.pt.tmp")
        (out / "state.pt.tmp").replace(out / "state.pt")

    try:
        for epoch in range(start_epoch, cfg.epochs):
            full = progress(epoch) >= 1 - cfg.full_slice_fraction
            sampler.set_phase(None if full else cfg.crop, cfg.full_slice_lesion_fraction if full else cfg.lesion_fraction)
            model.train()
            losses = []
            bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs} {'slices' if full else 'crops'}",
                       file=sys.stdout, dynamic_ncols=True, mininterval=5)
            for step in bar:
                lr = _lr_at(cfg, progress(epoch + step / steps))
                for group in optimizer.param_groups:
                    group["lr"] = lr
                images, masks = sampler.batch(cfg.batch_size)
                x = torch.from_numpy(images)[:, None].to(device)
                y = torch.from_numpy(masks)[:, None].to(device)
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast("cuda", enabled=use_amp):
                    loss = loss_fn(model(x), y)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                losses.append(loss.item())
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", lr=f"{lr:.2e}")
            row = {"epoch": epoch + 1, "phase": "slices" if full else "crops", "train_loss": float(np.mean(losses)),
                   "lr": lr, "seconds": round(elapsed() * 60, 1)}
            last_epoch = epoch + 1 == cfg.epochs or progress(epoch + 1) >= 1.0
            if last_epoch or ((epoch + 1) % cfg.val_every == 0 and progress(epoch + 1) >= cfg.val_from):
                scores = validate(model.eval(), val_set, device)
                row.update({f"val_{k}": v for k, v in scores.items() if f"val_{k}" in CSV_FIELDS})
                if scores["volume_dice_mean"] > best:
                    best, stale = scores["volume_dice_mean"], 0
                    metrics = {"validation": {**scores, "patients": len(val_vols), "epoch": epoch + 1}}
                    save_checkpoint(model, _card(cfg, "best", train_vols, val_vols, metrics, elapsed(), epoch + 1, command, preprocess_cfg, init_card), out / "best")
                else:
                    stale += 1
                print(f"epoch {epoch + 1}: loss {row['train_loss']:.4f} val per-volume Dice {scores['volume_dice_mean']:.4f} "
                      f"pooled {scores['pooled_dice']:.4f} (best {best:.4f})", flush=True)
            history.append(row)
            save_state(epoch + 1)
            _write_csv(out / "metrics.csv", history)
            plot_curves(out)
            if stale >= cfg.patience:
                print(f"early stop: no improvement for {stale} validations", flush=True)
                break
            if last_epoch:
                print(f"schedule complete after epoch {epoch + 1} ({elapsed():.1f} min)", flush=True)
                break
    except KeyboardInterrupt:
        # The state of the last completed epoch is already on disk; saving mid-epoch weights
        # under an epoch boundary would make --resume replay steps.
        done = "nothing completed yet" if epoch == start_epoch and not (out / "state.pt").exists() else \
            f"--resume continues from the end of epoch {epoch}"
        print(f"\ninterrupted during epoch {epoch + 1}: {done} ({out})", flush=True)
        raise SystemExit(130) from None
    return out


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
    for key, label in (("val_volume_dice_mean", "per-volume mean Dice"), ("val_pooled_dice", "pooled Dice")):
        pts = [(int(r["epoch"]), float(r[key])) for r in rows if r[key]]
        if pts:
            b.plot(*zip(*pts), label=label)
    b.set(xlabel="epoch", ylabel="Dice", title="validation", ylim=(0, 1))
    if b.lines:
        b.legend()
    fig.tight_layout()
    fig.savefig(run / "curves.png", dpi=80)
    plt.close(fig)
