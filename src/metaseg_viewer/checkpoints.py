"""Weights as safetensors plus a JSON model card beside them; loading verifies both.

``<stem>.safetensors`` holds only tensors (no pickle, so a checkpoint cannot run code), and
``<stem>.json`` — the model card — holds everything needed to rebuild and use the model: the
architecture and its arguments, the preprocessing and inference settings it was validated with,
what data it was trained on, its validation metrics, training time and hardware, and the sha256
of the weights file. A checkpoint whose weights do not match the card's checksum or whose tensors
do not fit the card's architecture is refused with :class:`CheckpointError`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metaseg_viewer.config import InferenceConfig, ModelConfig, PreprocessConfig
from metaseg_viewer.errors import CheckpointError
from metaseg_viewer.sequences import ModelPurpose

CARD_FORMAT = 1


@dataclass(frozen=True)
class ModelCard:
    """The JSON document beside a weights file. ``training`` and ``metrics`` are free-form dicts
    (data set, validation patients, command, minutes, hardware; metric name → value).
    ``purpose`` says what the model is for (sequence, target, planes, data set, licence); a
    checkpoint without one is of an unknown sequence, and the apps say so."""

    name: str
    model: ModelConfig
    preprocess: PreprocessConfig = PreprocessConfig()
    inference: InferenceConfig = InferenceConfig()
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    weights_file: str = ""
    purpose: ModelPurpose | None = None

    @property
    def sequence(self) -> str | None:
        return None if self.purpose is None else self.purpose.sequence

    def to_dict(self) -> dict[str, Any]:
        return {
            "card_format": CARD_FORMAT,
            "name": self.name,
            "description": self.description,
            **({} if self.purpose is None else {"purpose": self.purpose.to_dict()}),
            "model": self.model.to_dict(),
            "preprocess": self.preprocess.to_dict(),
            "inference": self.inference.to_dict(),
            "training": self.training,
            "metrics": self.metrics,
            "weights_file": self.weights_file,
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        if not isinstance(data, dict):
            raise CheckpointError("a model card must be a JSON object")
        if data.get("card_format") != CARD_FORMAT:
            raise CheckpointError(
                f"unsupported model card format {data.get('card_format')!r}; this version reads {CARD_FORMAT}"
            )
        missing = [k for k in ("name", "model", "sha256", "weights_file") if k not in data]
        if missing:
            raise CheckpointError(f"model card lacks required keys {missing}")
        return cls(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            model=ModelConfig.from_dict(data["model"]),
            preprocess=PreprocessConfig.from_dict(data.get("preprocess", {})),
            inference=InferenceConfig.from_dict(data.get("inference", {})),
            training=dict(data.get("training", {})),
            metrics=dict(data.get("metrics", {})),
            sha256=str(data["sha256"]),
            weights_file=str(data["weights_file"]),
            purpose=None if data.get("purpose") is None else ModelPurpose.from_dict(data["purpose"]),
        )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def card_path_for(path: str | Path) -> Path:
    """The card of ``x.safetensors`` is ``x.json``; a ``.json`` path is returned unchanged."""
    path = Path(path)
    return path if path.suffix == ".json" else path.with_suffix(".json")


def read_card(path: str | Path) -> ModelCard:
    """Read and validate a model card (given the card or its weights file)."""
    card_path = card_path_for(path)
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"model card {card_path} not found: every weights file needs its .json card beside it") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"model card {card_path} is not readable JSON: {exc}") from exc
    return ModelCard.from_dict(data)


def save_checkpoint(model: Any, card: ModelCard, weights_path: str | Path) -> ModelCard:
    """Write ``model``'s tensors and ``card`` (with the weights' sha256 filled in); return the card."""
    from safetensors.torch import save_file

    weights_path = Path(weights_path).with_suffix(".safetensors")
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = weights_path.with_suffix(".safetensors.tmp")
    save_file(state, str(tmp), metadata={"name": card.name, "arch": card.model.arch})
    tmp.replace(weights_path)
    final = ModelCard(**{**card.__dict__, "sha256": sha256_of(weights_path), "weights_file": weights_path.name})
    card_tmp = card_path_for(weights_path).with_suffix(".json.tmp")
    card_tmp.write_text(json.dumps(final.to_dict(), indent=2) + "\n", encoding="utf-8")
    card_tmp.replace(card_path_for(weights_path))
    return final


def load_checkpoint(path: str | Path, device: str = "cpu", expected_sha256: str | None = None) -> tuple[Any, ModelCard]:
    """Rebuild the model from its card, verify the checksum, load the weights; eval mode.

    ``expected_sha256``: a checksum recorded elsewhere than the card (the registry's, for shipped
    models); the weights must match it too, so replacing both the weights and their card is caught."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    from metaseg_viewer.models import build_model

    card = read_card(path)
    weights = Path(path).with_suffix(".safetensors")
    if not weights.is_file():
        raise CheckpointError(f"weights file {weights} is missing (a card x.json goes with weights x.safetensors)")
    data = weights.read_bytes()  # read once: the bytes hashed are the bytes loaded
    actual = hashlib.sha256(data).hexdigest()
    if actual != card.sha256:
        raise CheckpointError(
            f"{weights} does not match its model card (sha256 {actual[:12]}… != {card.sha256[:12]}…): "
            "the file was changed or corrupted; re-export it or restore the original"
        )
    if expected_sha256 is not None and actual != expected_sha256:
        raise CheckpointError(
            f"{weights} is not the shipped model: its sha256 {actual[:12]}… differs from the {expected_sha256[:12]}… "
            "recorded in metaseg_viewer.registry.SHIPPED_SHA256 (the weights were replaced, even if their card "
            "matches them); reinstall the package, or load your own model by its path"
        )
    try:
        model = build_model(card.model)
    except ValueError as exc:
        raise CheckpointError(f"model card {card.name!r}: {exc}") from exc
    try:
        state = load_safetensors(data)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights} is not a valid safetensors file: {exc}") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(
            f"weights in {weights} do not fit the card's architecture {card.model.to_dict()}: {first}"
        ) from exc
    return model.to(device).eval(), card
