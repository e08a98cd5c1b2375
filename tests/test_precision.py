"""Inference precision: ``auto`` picks bf16 only where the hardware has it, fp32 is always
available, and bf16 masks agree with fp32 masks on real slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metaseg_viewer import precision as precision_module
from metaseg_viewer.errors import InputError
from metaseg_viewer.inference import Predictor
from metaseg_viewer.io import read_scan
from metaseg_viewer.scan import Scan


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_resolves_from_the_cpu_flags(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch,
                                          native: bool, expected: str) -> None:
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: native)
    predictor = Predictor.load(tiny_checkpoint, device="cpu")
    assert predictor.precision == expected
    result = predictor.predict(Scan(np.full((1, 64, 64), 80, np.uint8)))
    assert result.precision == expected


def test_forced_fp32_runs_on_a_cpu_without_bf16(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The path a CPU without native bf16 takes: auto resolves to fp32 and nothing is autocast."""
    import torch

    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: False)
    seen: list[bool] = []
    predictor = Predictor.load(tiny_checkpoint, device="cpu")
    net = predictor.members[0][0]
    handle = net.register_forward_pre_hook(lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
    try:
        predictor.predict(Scan(np.full((1, 64, 64), 80, np.uint8)))
    finally:
        handle.remove()
    assert seen == [False]
    forced = Predictor.load(tiny_checkpoint, device="cpu", precision="bf16")
    handle = forced.members[0][0].register_forward_pre_hook(lambda *_: seen.append(torch.is_autocast_enabled("cpu")))
    forced.predict(Scan(np.full((1, 64, 64), 80, np.uint8)))
    handle.remove()
    assert seen[-1] is True


def test_unknown_precision_is_refused_before_loading(tiny_checkpoint: Path) -> None:
    with pytest.raises(InputError, match="unknown precision 'fp16'; accepted: auto, fp32, bf16"):
        Predictor.load(tiny_checkpoint, device="cpu", precision="fp16")


def test_bf16_and_fp32_masks_agree_on_real_slices(shared_data: Path) -> None:
    patient = shared_data / "lgg_flair" / "TCGA_CS_4942_19970222" / "images"
    files = sorted(patient.glob("*.png"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))[8:24]
    scan = Scan(np.concatenate([read_scan(f).pixels for f in files]))
    fp32 = Predictor.load("unetpp", device="cpu", precision="fp32").predict(scan)
    bf16 = Predictor.load("unetpp", device="cpu", precision="bf16").predict(scan)
    a, b = fp32.mask, bf16.mask
    assert a.sum() > 500  # lesion slices, so the agreement means something
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.99
    assert np.abs(fp32.probabilities - bf16.probabilities).mean() < 0.01


def test_the_server_reports_the_precision_it_runs(tiny_checkpoint: Path) -> None:
    pytest.importorskip("fastapi", reason="the server extra is not installed")
    from fastapi.testclient import TestClient

    from factories import png_bytes
    from server.app import create_app
    from server.settings import ServerSettings

    for asked, ran in (("fp32", "fp32"), ("bf16", "bf16")):
        app = create_app(ServerSettings(models=[str(tiny_checkpoint)], precision=asked))
        with TestClient(app) as client:
            assert client.get("/ready").json()["precision"] == {str(tiny_checkpoint): ran}
            image = png_bytes(np.full((32, 32), 90, np.uint8))
            body = client.post("/predict", params={"format": "json"}, files={"file": ("a.png", image)}).json()
            assert body["precision"] == ran
            assert client.post("/predict", files={"file": ("a.png", image)}).headers["x-precision"] == ran
    with pytest.raises(Exception, match="precision"):
        ServerSettings(models=[str(tiny_checkpoint)], precision="fp16")
