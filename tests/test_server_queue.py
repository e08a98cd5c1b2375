"""The bounded inference queue on its own: admission, 503 signal, slots freed by finished jobs."""

from __future__ import annotations

import asyncio
import threading

import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed")
from server.jobs import InferenceQueue, QueueFull  # noqa: E402


def test_full_queue_refuses_and_frees_slots_when_jobs_finish() -> None:
    async def scenario() -> None:
        queue = InferenceQueue(workers=1, queue_size=1)
        gate = threading.Event()
        first = asyncio.create_task(queue.run(lambda: gate.wait(10) and "first"))
        second = asyncio.create_task(queue.run(lambda: "second"))
        await asyncio.sleep(0.05)
        assert queue.admitted == 2
        with pytest.raises(QueueFull) as full:
            await queue.run(lambda: "third")
        assert full.value.retry_after >= 1 and "busy" in str(full.value)
        second.cancel()  # a waiting job whose client gave up never runs: its slot is free at once
        await asyncio.sleep(0.05)
        assert queue.admitted == 1
        first.cancel()  # a running job cannot be stopped: it keeps its slot until it is done
        await asyncio.sleep(0.05)
        assert queue.admitted == 1
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await first
        for _ in range(100):
            if queue.admitted == 0:
                break
            await asyncio.sleep(0.01)
        assert queue.admitted == 0
        assert await queue.run(lambda: 42) == 42
        queue.shutdown()

    asyncio.run(scenario())


def test_a_failing_job_raises_in_the_caller_and_frees_its_slot() -> None:
    async def scenario() -> None:
        queue = InferenceQueue(workers=1, queue_size=0)
        with pytest.raises(ZeroDivisionError):
            await queue.run(lambda: 1 / 0)
        await asyncio.sleep(0.01)
        assert queue.admitted == 0
        queue.shutdown()

    asyncio.run(scenario())
