"""The shipped models, found by name inside the installed package (offline).

``unetpp`` and ``attention-unet`` are single networks (``weights/<file>.safetensors`` + card);
``ensemble`` averages their probabilities, with its own validated inference settings in
``weights/ensemble.json``. Anything else given as a model is a path to a checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from metaseg_viewer.checkpoints import CARD_FORMAT, read_card
from metaseg_viewer.config import InferenceConfig
from metaseg_viewer.errors import CheckpointError

SINGLE_MODELS: dict[str, str] = {"unetpp": "unetpp.json", "attention-unet": "attention_unet.json"}
ENSEMBLE_NAME = "ensemble"
MODEL_NAMES: tuple[str, ...] = (*SINGLE_MODELS, ENSEMBLE_NAME)
DEFAULT_MODEL = "ensemble"


def weights_dir() -> Path:
    """Folder of the shipped weights inside the installed package."""
    return Path(str(files("metaseg_viewer") / "weights"))


@dataclass(frozen=True)
class EnsembleCard:
    """Members (card paths) and the inference settings the ensemble was validated with."""

    name: str
    members: tuple[Path, ...]
    inference: InferenceConfig
    description: str
    metrics: dict[str, Any]


def read_ensemble_card(path: Path) -> EnsembleCard:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"ensemble card {path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("card_format") != CARD_FORMAT or not data.get("members"):
        raise CheckpointError(f"ensemble card {path} needs card_format {CARD_FORMAT} and a members list")
    members = tuple(path.parent / SINGLE_MODELS.get(m, m) for m in data["members"])
    return EnsembleCard(
        name=str(data.get("name", ENSEMBLE_NAME)),
        members=members,
        inference=InferenceConfig.from_dict(data.get("inference", {})),
        description=str(data.get("description", "")),
        metrics=dict(data.get("metrics", {})),
    )


def resolve_model(name_or_path: str | Path) -> tuple[Path, ...] | EnsembleCard:
    """A shipped name → its card path(s); a path to a ``.safetensors``/``.json`` → itself."""
    key = str(name_or_path)
    if key in SINGLE_MODELS:
        return (weights_dir() / SINGLE_MODELS[key],)
    if key == ENSEMBLE_NAME:
        return read_ensemble_card(weights_dir() / "ensemble.json")
    path = Path(name_or_path)
    if path.suffix in (".safetensors", ".json") and path.exists():
        return (path,)
    raise CheckpointError(
        f"unknown model {key!r}: give one of {list(MODEL_NAMES)} or the path of a .safetensors "
        "checkpoint with its .json model card beside it"
    )


def describe_models() -> list[dict[str, Any]]:
    """One summary per shipped model (name, architecture, metrics, checksum), for listings."""
    rows: list[dict[str, Any]] = []
    for name, card_file in SINGLE_MODELS.items():
        card = read_card(weights_dir() / card_file)
        rows.append(
            {
                "name": name,
                "architecture": card.model.arch,
                "description": card.description,
                "sha256": card.sha256,
                "inference": card.inference.to_dict(),
                "metrics": card.metrics,
            }
        )
    ens = read_ensemble_card(weights_dir() / "ensemble.json")
    rows.append(
        {
            "name": ENSEMBLE_NAME,
            "architecture": "mean of " + " + ".join(read_card(m).model.arch for m in ens.members),
            "description": ens.description,
            "sha256": "+".join(read_card(m).sha256[:12] for m in ens.members),
            "inference": ens.inference.to_dict(),
            "metrics": ens.metrics,
        }
    )
    return rows
