"""The inference queue on its own: admission by requests and by cost, 503 signals, cancellation."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed")
from server.jobs import Cancelled, InferenceQueue, QueueFull, ShuttingDown, check_cancel  # noqa: E402


async def _until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def test_requests_are_admitted_up_to_capacity_and_leave_frees_a_place() -> None:
    queue = InferenceQueue(workers=1, queue_size=1, max_cost=100, readers=1)
    queue.admit()
    queue.admit()
    with pytest.raises(QueueFull) as full:
        queue.admit()
    assert full.value.retry_after >= 1 and "busy" in str(full.value)
    queue.leave()
    queue.admit()
    assert queue.admitted == 2
    queue.shutdown()


def test_work_is_counted_in_cost_not_in_requests() -> None:
    async def scenario() -> None:
        queue = InferenceQueue(workers=1, queue_size=10, max_cost=10, readers=1)
        gate = threading.Event()
        first = asyncio.create_task(queue.run(lambda: gate.wait(10) and "first", 6, threading.Event()))
        await _until(lambda: queue.cost == 6)
        with pytest.raises(QueueFull) as full:  # 6 + 5 > 10, however few requests that is
            await queue.run(lambda: "second", 5, threading.Event())
        assert "needs 5" in str(full.value) and "METASEG_MAX_QUEUE_COST" in str(full.value)
        third = asyncio.create_task(queue.run(lambda: "third", 4, threading.Event()))  # 6 + 4 fits
        gate.set()
        assert await first == "first" and await third == "third"
        await _until(lambda: queue.cost == 0)
        assert await queue.run(lambda: "big", 50, threading.Event()) == "big"  # an idle queue takes any job
        queue.shutdown()

    asyncio.run(scenario())


def test_a_cancelled_job_stops_waiting_or_at_its_next_check() -> None:
    async def scenario() -> None:
        queue = InferenceQueue(workers=1, queue_size=1, max_cost=100, readers=1)
        running, waiting = threading.Event(), threading.Event()
        started, batches = threading.Event(), []

        def long_job() -> str:
            started.set()
            for batch in range(500):  # a job made of batches, checking its event between them
                check_cancel(running)
                batches.append(batch)
                time.sleep(0.01)
            return "finished"

        first = asyncio.create_task(queue.run(long_job, 1, running))
        ran_second = threading.Event()
        second = asyncio.create_task(queue.run(ran_second.set, 1, waiting))
        await _until(started.is_set)
        waiting.set()  # its client left while it waited: it never starts
        running.set()  # its client left while it ran: it stops at the next batch
        with pytest.raises(Cancelled):
            await first
        with pytest.raises(Cancelled):
            await second
        assert not ran_second.is_set() and len(batches) < 500
        await _until(lambda: queue.cost == 0)
        queue.shutdown()

    asyncio.run(scenario())


def test_closing_cancels_every_job_and_refuses_new_ones() -> None:
    async def scenario() -> None:
        queue = InferenceQueue(workers=1, queue_size=1, max_cost=100, readers=1)
        started = threading.Event()

        def long_job(cancel: threading.Event) -> None:
            started.set()
            while True:
                check_cancel(cancel)
                time.sleep(0.01)

        cancel = threading.Event()
        job = asyncio.create_task(queue.run(lambda: long_job(cancel), 1, cancel))
        await _until(started.is_set)
        queue.close()
        with pytest.raises(ShuttingDown):
            await job
        with pytest.raises(ShuttingDown):
            queue.admit()
        with pytest.raises(ShuttingDown):
            await queue.run(lambda: None, 1, threading.Event())
        queue.shutdown()

    asyncio.run(scenario())


def test_a_failing_job_raises_in_the_caller_and_frees_its_cost() -> None:
    async def scenario() -> None:
        queue = InferenceQueue(workers=1, queue_size=0, max_cost=10, readers=1)
        with pytest.raises(ZeroDivisionError):
            await queue.run(lambda: 1 / 0, 3, threading.Event())
        await _until(lambda: queue.cost == 0)
        assert await queue.read(lambda: "decoded") == "decoded"
        queue.shutdown()

    asyncio.run(scenario())
