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

Jobs that make the same network calls (single slices of one model and TTA) are merged into one
call by :class:`Batcher` (:meth:`InferenceQueue.run_merged`), as inference servers batch: they
are admitted, counted and cancelled one by one all the same.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
X = TypeVar("X")


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
    def __init__(self, workers: int, queue_size: int, max_cost: int, readers: int, batch_slices: int = 1,
                 batch_wait_s: float = 0.0) -> None:
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
        self._batcher = Batcher(self._executor.submit, batch_slices, batch_wait_s, self._more_coming, self._observe)
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
        """Run a request's own work outside the networks on a reader thread (at most ``readers``
        at once): decoding, and preparing and finishing a merged network call."""
        return await asyncio.wrap_future(self._readers.submit(job))

    async def run(self, job: Callable[[], T], cost: int, cancel: threading.Event) -> T:
        """Run ``job`` on an inference thread and await its result.

        Raises :class:`QueueFull` when ``cost`` does not fit (a job is always admitted to an idle
        queue), :class:`ShuttingDown` when the server is stopping, :class:`Cancelled` when
        ``cancel`` was set before the job finished."""
        return await self._held(lambda: self._executor.submit(self._timed, job, cost, cancel), cost, cancel)

    async def run_merged(self, call: Callable[[list[X]], list[T]], item: X, cost: int, cancel: threading.Event) -> T:
        """``call``'s output for ``item``, computed in one call with the items of other requests
        for an equal ``call`` (see :class:`Batcher`); admitted, refused and cancelled as :meth:`run`."""
        return await self._held(lambda: self._batcher.add(call, item, cost, cancel), cost, cancel)

    async def _held(self, submit: Callable[[], Future[T]], cost: int, cancel: threading.Event) -> T:
        """Admit ``cost``, submit, and give the cost back once the submitted work is done."""
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
            future = submit()
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
        self._observe(time.perf_counter() - start, cost)
        return result

    def _observe(self, seconds: float, cost: int) -> None:
        with self._lock:
            self._seconds_per_pass = 0.8 * self._seconds_per_pass + 0.2 * seconds / max(cost, 1)

    def _more_coming(self) -> bool:
        """Whether admitted requests have not reached the inference threads yet (still being
        received or decoded), so that one more might join a merged call."""
        return self._admitted > len(self._cancels)

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


@dataclass(eq=False)
class _Waiting:
    item: Any
    cost: int
    cancel: threading.Event
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    """Items of equal calls, merged into one call on an inference thread.

    A *call* is a hashable callable from a list of items to one output per item. While items of a
    call wait, one flush of it is queued on the inference threads; when a thread takes it, it
    calls once on up to ``max_items`` of them: all that came while the threads were busy. From an
    idle thread it first waits for more, up to ``wait_s`` after the oldest item arrived, but only
    while ``more_coming()`` says other requests are on their way, so a lone client never waits.
    An item whose cancel event is set is left out (:class:`Cancelled`); an error of the call
    fails the items in it; what each request does before and after the call fails only itself.
    """

    def __init__(self, submit: Callable[..., Future], max_items: int, wait_s: float,
                 more_coming: Callable[[], bool], observe: Callable[[float, int], None]) -> None:
        self._submit, self.max_items, self.wait_s = submit, max_items, wait_s
        self._more_coming, self._observe = more_coming, observe
        self._waiting: dict[Hashable, list[_Waiting]] = {}
        self._changed = threading.Condition()

    def add(self, call: Callable[[list[X]], list[T]], item: X, cost: int, cancel: threading.Event) -> Future[T]:
        waiting = _Waiting(item, cost, cancel)
        with self._changed:
            items = self._waiting.setdefault(call, [])
            items.append(waiting)
            if len(items) == 1:
                self._schedule(call)
            self._changed.notify_all()
        return waiting.future

    def _schedule(self, call: Hashable) -> None:
        """Queue a flush of ``call`` (lock held); once the threads are shut down its items fail."""
        try:
            self._submit(self._flush, call)
        except RuntimeError:  # cannot schedule new futures after shutdown
            for waiting in self._waiting.pop(call):
                waiting.future.set_exception(ShuttingDown())

    def _take(self, call: Hashable) -> list[_Waiting]:
        with self._changed:
            items = self._waiting[call]
            deadline = items[0].arrived + self.wait_s
            while len(items) < self.max_items and self._more_coming():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            taken, items[:] = items[: self.max_items], items[self.max_items :]
            if items:
                self._schedule(call)
            else:
                del self._waiting[call]
        return taken

    def _flush(self, call: Callable[[list[Any]], list[Any]]) -> None:
        taken = [waiting for waiting in self._take(call) if _starts(waiting)]
        if not taken:
            return
        start = time.perf_counter()
        try:
            outputs = call([waiting.item for waiting in taken])
        except BaseException as exc:
            for waiting in taken:
                waiting.future.set_exception(exc)
            return
        self._observe(time.perf_counter() - start, sum(waiting.cost for waiting in taken))
        for waiting, output in zip(taken, outputs):
            waiting.future.set_result(output)


def _starts(waiting: _Waiting) -> bool:
    """Mark an item running; false (and done) when its client left or nobody awaits it any more."""
    if not waiting.future.set_running_or_notify_cancel():
        return False
    if waiting.cancel.is_set():
        waiting.future.set_exception(Cancelled())
        return False
    return True
