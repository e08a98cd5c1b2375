"""Concurrent single slices share network calls, and each request still gets its own answer.

The merging itself on the queue alone (no HTTP), then a real uvicorn on 127.0.0.1 (served from a
thread, so a test can hold the network or break one request): under concurrent clients every mask
equals the core Predictor's for that image, merged calls really form (the request log's
``batch``), and a request that fails or is cancelled inside a merged call fails alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed (pip install -e '.[server]')")
import httpx  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from metaseg_viewer.encoding import rle_decode  # noqa: E402
from metaseg_viewer.inference import Predictor  # noqa: E402
from metaseg_viewer.io import read_scan  # noqa: E402
from metaseg_viewer.samples import make_slice  # noqa: E402
from server.app import create_app  # noqa: E402
from server.jobs import Cancelled, InferenceQueue, ShuttingDown  # noqa: E402
from server.merged import MergedCall  # noqa: E402
from server.settings import ServerSettings  # noqa: E402
from factories import png_bytes as png, tiff_bytes  # noqa: E402
from live_server import serve_in_thread  # noqa: E402
from test_server_hardening import multipart, open_request, wait_until  # noqa: E402


# --- the queue alone ----------------------------------------------------------------------------

class _Sum:
    """A hashable call that records the batches it was called with."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.gate = gate

    def __call__(self, items: list[int]) -> list[int]:
        if self.gate is not None:
            self.gate.wait(10)
        self.batches.append(list(items))
        return [item * 10 for item in items]


def test_equal_calls_are_merged_up_to_the_limit_and_others_are_not() -> None:
    async def scenario() -> None:
        queue = InferenceQueue(workers=1, queue_size=10, max_cost=100, readers=1, batch_slices=3, batch_wait_s=1.0)
        gate = threading.Event()
        held, first, second = _Sum(gate), _Sum(), _Sum()
        holding = asyncio.create_task(queue.run_merged(held, 0, 1, threading.Event()))  # holds the only thread
        await asyncio.sleep(0.2)
        tasks = [asyncio.create_task(queue.run_merged(call, n, 1, threading.Event()))
                 for n, call in enumerate([first, second, first, first, first], start=1)]
        await asyncio.sleep(0.2)
        assert queue.cost == 6
        gate.set()
        assert await holding == 0 and [await t for t in tasks] == [10, 20, 30, 40, 50]
        assert held.batches == [[0]] and first.batches == [[1, 3, 4], [5]] and second.batches == [[2]]
        assert queue.cost == 0
        queue.shutdown()

    asyncio.run(scenario())


def test_a_lone_request_does_not_wait_for_company() -> None:
    async def scenario() -> None:
        queue = InferenceQueue(workers=1, queue_size=10, max_cost=100, readers=1, batch_slices=8, batch_wait_s=5.0)
        start = time.monotonic()
        assert await queue.run_merged(_Sum(), 1, 1, threading.Event()) == 10
        assert time.monotonic() - start < 2  # no request was on its way: the 5 s wait did not apply
        queue.shutdown()

    asyncio.run(scenario())


def test_cancelled_and_shut_down_items_are_left_out_of_the_call() -> None:
    async def scenario() -> None:
        queue = InferenceQueue(workers=1, queue_size=10, max_cost=100, readers=1, batch_slices=8)
        gate = threading.Event()
        held, call = _Sum(gate), _Sum()
        holding = asyncio.create_task(queue.run_merged(held, 0, 1, threading.Event()))
        await asyncio.sleep(0.2)
        left = threading.Event()
        tasks = [asyncio.create_task(queue.run_merged(call, n, 1, cancel))
                 for n, cancel in [(1, threading.Event()), (2, left), (3, threading.Event())]]
        await asyncio.sleep(0.2)
        left.set()  # its client disconnected while it waited
        gate.set()
        assert await tasks[0] == 10 and await tasks[2] == 30 and await holding == 0
        with pytest.raises(Cancelled):
            await tasks[1]
        assert call.batches == [[1, 3]]
        gate.clear()
        holding = asyncio.create_task(queue.run_merged(held, 0, 1, threading.Event()))
        await asyncio.sleep(0.2)
        waiting = asyncio.create_task(queue.run_merged(call, 4, 1, threading.Event()))
        await asyncio.sleep(0.2)
        queue.close()  # SIGTERM: waiting items never run; a running call is one batch and ends
        gate.set()
        assert await holding == 0
        with pytest.raises(ShuttingDown):
            await waiting
        assert call.batches == [[1, 3]] and queue.cost == 0
        queue.shutdown()

    asyncio.run(scenario())


