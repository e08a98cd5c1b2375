"""A bounded shutdown on SIGTERM or SIGINT.

uvicorn, on the signal, stops listening and then waits for every open request to finish before
the application's lifespan may end: behind a long volume that is minutes. So the signal also
closes the queue at once (:meth:`InferenceQueue.close`: new requests get 503, waiting jobs never
start, a running job stops at its next batch of slices and its client gets 503), and a watchdog
ends the process if it is still alive ``grace_s`` seconds after the signal (a job stuck inside
one batch, a client still sending its body).

Signals can only be handled in the main thread; elsewhere (an app served from a test thread)
nothing is installed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

from server.jobs import InferenceQueue

log = logging.getLogger("metaseg.server")
SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on_signal(queue: InferenceQueue, grace_s: float) -> Callable[[], None]:
    """Chain our handler before the server's (uvicorn's) for :data:`SIGNALS`; returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    watchdog = threading.Timer(grace_s, _exit_now, args=(grace_s,))
    watchdog.daemon = True

    def begin() -> None:  # on the loop: a signal handler may interrupt a thread holding a lock we need
        if watchdog.ident is None:
            log.info("shutting down: no new work, running jobs stop at their next batch, exit within %g s", grace_s)
            watchdog.start()
        queue.close()

    def handle(sig: int, frame: FrameType | None) -> None:
        handler = previous[sig]
        if handler == signal.SIG_IGN:
            return
        loop.call_soon_threadsafe(begin)
        if callable(handler):
            handler(sig, frame)
        else:  # nobody else listens: the default action (exit)
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)

    for sig in SIGNALS:
        signal.signal(sig, handle)

    def undo() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return undo


def _exit_now(grace_s: float) -> None:
    log.error("shutdown did not finish within %g s (METASEG_SHUTDOWN_GRACE_S); exiting now", grace_s)
    logging.shutdown()
    os._exit(1)
