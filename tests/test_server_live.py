"""The server as deployed: a real ``uvicorn server.app:app`` process on 127.0.0.1, real sockets.

Settings go in through ``METASEG_*`` environment variables, as an operator would set them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed (pip install -e '.[server]')")
import httpx  # noqa: E402
from openapi_spec_validator import validate  # noqa: E402

from metaseg_viewer.encoding import rle_decode  # noqa: E402
from metaseg_viewer.inference import Predictor  # noqa: E402
from metaseg_viewer.io import encode_mask_png, read_scan, write_nifti  # noqa: E402
from metaseg_viewer.samples import make_slice, make_volume  # noqa: E402
from metaseg_viewer.scan import Scan  # noqa: E402
from live_server import REPO, free_port, start_server, stop  # noqa: E402
from factories import png_bytes as png  # noqa: E402


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, subprocess.Popen]]:
    process, url = start_server({"METASEG_MODELS": json.dumps(["attention-unet", "ensemble"]),
                                 "METASEG_DEFAULT_MODEL": "attention-unet", "METASEG_WORKERS": "2",
                                 "METASEG_MAX_UPLOAD_MB": "4", "METASEG_TORCH_THREADS": "1"})
    yield url, process
    log = stop(process)
    assert "Traceback" not in log, log  # no request, good or bad, made the server raise


@pytest.fixture(scope="module")
def attention() -> Predictor:
    return Predictor.load("attention-unet", device="cpu")


def test_brief_address_with_a_real_lgg_slice(server, attention: Predictor, shared_data: Path) -> None:
    url, _ = server
    patient = shared_data / "lgg_kaggle3m_sample" / "kaggle_3m" / "TCGA_DU_7014_19860618"
    image = max(patient.glob("*_mask.tif"), key=lambda p: (read_scan(p, color="gray").pixels > 0).sum())
    image = image.with_name(image.name.replace("_mask", ""))
    with open(image, "rb") as fh:  # what a client written against the brief sends
        response = httpx.post(url + "/predict/", files={"file": (image.name, fh)}, timeout=60)
    assert response.status_code == 200, response.text
    served = read_scan(response.content).pixels[0] > 0
    assert np.array_equal(served, attention.predict(read_scan(image)).mask[0]) and served.sum() > 100


def test_twenty_concurrent_clients_get_their_own_correct_masks(server, attention: Predictor) -> None:
    url, _ = server
    slices = [make_slice(128, seed=seed) for seed in range(20)]

    def ask(index: int) -> dict:
        response = httpx.post(url + "/predict?format=json", files={"file": (f"s{index}.png", png(slices[index].image))},
                              headers={"X-Request-ID": f"client-{index}"}, timeout=300)
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == f"client-{index}"
        return response.json()

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(ask, range(20)))
    for index, result in enumerate(results):
        assert result["file"] == f"s{index}.png"
        expected = attention.predict(read_scan(png(slices[index].image))).mask
        assert np.array_equal(rle_decode(result["mask"]), expected), index
    assert sum(rle_decode(r["mask"]).any() for r in results) >= 15  # the samples' lesions were found


def test_health_answers_while_a_volume_is_segmented(server, tmp_path: Path) -> None:
    url, _ = server
    sample = make_volume(30, 256, seed=2)
    path = tmp_path / "brain.nii.gz"
    write_nifti(sample.image, Scan(pixels=sample.image, spacing=sample.spacing, is_volume=True), path)
    answer: dict[str, httpx.Response] = {}
    worker = threading.Thread(target=lambda: answer.setdefault("r", httpx.post(
        url + "/predict?model=ensemble", files={"file": ("brain.nii.gz", path.read_bytes())}, timeout=600)))
    worker.start()
    while httpx.get(url + "/ready").json()["busy"] == 0:  # the volume has reached a worker
        time.sleep(0.05)
    latencies = []
    for _ in range(10):
        start = time.perf_counter()
        assert httpx.get(url + "/health", timeout=10).json() == {"status": "ok"}
        latencies.append(time.perf_counter() - start)
        time.sleep(0.1)
    in_flight = worker.is_alive()
    worker.join()
    assert in_flight, "the volume finished before /health was checked; the check proved nothing"
    assert max(latencies) < 1.0, latencies  # not blocked behind a ~10 s segmentation
    response = answer["r"]
    assert response.status_code == 200 and response.headers["content-type"] == "application/gzip"
    mask = read_scan(response.content, name="m.nii.gz").pixels > 0
    assert mask.shape == sample.mask.shape
    inter = (mask & sample.mask).sum()
    assert 2 * inter / (mask.sum() + sample.mask.sum()) > 0.5


def test_every_endpoint_and_error_path_over_http(server, tmp_path: Path) -> None:
    url, process = server
    sample = make_slice(256, seed=0)
    with httpx.Client(base_url=url, timeout=120) as client:
        schema = client.get("/openapi.json").json()
        validate(schema)
        assert [m["name"] for m in client.get("/models").json()] == ["attention-unet", "ensemble"]
        evaluated = client.post("/evaluate", files={"file": ("s.png", png(sample.image)),
                                                    "mask": ("m.png", encode_mask_png(sample.mask))}).json()
        assert evaluated["scores"]["dice"] > 0.5 and evaluated["scores"]["lesions"]["n_ref"] == 3
        batch = client.post("/predict/batch", files=[("files", ("a.png", png(sample.image))),
                                                     ("files", ("b.dcm", b"DICM but not really"))]).json()
        assert [(r["ok"], r["status"]) for r in batch["results"]] == [(True, 200), (False, 415)]
        cases = [
            (dict(files={"file": ("x.png", b"GIF89a" + b"\0" * 64)}), 415, "Accepted"),
            (dict(files={"file": ("x.png", png(sample.image)[:200])}), 422, "truncated"),
            (dict(files={"file": ("x.png", png(sample.image))}, params={"threshold": "7"}), 422, "threshold"),
            (dict(files={"file": ("x.png", png(sample.image))}, params={"model": "unetpp"}), 422, "unknown model"),
            (dict(data={"model": "ensemble"}), 422, "file"),
            (dict(files={"file": ("x.png", np.random.default_rng(0).bytes(5 * 2**20))}), 413, "4 MiB"),
        ]
        for kwargs, status, words in cases:
            response = client.post("/predict", **kwargs)
            assert response.status_code == status, (kwargs.get("params"), response.text)
            assert words in response.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
            yield b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n"
            for _ in range(5):
                yield b"\0" * 2**20

        chunked = client.post("/predict", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=x"})
        assert chunked.status_code == 413 and "4 MiB" in chunked.json()["detail"]
        assert client.get("/health").status_code == 200 and process.poll() is None


def test_full_queue_answers_503_with_retry_after_and_api_key_is_enforced(tmp_path: Path) -> None:
    process, url = start_server({"METASEG_MODELS": json.dumps(["ensemble"]), "METASEG_WORKERS": "1",
                                 "METASEG_QUEUE_SIZE": "0", "METASEG_API_KEY": "hospital-key"})
    try:
        key = {"X-API-Key": "hospital-key"}
        assert httpx.get(url + "/models").status_code == 401
        sample = make_volume(24, 256, seed=4)
        path = tmp_path / "v.nii.gz"
        write_nifti(sample.image, Scan(pixels=sample.image, spacing=sample.spacing, is_volume=True), path)
        busy = threading.Thread(target=lambda: httpx.post(url + "/predict", headers=key, timeout=600,
                                                          files={"file": ("v.nii.gz", path.read_bytes())}))
        busy.start()
        while httpx.get(url + "/ready").json()["busy"] == 0:
            time.sleep(0.05)
        refused = httpx.post(url + "/predict", headers=key, files={"file": ("s.png", png(make_slice(64).image))})
        still_busy = busy.is_alive()
        busy.join()
        assert still_busy
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        assert "busy" in refused.json()["detail"]
        after = httpx.post(url + "/predict", headers=key, files={"file": ("s.png", png(make_slice(64).image))}, timeout=60)
        assert after.status_code == 200  # the slot came back when the volume finished
    finally:
        stop(process)


def test_start_up_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    port = str(free_port())
    env = {**os.environ, "METASEG_MODELS": json.dumps(["attention-unet", str(tmp_path / "missing.safetensors")]),
           "METASEG_DEFAULT_MODEL": "attention-unet"}
    done = subprocess.run([sys.executable, "-m", "uvicorn", "server.app:app", "--port", port], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "cannot start: unknown model" in done.stderr
    script = Path(sys.executable).with_name("metaseg-server")
    done = subprocess.run([str(script), "--port", port, "--models", "ensemble", str(tmp_path / "missing.safetensors")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("metaseg-server: cannot start: unknown model")
    done = subprocess.run([str(script), "--host", "0.0.0.0"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "without an API key" in done.stderr


def test_console_script_serves_from_any_folder(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("metaseg-server")
    process, url = start_server({}, [str(script), "--port", "{port}", "--model", "attention-unet",
                                     "--models", "attention-unet"], cwd=tmp_path)
    try:
        assert httpx.get(url + "/ready").json()["models"] == ["attention-unet"]
        response = httpx.post(url + "/predict", files={"file": ("s.png", png(make_slice(96).image))}, timeout=60)
        assert response.status_code == 200 and response.headers["x-model"] == "attention-unet"
    finally:
        log = stop(process)
    record = next(json.loads(line[line.index("{"):]) for line in log.splitlines() if '"path": "/predict"' in line)
    assert record["status"] == 200 and record["model"] == "attention-unet" and record["ms"] > 0
