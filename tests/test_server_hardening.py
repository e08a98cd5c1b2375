"""Hostile input and hostile load, against a real uvicorn on 127.0.0.1.

Most tests serve an app object from a thread (``serve_in_thread``) with a tiny untrained model:
fast, and the test can patch the engine. Cancellation and shutdown run ``uvicorn server.app:app``
as a process with a shipped model, as deployed. Every count and wait here is bounded.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed (pip install -e '.[server]')")
import httpx  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from metaseg_viewer.io import encode_mask_png  # noqa: E402
from metaseg_viewer.samples import make_slice  # noqa: E402
from metaseg_viewer.scan import Scan  # noqa: E402
from server.app import create_app  # noqa: E402
from server.settings import ServerSettings  # noqa: E402
from factories import png_bytes as png, tiff_bytes  # noqa: E402
from live_server import REPO, free_port, output, serve_in_thread, start_server, stop  # noqa: E402

SLICE = make_slice(64, seed=0)
PNG = png(SLICE.image)
ONE_THREAD = {"METASEG_TORCH_THREADS": "1"}


@contextmanager
def live(tiny: Path, **changes: object) -> Iterator[tuple[FastAPI, str]]:
    """The app with the tiny model and ``changes`` to its settings, served from a thread."""
    app = create_app(ServerSettings(models=[str(tiny)], torch_threads=1, **changes))
    with serve_in_thread(app) as url:
        yield app, url


def multipart(*parts: tuple[str, str | None, bytes], boundary: str = "hardening") -> tuple[bytes, dict[str, str]]:
    """A multipart body written by hand (clients escape odd file names; a hostile one does not).
    A part is ``(field, filename or None for none, content)``."""
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + ("" if filename is None else f'; filename="{filename}"')
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def open_request(url: str, path: str, body: bytes, content_type: str, declared: int | None = None) -> socket.socket:
    """Send a POST's head and ``body`` (all of it, or the start of a longer ``declared`` length)
    on a raw socket, and leave it open."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    head = (f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body) if declared is None else declared}\r\n\r\n")
    sock.sendall(head.encode() + body)
    return sock


def answer(sock: socket.socket, timeout: float) -> tuple[int, dict]:
    """Status and JSON body of the answer on ``sock``."""
    sock.settimeout(timeout)
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, json.loads(response.read())


