"""``state.pt``: everything ``--resume`` needs to continue a run exactly where it stopped.

Saved after each completed epoch, never mid-epoch (those weights would make a resumed run replay
steps): the model, optimizer and gradient-scaler states, the run's counters and its metrics.csv
rows, and every random state (torch, CUDA, numpy, Python and the sampler's generator), so the
resumed run draws the same batches and augmentations. Only tensors, numbers and strings are
stored (the random states as JSON), so it loads with ``weights_only=True``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass
class RunProgress:
    """The counters of a run; ``epoch`` counts completed epochs, ``minutes`` all sessions."""

    epoch: int = 0
    best: float = -1.0  # highest validation per-volume mean Dice so far
    stale: int = 0  # validations since the best one
    minutes: float = 0.0
    command: str = ""  # the command line that started the run, named in its model cards
    history: list[dict[str, Any]] = field(default_factory=list)  # the rows of metrics.csv


def save_state(path: Path, progress: RunProgress, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, sampler_rng: np.random.Generator) -> None:
    """Write ``path`` atomically (a temporary file, then a rename), so a Ctrl-C never leaves half
    a state."""
    state: dict[str, Any] = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
        "epoch": progress.epoch, "best": progress.best, "stale": progress.stale, "minutes": progress.minutes,
        "torch_rng": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    rng = {"sampler": sampler_rng.bit_generator.state, "numpy": list(np.random.get_state()),
           "random": list(random.getstate())}
    rng["numpy"][1] = rng["numpy"][1].tolist()
    state["python_rng"] = json.dumps(rng)
    state["command"] = progress.command
    state["history"] = json.dumps(progress.history)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def restore_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                  scaler: torch.amp.GradScaler, sampler_rng: np.random.Generator) -> RunProgress:
    """Load ``path`` into the given objects and the global random generators; return the counters."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda_rng"]))
    extra = json.loads(state["python_rng"])
    sampler_rng.bit_generator.state = extra["sampler"]
    np.random.set_state(tuple(extra["numpy"]))
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in extra["random"]))
    return RunProgress(epoch=int(state["epoch"]), best=float(state["best"]), stale=int(state["stale"]),
                       minutes=float(state["minutes"]), command=str(state["command"]),
                       history=json.loads(state["history"]))
