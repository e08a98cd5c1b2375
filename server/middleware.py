"""Request ids and one structured (JSON) log line per request, with its timing."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.auth import REFUSAL, key_refused

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


class UploadLimitMiddleware:
    """Refuse bodies over the limit with the server's JSON 413: at once when ``Content-Length``
    declares too much (nothing is read), else when the bytes read so far pass it (chunked
    uploads). Starlette's own limiter answers in plain text, so it is not used."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_upload_mb: float) -> None:
        self.app, self.max_bytes, self.max_upload_mb = app, max_bytes, max_upload_mb

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await send_error(scope, send, 413, too_large_message(self.max_upload_mb))
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413)  # FastAPI re-raises it from body parsing; errors.py words it
            return message

        await self.app(scope, counted, send)


class AdmissionMiddleware:
    """Refuse requests that would be refused anyway — no or wrong API key (401; the only place
    the key is checked, see :mod:`server.auth`), full queue (503) for uploads — before their body
    is read, so such requests cost no memory. The queue still decides under its lock."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if key_refused(scope):
                await send_error(scope, send, 401, REFUSAL, [(b"www-authenticate", b"APIKey")])
                return
            queue = getattr(scope["app"].state, "queue", None)
            if (scope["method"] == "POST" and scope["path"].startswith(("/predict", "/evaluate"))
                    and queue is not None and queue.full):
                full = queue.full_error()
                await send_error(scope, send, 503, str(full), [(b"retry-after", str(full.retry_after).encode())])
                return
        await self.app(scope, receive, send)


async def send_error(scope: Scope, send: Send, status: int, detail: str,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A JSON error answered before the app runs (same body as errors.py's handlers)."""
    request_id = scope.get("state", {}).get("request_id")
    body = json.dumps({"detail": detail, "request_id": request_id}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def too_large_message(max_upload_mb: float) -> str:
    return (f"the request body is larger than this server's limit of {max_upload_mb:g} MiB "
            "(METASEG_MAX_UPLOAD_MB); accepted: uploads up to that size")
