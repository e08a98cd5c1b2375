"""The ensemble card: one serializer for the file the training export writes and the apps read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metaseg_viewer.config import InferenceConfig
from metaseg_viewer.errors import CheckpointError
from metaseg_viewer.registry import (
    SINGLE_MODELS,
    EnsembleCard,
    read_ensemble_card,
    weights_dir,
    write_ensemble_card,
)


def test_shipped_ensemble_card_round_trips_to_the_same_bytes(tmp_path: Path) -> None:
    shipped = weights_dir() / "ensemble.json"
    card = read_ensemble_card(shipped)
    # The file names shipped members ("unetpp"); the reader resolves them to card paths beside it.
    assert card.members == tuple(weights_dir() / SINGLE_MODELS[m] for m in json.loads(shipped.read_text())["members"])
    assert all(m.is_file() for m in card.members)
    assert card.to_dict(weights_dir()) == json.loads(shipped.read_text())
    assert list(card.to_dict(weights_dir())) == list(EnsembleCard.JSON_KEYS)
    # Written beside the same member files elsewhere, it is the shipped file byte for byte.
    moved = EnsembleCard(card.name, tuple(tmp_path / m.name for m in card.members), card.inference,
                         card.description, card.metrics)
    write_ensemble_card(moved, tmp_path / "ensemble.json")
    assert (tmp_path / "ensemble.json").read_bytes() == shipped.read_bytes()
    assert read_ensemble_card(tmp_path / "ensemble.json") == moved


def test_member_outside_the_card_folder_and_other_card_files(tmp_path: Path) -> None:
    card = EnsembleCard("mine", (tmp_path / "sub" / "a.json", tmp_path / "unetpp.json"),
                        InferenceConfig(threshold=0.4), "two", {})
    write_ensemble_card(card, tmp_path / "mine.json")
    assert json.loads((tmp_path / "mine.json").read_text())["members"] == ["sub/a.json", "unetpp"]
    assert read_ensemble_card(tmp_path / "mine.json") == card
    with pytest.raises(CheckpointError, match="not inside"):
        write_ensemble_card(card, tmp_path / "sub" / "mine.json")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"member": ["unetpp"]}, r"unknown keys \['member'\]"),
        ({"card_format": 2}, "card_format 1"),
        ({"members": []}, "non-empty members list"),
        ({"members": [{"name": "unetpp"}]}, "members list of names"),
        ({"inference": {"threshold": 0.4, "tta": True, "min_size": 3}}, "unknown keys"),
    ],
)
def test_ensemble_card_refuses_unknown_keys_and_bad_values(tmp_path: Path, change: dict, message: str) -> None:
    data = {**json.loads((weights_dir() / "ensemble.json").read_text()), **change}
    path = tmp_path / "ensemble.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=message):
        read_ensemble_card(path)


def test_unreadable_ensemble_card(tmp_path: Path) -> None:
    path = tmp_path / "ensemble.json"
    path.write_text("{not json")
    with pytest.raises(CheckpointError, match="not readable JSON"):
        read_ensemble_card(path)
    path.write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="JSON object"):
        read_ensemble_card(path)


def test_shipped_checksums_in_the_code_match_the_shipped_files() -> None:
    import hashlib

    from metaseg_viewer.checkpoints import read_card
    from metaseg_viewer.registry import SHIPPED_SHA256

    for card_file in SINGLE_MODELS.values():
        weights = (weights_dir() / card_file).with_suffix(".safetensors")
        recorded = SHIPPED_SHA256[weights.name]
        assert hashlib.sha256(weights.read_bytes()).hexdigest() == recorded == read_card(weights).sha256


def test_a_shipped_model_swapped_with_its_card_is_refused_but_own_checkpoints_load(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path) -> None:
    """Replacing both a shipped weights file and its card (checksum updated to match) is caught
    by the checksum recorded in the code; a user's checkpoint elsewhere is trusted by its card."""
    import shutil

    from metaseg_viewer import registry
    from metaseg_viewer.checkpoints import ModelCard, read_card, sha256_of
    from metaseg_viewer.inference import Predictor

    for item in weights_dir().iterdir():
        shutil.copy(item, tmp_path / item.name)
    shutil.copy(tiny_checkpoint, tmp_path / "unetpp.safetensors")  # the swap
    card = read_card(tiny_checkpoint)
    forged = ModelCard(**{**card.__dict__, "sha256": sha256_of(tmp_path / "unetpp.safetensors"),
                          "weights_file": "unetpp.safetensors"})
    (tmp_path / "unetpp.json").write_text(json.dumps(forged.to_dict()))
    monkeypatch.setattr(registry, "weights_dir", lambda: tmp_path)

    for name in ("unetpp", "ensemble"):
        with pytest.raises(CheckpointError, match="SHIPPED_SHA256"):
            Predictor.load(name, device="cpu")
    assert Predictor.load("attention-unet", device="cpu").name == "attention-unet"  # untouched: still loads
    assert Predictor.load(tiny_checkpoint, device="cpu").name == "tiny"


def test_an_ensemble_card_outside_the_package_loads_by_its_path(tmp_path: Path) -> None:
    """How a candidate ensemble is evaluated before it ships (``evaluate --model runs/cand/ensemble.json``)."""
    import shutil

    from metaseg_viewer.inference import Predictor

    for item in weights_dir().iterdir():
        shutil.copy(item, tmp_path / item.name)
    predictor = Predictor.load(tmp_path / "ensemble.json", device="cpu")
    shipped = Predictor.load("ensemble", device="cpu")
    assert len(predictor.members) == 2 and predictor.version == shipped.version
    assert predictor.defaults == shipped.defaults
