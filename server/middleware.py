"""The ASGI layers around the routes: request ids and one JSON log line per request; admission
(API key, a place in the queue) before any body is read; the body received under a size limit,
a time limit and a bound on how many are received at once."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.auth import REFUSAL, key_refused
from server.jobs import Unavailable

log = logging.getLogger("metaseg.server.access")
_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


class RequestLogMiddleware:
    """Take a sane ``X-Request-ID`` from the client or make one; echo it; log the request.

    Pure ASGI (not BaseHTTPMiddleware) so streaming bodies and the body-size limit pass through.
    Routes may add fields to the log line through ``request.state.log`` (a dict).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _CLIENT_ID.fullmatch(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"], state["log"] = request_id, {}
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message["headers"] = [*headers, (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            client = scope.get("client")
            record = {"request_id": request_id, "method": scope["method"], "path": scope["path"], "status": status,
                      "ms": round((time.perf_counter() - start) * 1000, 1),
                      "client": client[0] if client else None, **state["log"]}
            log.info(json.dumps(record))


class AdmissionMiddleware:
    """Refuse requests that would be refused anyway before their body is read, so they cost no
    memory: no or wrong API key (401; the only place the key is checked, see :mod:`server.auth`).
    A request to a ``queued`` route (uploads to segment) then takes its place in the queue here —
    503 when there is none, or while shutting down — and gives it back when its answer is sent
    or it failed in any way."""

    def __init__(self, app: ASGIApp, queued: Sequence[BaseRoute]) -> None:
        self.app, self.queued = app, queued

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if key_refused(scope):
            await send_error(scope, send, 401, REFUSAL, [(b"www-authenticate", b"APIKey")])
            return
        queue = getattr(scope["app"].state, "queue", None)
        if queue is None or not any(route.matches(scope)[0] is Match.FULL for route in self.queued):
            await self.app(scope, receive, send)
            return
        try:
            queue.admit()
        except Unavailable as exc:
            retry = [] if exc.retry_after is None else [(b"retry-after", str(exc.retry_after).encode())]
            await send_error(scope, send, 503, str(exc), retry)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            queue.leave()


class BodyMiddleware:
    """Receive a request's whole body before the app sees it, then hand it on unchanged.

    At most ``readers`` bodies are received at once; a request waits up to ``timeout_s`` for its
    turn (503 after), then its body must arrive within ``timeout_s`` (JSON 408, so a slow client
    cannot hold a place for ever) and stay under the size limit (JSON 413: at once when
    ``Content-Length`` declares too much, else when the bytes received pass it; Starlette's own
    limiter answers in plain text). Requests without a body pass straight on.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, max_upload_mb: float, timeout_s: float, readers: int) -> None:
        self.app, self.max_bytes, self.max_upload_mb, self.timeout_s = app, max_bytes, max_upload_mb, timeout_s
        self.readers = asyncio.Semaphore(readers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"]) if scope["type"] == "http" else {}
        declared = headers.get(b"content-length", b"").strip()
        if not (declared.strip(b"0") or b"transfer-encoding" in headers):  # no body, or an empty one
            await self.app(scope, receive, send)
            return
        if declared.isdigit() and int(declared) > self.max_bytes:
            await send_error(scope, send, 413, too_large_message(self.max_upload_mb))
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.readers.acquire()
        except TimeoutError:
            await send_error(scope, send, 503, "the server is busy receiving other uploads; retry in a moment",
                             [(b"retry-after", b"5")])
            return
        try:
            chunks = await self._receive_body(receive)
        except TimeoutError:
            await send_error(scope, send, 408, f"the request body did not arrive within {self.timeout_s:g} s "
                                               "(METASEG_BODY_TIMEOUT_S); accepted: uploads sent within that time")
            return
        finally:
            self.readers.release()
        if chunks is None:  # the client left while sending: nobody to answer
            return
        if sum(map(len, chunks)) > self.max_bytes:
            await send_error(scope, send, 413, too_large_message(self.max_upload_mb))
            return

        async def replay() -> Message:
            if chunks:
                return {"type": "http.request", "body": chunks.popleft(), "more_body": bool(chunks)}
            return await receive()  # after the body only http.disconnect comes

        await self.app(scope, replay, send)

    async def _receive_body(self, receive: Receive) -> deque[bytes] | None:
        """The body's chunks; stops early (returning what came) once past the limit; ``None``
        when the client disconnected."""
        chunks: deque[bytes] = deque()
        received = 0
        async with asyncio.timeout(self.timeout_s):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunks.append(message.get("body", b""))
                received += len(chunks[-1])
                if received > self.max_bytes or not message.get("more_body", False):
                    return chunks


async def send_error(scope: Scope, send: Send, status: int, detail: str,
                     headers: list[tuple[bytes, bytes]] | None = None, close: bool = True) -> None:
    """A JSON error answered outside the app's handlers (same body as errors.py's). ``close``
    ends the connection after it: needed when the body was not (all) read."""
    request_id = scope.get("state", {}).get("request_id")
    body = json.dumps({"detail": detail, "request_id": request_id}).encode()
    closing = [(b"connection", b"close")] if close else []
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *closing, *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def too_large_message(max_upload_mb: float) -> str:
    return (f"the request body is larger than this server's limit of {max_upload_mb:g} MiB "
            "(METASEG_MAX_UPLOAD_MB); accepted: uploads up to that size")
