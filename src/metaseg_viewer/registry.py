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
from typing import Any, ClassVar

from metaseg_viewer.checkpoints import CARD_FORMAT, ModelCard, read_card
from metaseg_viewer.config import InferenceConfig
from metaseg_viewer.errors import CheckpointError

#: Shipped single networks: registry name → card file in :func:`weights_dir`. Their order is the
#: order apps list and compare them in.
SINGLE_MODELS: dict[str, str] = {"unetpp": "unetpp.json", "attention-unet": "attention_unet.json"}
ENSEMBLE_NAME = "ensemble"
MODEL_NAMES: tuple[str, ...] = (*SINGLE_MODELS, ENSEMBLE_NAME)
DEFAULT_MODEL = ENSEMBLE_NAME
#: What the apps show for each shipped model (menus, layer names, captions), in menu order.
MODEL_LABELS: dict[str, str] = {ENSEMBLE_NAME: "Ensemble", "unetpp": "U-Net++", "attention-unet": "Attention U-Net"}


#: sha256 of each shipped weights file, recorded in the code. The card beside a weights file
#: catches corruption, not a swap of both files; a shipped file whose bytes differ from this is
#: refused. A user's own checkpoint (any other path) is trusted by its card alone.
SHIPPED_SHA256: dict[str, str] = {
    "unetpp.safetensors": "210841cd475ec06ba8d9609d0e4a601bd7a747bb89832905b9e7c704feb5d38c",
    "attention_unet.safetensors": "26bdf7681a46fbb48a82a1da04cd53c171b76d7be2b02e9db0d4d287f743dc08",
}


def shipped_sha256(path: str | Path) -> str | None:
    """The checksum recorded in :data:`SHIPPED_SHA256` for a shipped weights file (given it or
    its card), ``None`` for any file outside :func:`weights_dir`."""
    weights = Path(path).with_suffix(".safetensors")
    if weights.parent.resolve() != weights_dir().resolve():
        return None
    return SHIPPED_SHA256.get(weights.name)


def model_label(name: str) -> str:
    """The display label of a shipped model; a checkpoint path or unknown name shows as itself."""
    return MODEL_LABELS.get(name, name)


def weights_dir() -> Path:
    """Folder of the shipped weights inside the installed package."""
    return Path(str(files("metaseg_viewer") / "weights"))


@dataclass(frozen=True)
class EnsembleCard:
    """Members (card paths) and the inference settings the ensemble was validated with.

    In the JSON file a member is the registry name of a shipped card (``"unetpp"``) or a card's
    path, both relative to the ensemble card's own folder; :meth:`from_dict` and :meth:`to_dict`
    take that folder, so the file's keys and the names↔paths rule live here only.
    """

    JSON_KEYS: ClassVar[tuple[str, ...]] = ("card_format", "name", "description", "members", "inference", "metrics")

    name: str
    members: tuple[Path, ...]
    inference: InferenceConfig
    description: str
    metrics: dict[str, Any]

    def to_dict(self, folder: Path) -> dict[str, Any]:
        """The JSON document of this card saved in ``folder``; every member must lie inside it."""
        names = {file: name for name, file in SINGLE_MODELS.items()}
        members = []
        for member in self.members:
            try:
                relative = Path(member).relative_to(folder).as_posix()
            except ValueError:
                raise CheckpointError(f"ensemble member {member} is not inside {folder}, where its card is") from None
            members.append(names.get(relative, relative))
        return {
            "card_format": CARD_FORMAT,
            "name": self.name,
            "description": self.description,
            "members": members,
            "inference": self.inference.to_dict(),
            "metrics": self.metrics,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], folder: Path) -> EnsembleCard:
        """The card of a JSON document found in ``folder``; unknown keys are refused, so a typo
        is not ignored."""
        if not isinstance(data, dict):
            raise CheckpointError("an ensemble card must be a JSON object")
        unknown = sorted(set(data) - set(cls.JSON_KEYS))
        if unknown:
            raise CheckpointError(f"ensemble card has unknown keys {unknown}; accepted keys: {sorted(cls.JSON_KEYS)}")
        members = data.get("members")
        if data.get("card_format") != CARD_FORMAT or not isinstance(members, list) or not members \
                or not all(isinstance(m, str) for m in members):
            raise CheckpointError(f"ensemble card needs card_format {CARD_FORMAT} and a non-empty members list of names")
        return cls(
            name=str(data.get("name", ENSEMBLE_NAME)),
            members=tuple(folder / SINGLE_MODELS.get(m, m) for m in members),
            inference=InferenceConfig.from_dict(data.get("inference", {})),
            description=str(data.get("description", "")),
            metrics=dict(data.get("metrics", {})),
        )


def read_ensemble_card(path: Path) -> EnsembleCard:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"ensemble card {path} is not readable JSON: {exc}") from exc
    try:
        return EnsembleCard.from_dict(data, path.parent)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def write_ensemble_card(card: EnsembleCard, path: Path) -> None:
    """Write ``card`` as ``path`` (a temporary file, then a rename), in the format
    :func:`read_ensemble_card` reads."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(card.to_dict(path.parent), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def resolve_model(name_or_path: str | Path) -> tuple[Path, ...] | EnsembleCard:
    """A shipped name → its card path(s); a path to a ``.safetensors``/``.json`` → itself; the path
    of an ensemble card (a candidate ensemble before it ships) → that card."""
    key = str(name_or_path)
    if key in SINGLE_MODELS:
        return (weights_dir() / SINGLE_MODELS[key],)
    if key == ENSEMBLE_NAME:
        return read_ensemble_card(weights_dir() / "ensemble.json")
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file() and _is_ensemble_card(path):
        return read_ensemble_card(path)
    if path.suffix in (".safetensors", ".json") and path.exists():
        return (path,)
    raise CheckpointError(
        f"unknown model {key!r}: give one of {list(MODEL_NAMES)} or the path of a .safetensors "
        "checkpoint with its .json model card beside it"
    )


def _is_ensemble_card(path: Path) -> bool:
    """Whether a ``.json`` file is an ensemble card (it lists members) rather than a model card."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False  # load_checkpoint reports the unreadable card
    return isinstance(data, dict) and "members" in data


def describe_card(name: str, card: ModelCard) -> dict[str, Any]:
    """The listing row of one network's card (shipped or a user's checkpoint): what ``metaseg
    models``, the server's ``/models`` and the apps' menus show."""
    return {
        "name": name,
        "label": model_label(name),
        "architecture": card.model.arch,
        "description": card.description,
        "sha256": card.sha256,
        "inference": card.inference.to_dict(),
        "preprocess": card.preprocess.to_dict(),
        "metrics": card.metrics,
    }


def describe_models() -> list[dict[str, Any]]:
    """One row per shipped model (see :func:`describe_card`); the ensemble's preprocessing is
    its first member's (every member preprocesses alike in the shipped models)."""
    rows = [describe_card(name, read_card(weights_dir() / card_file)) for name, card_file in SINGLE_MODELS.items()]
    ens = read_ensemble_card(weights_dir() / "ensemble.json")
    members = [read_card(m) for m in ens.members]
    rows.append({
        "name": ENSEMBLE_NAME,
        "label": model_label(ENSEMBLE_NAME),
        "architecture": "mean of " + " + ".join(card.model.arch for card in members),
        "description": ens.description,
        "sha256": "+".join(card.sha256[:12] for card in members),
        "inference": ens.inference.to_dict(),
        "preprocess": members[0].preprocess.to_dict(),
        "metrics": ens.metrics,
    })
    return rows
