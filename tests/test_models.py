"""Both networks: one generic test class, a tiny subclass per architecture."""

from __future__ import annotations

import pytest
import torch

from metaseg_viewer.config import ModelConfig
from metaseg_viewer.models import ARCHITECTURES, build_model


class NetworkContract:
    arch: str
    params: dict

    @pytest.fixture(scope="class")
    def model(self) -> torch.nn.Module:
        torch.manual_seed(0)
        return build_model(ModelConfig(self.arch, self.params)).eval()

    def test_maps_256_slice_to_one_logit_channel(self, model: torch.nn.Module) -> None:
        with torch.inference_mode():
            out = model(torch.rand(1, 1, 256, 256))
        assert out.shape == (1, 1, 256, 256)
        assert torch.isfinite(out).all()
        assert (out < 0).any() or (out > 1).any() or out.std() > 0  # logits, not a constant

    @pytest.mark.parametrize("shape", [(2, 1, 200, 173), (1, 1, 64, 96), (1, 1, 33, 31)])
    def test_accepts_other_sizes(self, model: torch.nn.Module, shape: tuple[int, ...]) -> None:
        with torch.inference_mode():
            assert model(torch.rand(*shape)).shape == shape

    def test_refuses_multi_channel_input(self, model: torch.nn.Module) -> None:
        with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
            model(torch.rand(1, 3, 64, 64))

    def test_learns(self) -> None:
        torch.manual_seed(0)
        model = build_model(ModelConfig(self.arch, self.params))
        x = torch.rand(4, 1, 64, 64)
        y = (x > 0.7).float()
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        losses = []
        for _ in range(15):
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < 0.7 * losses[0]


class TestUnetPlusPlus(NetworkContract):
    arch = "unetpp"
    params: dict = {}


class TestAttentionUnet(NetworkContract):
    arch = "attention-unet"
    params: dict = {"channels": [8, 16, 32, 64], "strides": [2, 2, 2]}


def test_attention_unet_has_attention_gates() -> None:
    model = build_model(ModelConfig("attention-unet"))
    names = {type(m).__name__ for m in model.modules()}
    assert "AttentionBlock" in names


def test_unknown_architecture_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="attention-unet"):
        build_model(ModelConfig("resnet"))
    with pytest.raises(ValueError, match="invalid arguments"):
        build_model(ModelConfig("unetpp", {"no_such_option": 1}))
    assert set(ARCHITECTURES) == {"unetpp", "attention-unet"}
