"""Shared fixtures: the real data folder beside the repository, and tiny saved checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real LGG MRI); tests that need it skip where it is absent."""
    if not (SHARED_DATA / "lgg_flair").is_dir():
        pytest.skip(f"real LGG data not found at {SHARED_DATA} (only present on developer machines and CI)")
    return SHARED_DATA


TINY_ATTENTION = {"channels": [4, 8, 16], "strides": [2, 2]}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained, tiny Attention U-Net saved as safetensors + card (fast to load and run)."""
    import torch

    from metaseg_viewer.checkpoints import ModelCard, save_checkpoint
    from metaseg_viewer.config import InferenceConfig, ModelConfig
    from metaseg_viewer.models import build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig("attention-unet", TINY_ATTENTION))
    card = ModelCard(name="tiny", model=ModelConfig("attention-unet", TINY_ATTENTION),
                     inference=InferenceConfig(threshold=0.5, tta=False, min_lesion_size=0))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(model, card, path)
    return path
