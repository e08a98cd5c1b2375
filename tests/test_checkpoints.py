"""Safetensors + model card: identical outputs after a round trip; tampering is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from metaseg_viewer.checkpoints import ModelCard, load_checkpoint, read_card, save_checkpoint, sha256_of
from metaseg_viewer.config import ModelConfig
from metaseg_viewer.errors import CheckpointError
from metaseg_viewer.models import build_model


@pytest.fixture
def copy(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    for suffix in (".safetensors", ".json"):
        shutil.copy(tiny_checkpoint.with_suffix(suffix), tmp_path / ("m" + suffix))
    return tmp_path / "m.safetensors"


@pytest.mark.parametrize("arch,params", [("attention-unet", {"channels": [4, 8, 16], "strides": [2, 2]}), ("unetpp", {})])
def test_round_trip_gives_identical_outputs(arch: str, params: dict, tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = build_model(ModelConfig(arch, params)).eval()
    # Non-trivial batch-norm statistics, so buffers must travel too.
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 1, 64, 64))
    model.eval()
    card = save_checkpoint(model, ModelCard(name="x", model=ModelConfig(arch, params)), tmp_path / "x.safetensors")
    assert card.sha256 == sha256_of(tmp_path / "x.safetensors")
    assert json.loads((tmp_path / "x.json").read_text())["model"]["arch"] == arch
    loaded, loaded_card = load_checkpoint(tmp_path / "x.safetensors")
    x = torch.rand(1, 1, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(x), loaded(x))
    assert loaded_card == card


def test_card_path_or_weights_path_both_load(copy: Path) -> None:
    _, card = load_checkpoint(copy.with_suffix(".json"))
    assert card.name == "tiny"


def test_tampered_weights_are_refused(copy: Path) -> None:
    data = bytearray(copy.read_bytes())
    data[-10] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its model card"):
        load_checkpoint(copy)


def test_truncated_weights_with_matching_checksum_are_refused(copy: Path) -> None:
    copy.write_bytes(copy.read_bytes()[:100])
    card = json.loads(copy.with_suffix(".json").read_text())
    card["sha256"] = sha256_of(copy)
    copy.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(copy)


def test_card_that_does_not_fit_the_weights_is_refused(copy: Path) -> None:
    card = json.loads(copy.with_suffix(".json").read_text())
    card["model"]["params"]["channels"] = [8, 16, 32]
    copy.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="do not fit the card's architecture"):
        load_checkpoint(copy)


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda c: c.pop("sha256"), "lacks required keys"),
        (lambda c: c.update(card_format=99), "unsupported model card format"),
        (lambda c: c["inference"].update(threshold=2.0), "threshold"),
        (lambda c: c["preprocess"].update(bogus=1), "unknown keys"),
        (lambda c: c["model"].update(arch="nope"), "unknown architecture"),
    ],
)
def test_bad_cards_are_refused_with_a_reason(copy: Path, edit, message: str) -> None:
    card = json.loads(copy.with_suffix(".json").read_text())
    edit(card)
    copy.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(copy)


def test_missing_or_garbage_card(copy: Path) -> None:
    copy.with_suffix(".json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not readable JSON"):
        read_card(copy)
    copy.with_suffix(".json").unlink()
    with pytest.raises(CheckpointError, match="needs its .json card"):
        load_checkpoint(copy)
