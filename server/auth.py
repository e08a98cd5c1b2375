"""Optional API key: with ``METASEG_API_KEY`` set, every route but :data:`OPEN_PATHS` needs it in
the ``X-API-Key`` header; so do the API documents (``/docs``, ``/redoc``, ``/openapi.json``)
unless ``METASEG_PUBLIC_DOCS`` opens them.

The rule lives here once: :func:`key_refused` decides (``AdmissionMiddleware`` asks it before a
body is read, so an upload without the key costs no memory) and :func:`document_api_key` writes
the same rule into the OpenAPI document. No route checks the key itself.
"""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import FastAPI
from starlette.routing import Match
from starlette.types import Scope

#: Liveness and readiness stay open for orchestrators.
OPEN_PATHS = frozenset({"/health", "/ready"})
HEADER = "X-API-Key"
REFUSAL = f"missing or wrong API key: send the {HEADER} header with the server's key"
_SCHEME = "APIKeyHeader"


def _open(app: FastAPI, path: str) -> bool:
    documents = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    return path in OPEN_PATHS or (app.state.settings.public_docs and path in documents)


def _route_path(scope: Scope) -> str:
    """The path as the router sees it: without the ``root_path`` a proxy may put in front."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root + "/") else path


def key_refused(scope: Scope) -> bool:
    """Whether this request lacks the key it needs. Only requests that reach a route are
    refused: an unknown path or method keeps its 404 or 405. The compare is constant-time."""
    app: FastAPI = scope["app"]
    expected = app.state.settings.api_key
    if expected is None or _open(app, _route_path(scope)):
        return False
    if not any(route.matches(scope)[0] is Match.FULL for route in app.router.routes):
        return False
    given = dict(scope["headers"]).get(HEADER.lower().encode(), b"")
    return not secrets.compare_digest(given, expected.get_secret_value().encode())


def document_api_key(app: FastAPI) -> None:
    """Declare the ``X-API-Key`` scheme in the OpenAPI document, on every operation outside
    :data:`OPEN_PATHS` (documentation only: :func:`key_refused` is what enforces it)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        schema = build()  # FastAPI builds it once and caches it in app.openapi_schema
        if fresh:
            schema.setdefault("components", {}).setdefault("securitySchemes", {})[_SCHEME] = {
                "type": "apiKey", "in": "header", "name": HEADER,
                "description": "Required only when the server was started with an API key"}
            for path, operations in schema["paths"].items():
                if not _open(app, path):
                    for operation in operations.values():
                        operation["security"] = [{_SCHEME: []}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
