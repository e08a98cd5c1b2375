"""From the library's exceptions to HTTP answers: every one says what was wrong and what is accepted.

415 for content no reader knows, 413 for anything over a limit, 422 for a recognised but
unusable file or an invalid option, 503 with Retry-After for a full queue. A bug still answers
a JSON 500 carrying the request id (and is logged with its traceback); it never kills a worker.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from metaseg_viewer.errors import InputError, MetaSegError, TooLargeError, UnsupportedFormatError
from server.jobs import QueueFull
from server.middleware import too_large_message

log = logging.getLogger("metaseg.server")


def status_for(exc: BaseException) -> int:
    """The HTTP status of a library error (also used for per-file entries of a batch)."""
    if isinstance(exc, UnsupportedFormatError):
        return 415
    if isinstance(exc, TooLargeError):
        return 413
    if isinstance(exc, InputError):
        return 422
    return 500


def error_response(request: Request, status: int, detail: str, **extra: object) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    headers = {"X-Request-ID": request_id} if request_id else {}
    headers.update({k: str(v) for k, v in extra.pop("headers", {}).items()})  # type: ignore[union-attr]
    return JSONResponse({"detail": detail, "request_id": request_id, **extra}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI, max_upload_mb: float) -> None:
    @app.exception_handler(MetaSegError)
    async def _library_error(request: Request, exc: MetaSegError) -> JSONResponse:
        return error_response(request, status_for(exc), str(exc))

    @app.exception_handler(QueueFull)
    async def _queue_full(request: Request, exc: QueueFull) -> JSONResponse:
        return error_response(request, 503, str(exc), headers={"Retry-After": exc.retry_after})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
            problems.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
        return error_response(request, 422, "invalid request: " + "; ".join(problems), errors=errors)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        detail = str(exc.detail)
        if exc.status_code == 413:
            detail = too_large_message(max_upload_mb)
        return error_response(request, exc.status_code, detail, headers=exc.headers or {})

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"request_id": getattr(request.state, "request_id", None)})
        return error_response(request, 500, "internal error while handling the request; the server keeps running. "
                                            "Report it with the request id.")
