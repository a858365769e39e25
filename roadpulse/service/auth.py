"""The operator's bearer token: where it comes from and how a request is checked against it."""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from roadpulse.config import ConfigError, Settings


def operator_token(settings: Settings) -> str | None:
    """The token from the environment variable ``api.token_env``, else the file ``api.token_file``;
    None when neither is set (write endpoints are then refused)."""
    api = settings["api"]
    env_name = api["token_env"]
    if env_name and os.environ.get(env_name, "").strip():
        return os.environ[env_name].strip()
    path = api["token_file"]
    if path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"api.token_file {path}: cannot read the token: {exc.strerror}") from None
        if not token:
            raise ConfigError(f"api.token_file {path}: the file is empty; expected the bearer token")
        return token
    return None


def check_bearer(header: str | None, token: str | None) -> tuple[int, str] | None:
    """None when ``header`` carries the token; else (401 or 403, reason)."""
    if not header:
        return 401, "missing Authorization header; send 'Authorization: Bearer <token>'"
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return 401, "Authorization must be 'Bearer <token>'"
    if token is None:
        return 403, "writes are disabled: no operator token is configured (api.token_env / api.token_file)"
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return 403, "wrong bearer token"
    return None
