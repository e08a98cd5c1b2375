"""The threads that do the blocking work, and what may wait for them.

Segmentation and decoding are blocking; they run on threads so the event loop keeps answering
(``/health`` stays fast while a volume is segmented). Admission is counted twice:

- *requests* (:meth:`InferenceQueue.admit`, before the body is read): at most ``workers +
  queue_size`` at once, which bounds the uploads held in memory;
- *cost* (:meth:`InferenceQueue.run`, once the uploads are decoded): network passes (slices x
  passes per slice) running or waiting on the inference threads, at most ``max_cost``, so a batch
  of 32 slices weighs like a 32-slice volume, not like one request.

Either limit answers :class:`QueueFull` (HTTP 503 with ``Retry-After``). Every job carries a
``threading.Event``: set when its client leaves or the server shuts down, it stops the job before
it starts or at its next batch of slices (:class:`Cancelled`), and frees its thread.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Unavailable(Exception):
    """Work refused or stopped for the server's reasons, not the request's (HTTP 503)."""

    retry_after: int | None = None


class QueueFull(Unavailable):
    """The request or cost limit is reached; ``retry_after`` is an estimate in seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(f"the server is busy: {message}; retry after about {retry_after} s")
        self.retry_after = retry_after


class ShuttingDown(Unavailable):
    def __init__(self) -> None:
        super().__init__("the server is shutting down and accepts no more work; retry in a moment "
                         "(or at another instance)")


class Cancelled(Unavailable):
    """A job stopped before it started or between batches of slices (its cancel event was set)."""

    def __init__(self) -> None:
        super().__init__("the request was cancelled: its client disconnected")


def check_cancel(cancel: threading.Event | None) -> None:
    """Raise :class:`Cancelled` once ``cancel`` is set (called between batches of slices)."""
    if cancel is not None and cancel.is_set():
        raise Cancelled()


class InferenceQueue:
    def __init__(self, workers: int, queue_size: int, max_cost: int, readers: int) -> None:
        self.workers = workers
        self.capacity = workers + queue_size
        self.max_cost = max_cost
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="reader")
        self._lock = threading.Lock()
        self._admitted = 0
        self._cost = 0
        self._cancels: set[threading.Event] = set()
        self._seconds_per_pass = 0.2  # running mean, for Retry-After
        self.closing = False

    @property
    def admitted(self) -> int:
        """Requests admitted now: uploads being received, decoded, waiting or segmented."""
        return self._admitted

    @property
    def cost(self) -> int:
        """Network passes running or waiting on the inference threads now."""
        return self._cost

    def admit(self) -> None:
        """Take a request's place before its body is read; :meth:`leave` gives it back."""
        with self._lock:
            if self.closing:
                raise ShuttingDown()
            if self._admitted >= self.capacity:
                raise QueueFull(f"{self.capacity} requests are already being read, segmented or waiting",
                                self._retry_after(0))
            self._admitted += 1

    def leave(self) -> None:
        with self._lock:
            self._admitted -= 1

    async def read(self, job: Callable[[], T]) -> T:
        """Run a decoding job on a reader thread (at most ``readers`` at once)."""
        return await asyncio.wrap_future(self._readers.submit(job))

    async def run(self, job: Callable[[], T], cost: int, cancel: threading.Event) -> T:
        """Run ``job`` on an inference thread and await its result.

        Raises :class:`QueueFull` when ``cost`` does not fit (a job is always admitted to an idle
        queue), :class:`ShuttingDown` when the server is stopping, :class:`Cancelled` when
        ``cancel`` was set before the job finished."""
        with self._lock:
            if self.closing:
                raise ShuttingDown()
            if self._cost and self._cost + cost > self.max_cost:
                raise QueueFull(f"{self._cost} network passes are already running or waiting and this request "
                                f"needs {cost}; this server admits {self.max_cost} at once (METASEG_MAX_QUEUE_COST)",
                                self._retry_after(cost))
            self._cost += cost
            self._cancels.add(cancel)
        try:
            future = self._executor.submit(self._timed, job, cost, cancel)
        except BaseException:
            self._release(cost, cancel)
            raise
        future.add_done_callback(lambda _: self._release(cost, cancel))
        try:
            return await asyncio.wrap_future(future)
        except Cancelled:
            if self.closing:
                raise ShuttingDown() from None
            raise

    def _timed(self, job: Callable[[], T], cost: int, cancel: threading.Event) -> T:
        check_cancel(cancel)  # waited in line while its client left or the server began to stop
        start = time.perf_counter()
        result = job()
        seconds = time.perf_counter() - start
        with self._lock:
            self._seconds_per_pass = 0.8 * self._seconds_per_pass + 0.2 * seconds / max(cost, 1)
        return result

    def _release(self, cost: int, cancel: threading.Event) -> None:
        with self._lock:
            self._cost -= cost
            self._cancels.discard(cancel)

    def _retry_after(self, cost: int) -> int:
        """Seconds until the work ahead (and ``cost``) is likely done, from the running mean."""
        return max(1, math.ceil((self._cost + cost) * self._seconds_per_pass / self.workers))

    def close(self) -> None:
        """Stop admitting and cancel every job: waiting ones never start, running ones stop at
        their next batch of slices. Runs on the event loop (see :mod:`server.shutdown`)."""
        with self._lock:
            self.closing = True
            cancels = list(self._cancels)
        for cancel in cancels:
            cancel.set()

    def shutdown(self) -> None:
        self.close()
        self._readers.shutdown(wait=True, cancel_futures=True)
        self._executor.shutdown(wait=True, cancel_futures=True)
