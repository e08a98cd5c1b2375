"""A bounded queue in front of the inference threads.

Segmentation is blocking work; it runs in a thread pool so the event loop keeps answering
(``/health`` stays fast while a volume is segmented). At most ``workers + queue_size`` jobs are
admitted at once; one more gets :class:`QueueFull` (HTTP 503 with ``Retry-After``) instead of
piling up. A slot is freed when its job finishes, or when a job still waiting is cancelled
because its client went away (it will never run); a running job keeps its slot until it is
done, so abandoned requests cannot let more work in than the threads can do.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class QueueFull(Exception):
    """All workers busy and the waiting line full; ``retry_after`` is an estimate in seconds."""

    def __init__(self, retry_after: int, capacity: int) -> None:
        super().__init__(f"the server is busy: {capacity} requests are already being segmented or waiting; "
                         f"retry after about {retry_after} s")
        self.retry_after = retry_after


class InferenceQueue:
    def __init__(self, workers: int, queue_size: int) -> None:
        self.workers = workers
        self.capacity = workers + queue_size
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        self._lock = threading.Lock()
        self._admitted = 0
        self._mean_seconds = 1.0  # running mean of job time, for Retry-After

    @property
    def admitted(self) -> int:
        """Jobs running or waiting now."""
        return self._admitted

    @property
    def full(self) -> bool:
        """No place left: one more job gets :class:`QueueFull`."""
        return self._admitted >= self.capacity

    def full_error(self) -> QueueFull:
        """The 503 to answer now, with a Retry-After from the running mean job time."""
        waves = math.ceil((self._admitted + 1) / self.workers)
        return QueueFull(max(1, math.ceil(waves * self._mean_seconds)), self.capacity)

    async def run(self, job: Callable[[], T]) -> T:
        """Run ``job`` on a worker thread and await its result; raise QueueFull when full."""
        with self._lock:
            if self.full:
                raise self.full_error()
            self._admitted += 1
        try:
            future = self._executor.submit(self._timed, job)
        except BaseException:
            self._release(None)
            raise
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def _timed(self, job: Callable[[], T]) -> T:
        start = time.perf_counter()
        try:
            return job()
        finally:
            seconds = time.perf_counter() - start
            with self._lock:
                self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * seconds

    def _release(self, _: Future | None) -> None:
        with self._lock:
            self._admitted -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
