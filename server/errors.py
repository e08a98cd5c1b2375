"""From exceptions to HTTP answers: every one says what was wrong and what is accepted.

415 for content no reader knows, 413 for anything over a limit, 422 for a recognised but
unusable file or an invalid option, 400 for a body that is not valid multipart, 503 (with
Retry-After when known) for a full queue, a shutdown or a cancelled job. A bug answers a JSON 500
carrying the request id and is logged with its traceback (:class:`UnexpectedErrorMiddleware`);
it never kills a worker nor the client's connection.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from python_multipart.exceptions import FormParserError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from metaseg_viewer.errors import InputError, MetaSegError, TooLargeError, UnsupportedFormatError
from server.jobs import Unavailable
from server.middleware import send_error, too_large_message

log = logging.getLogger("metaseg.server")

BUG = "internal error while handling the request; the server keeps running. Report it with the request id."
_MULTIPART = ("accepted: multipart/form-data whose parts each have a Content-Disposition header "
              'with a name and, for a file, a filename (e.g. name="file"; filename="scan.png"), headers of at '
              "most 4 KiB per part and no CR or LF inside a header value (curl -F file=@scan.png does this)")


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


def _problem(err: dict) -> str:
    """One validation error in words; a file sent without a filename is read by the multipart
    parser as a text field, which FastAPI words as a type error."""
    path = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "form")]
    where = ".".join(path)
    message = str(err.get("msg")).removeprefix("Value error, ")
    if "Expected UploadFile" in message:
        field = path[0] if path else "file"
        message = ("this part came without a filename in its Content-Disposition header, so it was read as a "
                   "text field, not a file; accepted: a file part, e.g. "
                   f'Content-Disposition: form-data; name="{field}"; filename="scan.png" '
                   f"(curl -F {field}=@scan.png); the name is only used in messages and may be empty")
    return f"{where}: {message}" if where and not message.startswith(where) else message


def _multipart_detail(exc: HTTPException) -> str | None:
    """Starlette's 400 for a body it could not parse as multipart, with the parser's reason."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, FormParserError):
        cause = cause.__cause__ or cause.__context__
    if cause is not None:
        return f"the multipart body could not be parsed ({cause}); {_MULTIPART}"
    if str(exc.detail).startswith("Part exceeded maximum size"):
        return ("a form field (a part without a filename) is larger than 1 MiB; files must be sent as file parts "
                f"with a filename; {_MULTIPART}")
    return None


def install_error_handlers(app: FastAPI, max_upload_mb: float) -> None:
    @app.exception_handler(MetaSegError)
    async def _library_error(request: Request, exc: MetaSegError) -> JSONResponse:
        return error_response(request, status_for(exc), str(exc))

    @app.exception_handler(Unavailable)
    async def _unavailable(request: Request, exc: Unavailable) -> JSONResponse:
        request.state.log["unavailable"] = type(exc).__name__
        headers = {} if exc.retry_after is None else {"Retry-After": exc.retry_after}
        return error_response(request, 503, str(exc), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [_problem(err) for err in exc.errors()]
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
        return error_response(request, 422, "invalid request: " + "; ".join(problems), errors=errors)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        detail = str(exc.detail)
        if exc.status_code == 413:
            detail = too_large_message(max_upload_mb)
        elif exc.status_code == 400:
            detail = _multipart_detail(exc) or detail
        return error_response(request, exc.status_code, detail, headers=exc.headers or {})


class UnexpectedErrorMiddleware:
    """Answer a bug with a JSON 500 (request id, traceback in the log) and keep the connection.

    It sits inside Starlette's ServerErrorMiddleware, which would answer and then re-raise, so
    uvicorn would drop the client's keep-alive connection; here the exception ends with the
    answer. When the answer had already begun, only closing the connection can tell the client,
    so the exception goes on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            request_id = scope.get("state", {}).get("request_id")
            log.exception("unhandled error in %s %s (request %s)", scope["method"], scope["path"], request_id)
            if started:
                raise
            await send_error(scope, send, 500, BUG, close=False)
