"""The shipped models, found by name inside the installed package (offline), grouped by the MRI
sequence they were trained for.

Single networks are ``weights/<file>.safetensors`` + card; an ensemble averages its members'
probabilities, with its own validated inference settings in its card. Each sequence has a family
of models, its default first (:data:`FAMILIES`); a card's ``purpose`` names the same sequence (a
test holds the two together). Anything else given as a model is a path to a checkpoint.
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

#: Shipped single networks: registry name → card file in :func:`weights_dir`.
SINGLE_MODELS: dict[str, str] = {"unetpp": "unetpp.json", "attention-unet": "attention_unet.json",
                                 "t1c-attention-unet": "t1c_attention_unet.json"}
#: Shipped ensembles: registry name → ensemble card file in :func:`weights_dir`.
ENSEMBLE_MODELS: dict[str, str] = {"ensemble": "ensemble.json"}
ENSEMBLE_NAME = "ensemble"
#: Each sequence's shipped models, its default first; apps list and compare them in this order.
FAMILIES: dict[str, tuple[str, ...]] = {
    "flair": ("ensemble", "unetpp", "attention-unet"),
    "t1c": ("t1c-attention-unet",),
}
MODEL_NAMES: tuple[str, ...] = tuple(name for family in FAMILIES.values() for name in family)
DEFAULT_SEQUENCE = "flair"
DEFAULT_MODEL = FAMILIES[DEFAULT_SEQUENCE][0]
#: What the apps show for each shipped model (menus, layer names, captions), in menu order.
MODEL_LABELS: dict[str, str] = {"ensemble": "Ensemble (FLAIR)", "unetpp": "U-Net++ (FLAIR)",
                                "attention-unet": "Attention U-Net (FLAIR)",
                                "t1c-attention-unet": "Attention U-Net (T1c)"}


def family_default(sequence: str) -> str:
    """The default shipped model of ``sequence`` (``flair`` or ``t1c``)."""
    try:
        return FAMILIES[sequence][0]
    except KeyError:
        raise CheckpointError(f"no shipped models for sequence {sequence!r}; sequences: {list(FAMILIES)}") from None


def family_networks(sequence: str) -> tuple[str, ...]:
    """The single networks of a sequence's family (what "Compare" runs side by side)."""
    return tuple(name for name in FAMILIES.get(sequence, ()) if name in SINGLE_MODELS)


def model_sequence(model: str | Path) -> str | None:
    """The sequence a model was trained for: from :data:`FAMILIES` for a shipped name, from the
    card's ``purpose`` for a checkpoint path (``None`` when its card does not say or is unreadable;
    loading the model reports an unreadable card)."""
    key = str(model)
    for sequence, names in FAMILIES.items():
        if key in names:
            return sequence
    try:
        resolved = resolve_model(key)
        paths = resolved.members if isinstance(resolved, EnsembleCard) else resolved
        sequences = {read_card(p).sequence for p in paths}
    except (CheckpointError, OSError, ValueError):
        return None
    return sequences.pop() if len(sequences) == 1 else None


#: sha256 of each shipped weights file, recorded in the code. The card beside a weights file
#: catches corruption, not a swap of both files; a shipped file whose bytes differ from this is
#: refused. A user's own checkpoint (any other path) is trusted by its card alone.
SHIPPED_SHA256: dict[str, str] = {
    "unetpp.safetensors": "210841cd475ec06ba8d9609d0e4a601bd7a747bb89832905b9e7c704feb5d38c",
    "attention_unet.safetensors": "26bdf7681a46fbb48a82a1da04cd53c171b76d7be2b02e9db0d4d287f743dc08",
    "t1c_attention_unet.safetensors": "abe761597e8375540619eb1a3601777a9148d5576be6fdd9e898355d41a7e7a3",
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
    if key in ENSEMBLE_MODELS:
        return read_ensemble_card(weights_dir() / ENSEMBLE_MODELS[key])
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file() and _is_ensemble_card(path):
        return read_ensemble_card(path)
    if path.suffix in (".safetensors", ".json") and path.exists():
        return (path,)
    raise CheckpointError(
        f"unknown model {key!r}: give one of {list(MODEL_NAMES)} or the path of a .safetensors "
        "checkpoint with its .json model card beside it"
    )


def weights_version(name_or_path: str | Path) -> str:
    """The weights checksum a model's results carry (``Prediction.model_version``: sha256 prefixes
    of its networks, joined by "+"), read from the cards without loading any weights."""
    resolved = resolve_model(name_or_path)
    paths = resolved.members if isinstance(resolved, EnsembleCard) else resolved
    return "+".join(read_card(p).sha256[:12] for p in paths)


def model_defaults(name_or_path: str | Path) -> InferenceConfig:
    """The inference settings on a model's card (an ensemble's own), read without loading weights."""
    resolved = resolve_model(name_or_path)
    return resolved.inference if isinstance(resolved, EnsembleCard) else read_card(resolved[0]).inference


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
        "sequence": card.sequence,
        "purpose": None if card.purpose is None else card.purpose.to_dict(),
        "architecture": card.model.arch,
        "description": card.description,
        "sha256": card.sha256,
        "inference": card.inference.to_dict(),
        "preprocess": card.preprocess.to_dict(),
        "metrics": card.metrics,
    }


def describe_ensemble(name: str, ens: EnsembleCard) -> dict[str, Any]:
    """The listing row of an ensemble; its purpose and preprocessing are its first member's
    (members of one ensemble read the same sequence and preprocess alike)."""
    members = [read_card(m) for m in ens.members]
    return {
        "name": name,
        "label": model_label(name),
        "sequence": members[0].sequence,
        "purpose": None if members[0].purpose is None else members[0].purpose.to_dict(),
        "architecture": "mean of " + " + ".join(card.model.arch for card in members),
        "description": ens.description,
        "sha256": "+".join(card.sha256[:12] for card in members),
        "inference": ens.inference.to_dict(),
        "preprocess": members[0].preprocess.to_dict(),
        "metrics": ens.metrics,
    }


def describe_models() -> list[dict[str, Any]]:
    """One row per shipped model (see :func:`describe_card`), family by family, defaults first."""
    rows = []
    for name in MODEL_NAMES:
        if name in ENSEMBLE_MODELS:
            rows.append(describe_ensemble(name, read_ensemble_card(weights_dir() / ENSEMBLE_MODELS[name])))
        else:
            rows.append(describe_card(name, read_card(weights_dir() / SINGLE_MODELS[name])))
    return rows


def group_by_sequence(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Model names per sequence (``unknown`` for checkpoints whose card does not say), in order."""
    groups: dict[str, list[str]] = {}
    for row in rows:
        groups.setdefault(row.get("sequence") or "unknown", []).append(row["name"])
    return groups
