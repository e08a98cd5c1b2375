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
