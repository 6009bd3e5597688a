"""API keys: `api_key=` (or `$SQLTUNE_API_KEY`) makes every `/v1` endpoint require
`Authorization: Bearer <key>`, the header OpenAI's clients send; anything else is a 401 in OpenAI's
error shape. Without a key the server is open, which is why it binds 127.0.0.1 unless `host=` says
otherwise. `GET /health` stays open: it says whether the server is up and how it batches, nothing more.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable

from fastapi import Header

from sqltune.serve.errors import ApiError

ENV_KEY = "SQLTUNE_API_KEY"


def api_key_from(argument: str | None) -> str | None:
    """The key given as `api_key=`, else the environment's; None (no auth) when neither is set."""
    return argument or os.environ.get(ENV_KEY) or None


def bearer_check(api_key: str | None) -> Callable[..., None]:
    """A FastAPI dependency that refuses requests without the key (a no-op when there is none)."""

    def check(authorization: str | None = Header(default=None)) -> None:
        if api_key is None:
            return
        scheme, _, token = (authorization or "").partition(" ")
        # compare_digest: the time taken does not reveal how much of a guessed key was right
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise ApiError(
                401,
                "missing or wrong API key: send 'Authorization: Bearer <key>' (the server's api_key)",
                code="invalid_api_key",
            )

    return check