# --- a real server ------------------------------------------------------------------------------

class _AccessLog(logging.Handler):
    """The request log lines (JSON), by request id."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[str, dict] = {}

    def emit(self, record: logging.LogRecord) -> None:
        line = json.loads(record.getMessage())
        self.lines[line["request_id"]] = line

    def line(self, request_id: str) -> dict:
        """The request's line; it is written just after the answer is sent."""
        wait_until(lambda: request_id in self.lines, 10, f"{request_id} is logged")
        return self.lines[request_id]


@contextmanager
def live(models: list[str], **changes: object) -> Iterator[tuple[FastAPI, str, _AccessLog]]:
    access = _AccessLog()
    logger = logging.getLogger("metaseg.server.access")
    logger.addHandler(access)
    try:
        app = create_app(ServerSettings(models=models, torch_threads=1, **changes))
        with serve_in_thread(app) as url:
            yield app, url, access
    finally:
        logger.removeHandler(access)


def slices(count: int) -> list[np.ndarray]:
    """Different images of different sizes and shapes (so each request has its own geometry)."""
    return [make_slice(64 + 16 * (i % 4), seed=i).image[:, : 64 + 8 * (i % 3)] for i in range(count)]


def ask_all(url: str, images: list[np.ndarray], indices: Sequence[int] | None = None) -> dict[int, httpx.Response]:
    """``/predict?format=json`` of each image (by index) from its own client, all at once."""
    indices = range(len(images)) if indices is None else indices

    def ask(index: int) -> httpx.Response:
        return httpx.post(f"{url}/predict?format=json", files={"file": (f"s{index}.png", png(images[index]))},
                          headers={"X-Request-ID": f"client-{index}"}, timeout=300)

    with ThreadPoolExecutor(len(indices)) as pool:
        return dict(zip(indices, pool.map(ask, indices)))


def assert_own_masks(responses: dict[int, httpx.Response], images: list[np.ndarray], predictor: Predictor) -> None:
    """Each answer is its own image's, and its mask is the core Predictor's for that image alone."""
    for index, response in responses.items():
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["file"] == f"s{index}.png" and body["shape"] == [1, *images[index].shape]
        assert np.array_equal(rle_decode(body["mask"]), predictor.predict(read_scan(png(images[index]))).mask), index


def test_sixteen_clients_share_network_calls_and_get_their_own_masks(tiny_checkpoint: Path) -> None:
    images = slices(16)
    with live([str(tiny_checkpoint)], batch_wait_ms=300) as (app, url, access):
        (predictor,) = app.state.engine.predictors.values()
        responses = ask_all(url, images)
        assert_own_masks(responses, images, predictor)
        batches = [access.line(f"client-{i}")["batch"] for i in range(16)]
        assert max(batches) > 1 and max(batches) <= 8, batches  # merged, within METASEG_MAX_BATCH_SLICES
        three = tiff_bytes(np.stack([image[:64, :64] for image in images[:3]]), photometric="minisblack")
        stack = httpx.post(url + "/predict?format=json", files={"file": ("three.tif", three)},
                           headers={"X-Request-ID": "stack"}, timeout=60)
        assert stack.json()["shape"] == [3, 64, 64] and "batch" not in access.line("stack")  # the stacks' path
        assert httpx.get(url + "/ready").json()["cost"] == 0
    with live([str(tiny_checkpoint)], max_batch_slices=1) as (app, url, access):
        (predictor,) = app.state.engine.predictors.values()
        assert_own_masks(ask_all(url, images, range(4)), images, predictor)
        assert not any("batch" in access.line(f"client-{i}") for i in range(4))  # merging off