def long_stack() -> bytes:
    """200 TIFF pages: 400 network passes with TTA, about a minute for one model on two CPU cores."""
    return tiff_bytes(np.stack([make_slice(64, seed=s).image for s in range(200)]), photometric="minisblack")


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def assert_clean_error(response: httpx.Response, status: int, *words: str) -> None:
    """A JSON error with its request id, the given words, and no traceback."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text and 'File "' not in response.text
    for word in words:
        assert word in body["detail"], (word, body["detail"])


# --- 2. a bug answers a JSON 500 and the connection survives -------------------------------------

class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_bug_answers_json_500_is_logged_and_the_connection_stays_usable(tiny_checkpoint: Path) -> None:
    records = _Records()
    logging.getLogger("metaseg.server").addHandler(records)
    try:
        with live(tiny_checkpoint) as (app, url):
            engine = app.state.engine
            segment = engine.segment
            engine.segment = lambda *args, **kwargs: 1 / 0  # a bug in the server's own code
            parts = urlsplit(url)
            connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
            body, headers = multipart(("file", "s.png", PNG))
            connection.request("POST", "/predict", body, headers)
            failed = connection.getresponse()
            text = failed.read().decode()
            sock = connection.sock
            assert failed.status == 500 and failed.getheader("connection") != "close"
            assert json.loads(text)["request_id"] == failed.getheader("x-request-id")
            assert "Report it with the request id" in text and "ZeroDivision" not in text and "Traceback" not in text
            engine.segment = segment
            connection.request("POST", "/predict?format=json", body, headers)  # the same connection
            after = connection.getresponse()
            assert after.status == 200 and json.loads(after.read())["lesion_count"] >= 0
            assert connection.sock is sock, "the server closed the connection after the 500"
            connection.close()
    finally:
        logging.getLogger("metaseg.server").removeHandler(records)
    logged = [r for r in records.records if r.exc_info and r.exc_info[0] is ZeroDivisionError]
    assert len(logged) == 1 and failed.getheader("x-request-id") in logged[0].getMessage()


# --- 3. a cost per request, queue occupancy in cost, cancellation ---------------------------------

def test_requests_over_the_cost_budget_are_refused_before_inference(tiny_checkpoint: Path) -> None:
    six_pages = tiff_bytes(np.zeros((6, 32, 32), np.uint8), photometric="minisblack")
    with live(tiny_checkpoint, max_request_cost=10) as (app, url):
        (predictor,) = app.state.engine.predictors.values()
        calls = []
        predict = predictor.predict
        predictor.predict = lambda *args, **kwargs: calls.append(1) or predict(*args, **kwargs)
        with httpx.Client(base_url=url, timeout=60) as client:
            assert client.post("/predict?format=json", files={"file": ("six.tif", six_pages)}).status_code == 200
            assert len(calls) == 1  # 6 slices x 1 pass (the tiny card has no TTA) fit in 10
            over = client.post("/predict?format=json&tta=true", files={"file": ("six.tif", six_pages)})
            assert_clean_error(over, 413, "12 network passes", "6 slices x 2 per slice", "at most 10",
                               "METASEG_MAX_REQUEST_COST")
            four_pages = tiff_bytes(np.zeros((4, 32, 32), np.uint8), photometric="minisblack")
            batch = client.post("/predict/batch", files=[("files", (f"{i}.tif", four_pages)) for i in range(3)])
            assert_clean_error(batch, 413, "12 network passes", "12 slices")  # a batch counts all its slices
            assert len(calls) == 1, "the network ran for a refused request"


def test_the_queue_counts_a_batch_by_its_slices(tiny_checkpoint: Path) -> None:
    with live(tiny_checkpoint, max_queue_cost=8, queue_size=10) as (app, url):
        engine, gate = app.state.engine, threading.Event()
        segment = engine.segment
        engine.segment = lambda *args, **kwargs: gate.wait(30) and segment(*args, **kwargs)  # a slow model
        first: dict[str, httpx.Response] = {}
        six_pages = tiff_bytes(np.zeros((6, 32, 32), np.uint8), photometric="minisblack")
        running = threading.Thread(target=lambda: first.setdefault("r", httpx.post(
            url + "/predict?format=json", files={"file": ("six.tif", six_pages)}, timeout=60)))
        running.start()
        try:
            wait_until(lambda: httpx.get(url + "/ready").json()["cost"] == 6, 30, "the 6-slice job is admitted")
            three = [("files", (f"{i}.png", PNG)) for i in range(3)]
            refused = httpx.post(url + "/predict/batch", files=three, timeout=60)  # 6 + 3 > 8: one request, 3 slices
            assert_clean_error(refused, 503, "needs 3", "METASEG_MAX_QUEUE_COST")
            assert int(refused.headers["retry-after"]) >= 1
        finally:
            gate.set()
            running.join(60)
        assert first["r"].status_code == 200
        assert httpx.post(url + "/predict/batch", files=three, timeout=60).status_code == 200  # room again


def test_a_long_job_whose_client_left_is_cancelled_and_frees_the_worker() -> None:
    pages = long_stack()
    process, url = start_server({**ONE_THREAD, "METASEG_MODELS": '["attention-unet"]', "METASEG_WORKERS": "1"})
    try:
        body, headers = multipart(("file", "pages.tif", pages))
        sock = open_request(url, "/predict?format=json", body, headers["Content-Type"])
        wait_until(lambda: httpx.get(url + "/ready").json()["cost"] == 400, 60, "the long job reaches the worker")
        time.sleep(1.0)  # let it run a batch or two
        sock.close()  # the client gives up
        start = time.monotonic()
        small = httpx.post(url + "/predict", files={"file": ("s.png", PNG)}, timeout=120)
        waited = time.monotonic() - start
        assert small.status_code == 200
        assert waited < 20, f"the small request waited {waited:.1f} s: the abandoned job kept the worker"
        assert httpx.get(url + "/ready").json()["cost"] == 0
    finally:
        log = stop(process)
    assert '"cancelled": "client disconnected"' in log and "Traceback" not in log


# --- 4. shutdown within a grace period -----------------------------------------------------------

def test_sigterm_stops_a_long_job_and_exits_within_the_grace_period() -> None:
    grace = 6.0
    pages = long_stack()
    process, url = start_server({**ONE_THREAD, "METASEG_MODELS": '["attention-unet"]', "METASEG_WORKERS": "1",
                                 "METASEG_SHUTDOWN_GRACE_S": str(grace)})
    body, headers = multipart(("file", "pages.tif", pages))
    running = open_request(url, "/predict?format=json", body, headers["Content-Type"])
    wait_until(lambda: httpx.get(url + "/ready").json()["cost"] == 400, 60, "the long job reaches the worker")
    waiting = open_request(url, "/predict?format=json", body, headers["Content-Type"])
    wait_until(lambda: httpx.get(url + "/ready").json()["cost"] == 800, 60, "the second job waits in line")
    start = time.monotonic()
    process.terminate()  # SIGTERM
    try:
        process.wait(timeout=grace + 5)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the server did not exit within {grace} s + 5 s of SIGTERM")
    took = time.monotonic() - start
    for sock in (running, waiting):
        status, detail = answer(sock, 5)
        assert status == 503 and "shutting down" in detail["detail"]
    log = output(process)
    assert took < grace + 2, took
    assert "did not finish within" not in log and "Traceback" not in log  # stopped by itself, not the watchdog


def test_a_shutdown_that_cannot_finish_is_cut_at_the_grace_period(tiny_checkpoint: Path) -> None:
    process, url = start_server({**ONE_THREAD, "METASEG_MODELS": json.dumps([str(tiny_checkpoint)]),
                                 "METASEG_SHUTDOWN_GRACE_S": "1", "METASEG_BODY_TIMEOUT_S": "120"})
    slow = open_request(url, "/predict", b"--x\r\n", "multipart/form-data; boundary=x", declared=10_000)
    wait_until(lambda: httpx.get(url + "/ready").json()["busy"] == 1, 10, "the slow upload is admitted")
    start = time.monotonic()
    process.terminate()  # uvicorn alone would wait for this body as long as the client likes
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the watchdog did not end the process")
    slow.close()
    assert time.monotonic() - start < 4
    assert "did not finish within 1 s" in output(process)


def test_while_shutting_down_work_is_refused_and_the_server_is_not_ready(tiny_checkpoint: Path) -> None:
    with live(tiny_checkpoint) as (app, url):
        app.state.queue.close()  # what SIGTERM does first
        refused = httpx.post(url + "/predict", files={"file": ("s.png", PNG)}, timeout=30)
        assert_clean_error(refused, 503, "shutting down")
        ready = httpx.get(url + "/ready")
        assert ready.status_code == 503 and ready.json()["ready"] is False
        assert httpx.get(url + "/health").status_code == 200


# --- 5. memory: a place before the body, a bound on bodies received at once -----------------------

def test_the_queue_place_is_taken_before_the_body_is_read(tiny_checkpoint: Path) -> None:
    with live(tiny_checkpoint, workers=1, queue_size=0) as (app, url):
        holder = open_request(url, "/predict", b"--x\r\n", "multipart/form-data; boundary=x", declared=10_000)
        wait_until(lambda: httpx.get(url + "/ready").json()["busy"] == 1, 10, "the first upload is admitted")
        refused = open_request(url, "/predict", b"", "multipart/form-data; boundary=x", declared=1_000_000)
        status, body = answer(refused, 5)  # answered without a byte of its body
        assert status == 503 and "busy" in body["detail"]
        holder.close()  # its client left mid-upload: the place comes back
        wait_until(lambda: httpx.get(url + "/ready").json()["busy"] == 0, 10, "the place is given back")
        assert httpx.post(url + "/predict", files={"file": ("s.png", PNG)}, timeout=60).status_code == 200


def test_uploads_are_received_a_few_at_a_time_and_slow_bodies_time_out(tiny_checkpoint: Path) -> None:
    with live(tiny_checkpoint, max_concurrent_reads=1, body_timeout_s=2) as (app, url):
        slow = open_request(url, "/predict", b"--x\r\n", "multipart/form-data; boundary=x", declared=10_000)
        time.sleep(1.0)
        start = time.monotonic()
        queued = httpx.post(url + "/predict", files={"file": ("s.png", PNG)}, timeout=30)  # waits for its turn
        status, body = answer(slow, 5)
        assert status == 408 and "METASEG_BODY_TIMEOUT_S" in body["detail"]
        assert queued.status_code == 200 and time.monotonic() - start > 0.5


def test_many_slow_clients_are_answered_within_the_body_timeout(tiny_checkpoint: Path) -> None:
    with live(tiny_checkpoint, max_concurrent_reads=2, body_timeout_s=1) as (app, url):
        start = time.monotonic()
        socks = [open_request(url, "/predict", b"--x\r\nContent-Disposition: form-data; name=\"fi",
                              "multipart/form-data; boundary=x", declared=10_000) for _ in range(6)]
        health = httpx.get(url + "/health", timeout=5)
        assert health.status_code == 200 and health.elapsed.total_seconds() < 1
        statuses = [answer(sock, 10)[0] for sock in socks]
        assert set(statuses) <= {408, 503} and 408 in statuses, statuses
        assert time.monotonic() - start < 6
        for sock in socks:
            sock.close()
        wait_until(lambda: httpx.get(url + "/ready").json()["busy"] == 0, 10, "every place is given back")


# --- 7. messages that say what was wrong and what is accepted ----------------------------------

def test_odd_file_names_and_thresholds_get_clear_messages(tiny_checkpoint: Path) -> None:
    with live(tiny_checkpoint) as (app, url), httpx.Client(base_url=url, timeout=60) as client:
        for filename, words in [("a" * 5000 + ".png", "Maximum header size"), ("x\r\ny.png", "no CR or LF")]:
            body, headers = multipart(("file", filename, PNG))
            assert_clean_error(client.post("/predict", content=body, headers=headers), 400,
                               "could not be parsed", "accepted")
        body, headers = multipart(("file", None, PNG))  # no filename at all: a text field
        assert_clean_error(client.post("/predict", content=body, headers=headers), 422,
                           "without a filename", 'filename="scan.png"')
        body, headers = multipart(("file", "", PNG))  # an empty file name: a nameless upload
        nameless = client.post("/predict?format=json", content=body, headers=headers)
        assert nameless.status_code == 200 and nameless.json()["file"] == "upload"
        for value in ["nan", "inf", "-inf", "abc", "1.5", "0"]:
            response = client.post(f"/predict?threshold={value}", files={"file": ("s.png", PNG)})
            assert_clean_error(response, 422, f"threshold must be a number between 0 and 1 (both excluded), "
                                              f"got {value}")
        as_form = client.post("/predict", files={"file": ("s.png", PNG)}, data={"threshold": "NaN"})
        assert_clean_error(as_form, 422, "got NaN")


# --- 6. warnings in every answer -----------------------------------------------------------------

@dataclass(frozen=True)
class _WarnedScan(Scan):
    warnings: tuple[str, ...] = ("slice spacing varies: 3-D lesion sizes are approximate",)


def test_warnings_reach_every_answer(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import server.engine

    read_scan = server.engine.read_scan
    with live(tiny_checkpoint) as (app, url), httpx.Client(base_url=url, timeout=60) as client:
        plain = client.post("/predict", files={"file": ("s.png", PNG)})
        assert plain.headers["x-warnings"] == "0"
        assert client.post("/predict?format=json", files={"file": ("s.png", PNG)}).json()["warnings"] == []

        def warned(*args: object, **kwargs: object) -> Scan:
            scan = read_scan(*args, **kwargs)
            return _WarnedScan(**{f.name: getattr(scan, f.name) for f in fields(scan) if f.name != "warnings"})

        monkeypatch.setattr(server.engine, "read_scan", warned)
        expected = list(_WarnedScan.warnings)
        assert client.post("/predict", files={"file": ("s.png", PNG)}).headers["x-warnings"] == "1"
        assert client.post("/predict?format=json", files={"file": ("s.png", PNG)}).json()["warnings"] == expected
        batch = client.post("/predict/batch", files=[("files", ("a.png", PNG)), ("files", ("b.png", PNG))]).json()
        assert [item["result"]["warnings"] for item in batch["results"]] == [expected, expected]
        evaluated = client.post("/evaluate", files={"file": ("s.png", PNG),
                                                    "mask": ("m.png", encode_mask_png(SLICE.mask))})
        assert evaluated.status_code == 200 and evaluated.json()["prediction"]["warnings"] == expected


# --- 8. operations and privacy -------------------------------------------------------------------

def test_api_documents_need_the_key_unless_public(tiny_checkpoint: Path) -> None:
    documents = ["/docs", "/redoc", "/openapi.json"]
    with live(tiny_checkpoint, api_key="k") as (app, url):
        assert [httpx.get(url + d).status_code for d in documents] == [401, 401, 401]
        assert [httpx.get(url + d, headers={"X-API-Key": "k"}).status_code for d in documents] == [200, 200, 200]
        assert httpx.get(url + "/health").status_code == httpx.get(url + "/ready").status_code == 200
    with live(tiny_checkpoint, api_key="k", public_docs=True) as (app, url):
        assert [httpx.get(url + d).status_code for d in documents] == [200, 200, 200]
        assert httpx.get(url + "/models").status_code == 401


def test_an_empty_api_key_is_refused_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="METASEG_API_KEY is set but empty"):
        ServerSettings(models=["attention-unet"], api_key=" ")
    env = {**os.environ, "METASEG_API_KEY": ""}
    script = Path(sys.executable).with_name("metaseg-server")
    done = subprocess.run([str(script), "--port", str(free_port())], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "METASEG_API_KEY is set but empty" in done.stderr and "unset the variable" in done.stderr
    done = subprocess.run([sys.executable, "-m", "uvicorn", "server.app:app", "--port", str(free_port())], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "cannot start: invalid settings: api_key: METASEG_API_KEY is set but empty" \
        in done.stderr


def test_only_accepted_uploads_are_kept_within_quota_and_age(tiny_checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "kept"
    folder.mkdir()
    old = folder / ("0" * 32 + ".png")
    old.write_bytes(b"an upload from last week")
    os.utime(old, (time.time() - 3 * 86400,) * 2)
    foreign = folder / "operator-notes.txt"
    foreign.write_bytes(b"not ours")
    os.utime(foreign, (time.time() - 30 * 86400,) * 2)
    noise = [png(np.random.default_rng(seed).integers(0, 256, (100, 100), dtype=np.uint8)) for seed in range(6)]
    quota_mb = 2.5 * len(noise[0]) / 2**20  # room for two of them, not three
    with live(tiny_checkpoint, save_uploads_dir=folder, save_uploads_max_mb=quota_mb, save_uploads_max_days=1) as (
            app, url), httpx.Client(base_url=url, timeout=60) as client:
        dicom_like = b"DICM" + b"PatientName=DOE^JANE\n" * 20  # refused content is never kept
        assert client.post("/predict", files={"file": ("p.dcm", dicom_like)}).status_code == 415
        assert not old.exists() and foreign.exists()  # past the age limit (pruned at start-up); not ours
        assert list(folder.glob("*.dcm")) == []
        for index, data in enumerate(noise):
            assert client.post("/predict", files={"file": (f"n{index}.png", data)}).status_code == 200
            time.sleep(0.02)  # distinct modification times
    kept = sorted(p.read_bytes() for p in folder.iterdir() if p != foreign)
    assert kept == sorted(noise[-2:])  # the newest two: within the quota
