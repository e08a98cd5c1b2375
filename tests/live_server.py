"""A real uvicorn on 127.0.0.1 for tests: ``uvicorn server.app:app`` as a process, or an app
object served from a thread of the test process (so a test can patch it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict[str, str], command: list[str] | None = None, cwd: Path = REPO,
                 timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """Start the server and wait until ``/ready`` answers 200. Its output (stdout and stderr) is
    drained by a thread, so a chatty server never blocks on a full pipe; :func:`output` has it."""
    port = free_port()
    command = command or [sys.executable, "-m", "uvicorn", "server.app:app", "--host", "127.0.0.1", "--port", str(port)]
    command = [c.replace("{port}", str(port)) for c in command]
    process = subprocess.Popen(command, cwd=cwd, env={**os.environ, **env}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    drain = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    drain.start()
    _OUTPUT[process.pid] = (lines, drain)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{output(process)}")
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    raise AssertionError("server did not become ready in time")


_OUTPUT: dict[int, tuple[list[str], threading.Thread]] = {}


def output(process: subprocess.Popen) -> str:
    """Everything the server wrote, once it has exited."""
    lines, drain = _OUTPUT[process.pid]
    process.wait()
    drain.join(10)
    return "".join(lines)


def stop(process: subprocess.Popen) -> str:
    """SIGTERM, then SIGKILL after 30 s; returns the server's output."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    return output(process)


@contextmanager
def serve_in_thread(app: object, timeout: float = 60) -> Iterator[str]:
    """Serve ``app`` with uvicorn (real sockets, HTTP/1.1 keep-alive) on a free port; yields its URL.
    Signals stay with the test process: the server runs outside the main thread."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("the in-process server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(30)