def test_a_shipped_model_under_sixteen_clients() -> None:
    images = slices(16)
    with live(["attention-unet"]) as (app, url, access):  # default wait and batch size
        responses = ask_all(url, images)
        assert_own_masks(responses, images, app.state.engine.predictors["attention-unet"])
        found = [rle_decode(r.json()["mask"]).any() for r in responses.values()]
        assert sum(found) >= 8, found  # the samples' lesions are found: not a comparison of empty masks
        batches = [access.line(f"client-{i}")["batch"] for i in range(16)]
        assert max(batches) > 1, batches


@contextmanager
def held_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """The first merged call waits for the yielded gate, so that the next requests queue behind it."""
    gate, call = threading.Event(), MergedCall.__call__
    first = threading.Lock()

    def held(self: MergedCall, batch: list) -> list:
        if first.acquire(blocking=False):
            gate.wait(30)
        return call(self, batch)

    monkeypatch.setattr(MergedCall, "__call__", held)
    try:
        yield gate
    finally:
        gate.set()


def test_a_request_that_fails_inside_a_merged_call_fails_alone(tiny_checkpoint: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    images = slices(4)
    with live([str(tiny_checkpoint)]) as (app, url, access), ThreadPoolExecutor(2) as pool, \
            held_network(monkeypatch) as gate:
        engine = app.state.engine
        (predictor,) = engine.predictors.values()
        segment = engine.segment

        def broken_for_s1(upload, *args, **kwargs):  # a bug in one request's own steps
            if upload.name == "s1.png":
                raise ZeroDivisionError("post-processing of s1")
            return segment(upload, *args, **kwargs)

        engine.segment = broken_for_s1
        first = pool.submit(ask_all, url, images, [0])  # s0 holds the network
        wait_until(lambda: httpx.get(url + "/ready").json()["cost"] == 1, 30, "s0 reaches the network")
        later = pool.submit(ask_all, url, images, [1, 2, 3])
        wait_until(lambda: httpx.get(url + "/ready").json()["cost"] == 4, 30, "s1, s2, s3 wait to be merged")
        gate.set()
        responses = {**first.result(60), **later.result(60)}
        failed = responses.pop(1)
        assert failed.status_code == 500 and "Report it with the request id" in failed.json()["detail"]
        assert_own_masks(responses, images, predictor)
        assert [access.line(f"client-{i}")["batch"] for i in (1, 2, 3)] == [3, 3, 3]  # one call, one failure


def test_a_request_cancelled_while_waiting_for_a_merged_call_leaves_the_others_alone(
        tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = slices(3)
    with live([str(tiny_checkpoint)]) as (app, url, access), ThreadPoolExecutor(2) as pool, \
            held_network(monkeypatch) as gate:
        (predictor,) = app.state.engine.predictors.values()
        first = pool.submit(ask_all, url, images, [0])
        wait_until(lambda: httpx.get(url + "/ready").json()["cost"] == 1, 30, "s0 reaches the network")
        body, headers = multipart(("file", "gone.png", png(images[2])))
        gone = open_request(url, "/predict?format=json", body, headers["Content-Type"])
        wait_until(lambda: httpx.get(url + "/ready").json()["cost"] == 2, 30, "the leaving client waits")
        gone.close()  # its client gives up while its slice waits to be merged
        time.sleep(1.0)  # the disconnect is noticed (polled every 0.25 s)
        later = pool.submit(ask_all, url, images, [1])
        wait_until(lambda: httpx.get(url + "/ready").json()["cost"] == 3, 30, "s1 waits too")
        gate.set()
        assert_own_masks({**first.result(60), **later.result(60)}, images, predictor)
        assert access.line("client-1")["batch"] == 1  # the cancelled slice was left out of s1's call
        wait_until(lambda: any(line.get("cancelled") == "client disconnected" for line in access.lines.values()),
                   10, "the cancelled request is logged")
        assert httpx.get(url + "/ready").json()["cost"] == 0
