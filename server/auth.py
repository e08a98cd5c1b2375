"""Optional API key: with ``METASEG_API_KEY`` set, requests must send it as ``X-API-Key``."""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader

_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                       description="Required only when the server was started with an API key")


async def require_api_key(request: Request, given: str | None = Security(_header)) -> None:
    """No key configured: open (the default, meant for 127.0.0.1). Else a constant-time compare."""
    expected = request.app.state.settings.api_key
    if expected is None:
        return
    if given is None or not secrets.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise HTTPException(401, "missing or wrong API key: send the X-API-Key header with the server's key",
                            headers={"WWW-Authenticate": "APIKey"})
