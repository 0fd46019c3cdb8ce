"""Ingest's own secrets read from files: the read API's bearer token
(PF_API_TOKEN_FILE) and the Slack signing secret (PF_SLACK_SIGNING_SECRET_FILE).

Kept apart from ``app.py`` so that ``punchingfist ingest`` can check the file before
gunicorn starts without importing Flask or prometheus_client there: the latter
picks its multiprocess mode at import, before PROMETHEUS_MULTIPROC_DIR is set.
"""

from __future__ import annotations

from pathlib import Path

from shared.errors import ConfigError


def _load(variable: str, path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{variable}={str(path)!r}: cannot be read: {exc}") from exc
    if not value:
        # An empty token would let "Authorization: Bearer" with nothing after it
        # pass; an empty signing secret would let anyone sign.
        raise ConfigError(f"{variable}={str(path)!r}: the file is empty")
    return value


def load_api_token(path: Path | None) -> str | None:
    """The token, None when no file is configured; ConfigError if it cannot be used."""
    return _load("PF_API_TOKEN_FILE", path)


def load_slack_signing_secret(path: Path | None) -> str | None:
    """The signing secret, None when no file is configured; ConfigError if unusable."""
    return _load("PF_SLACK_SIGNING_SECRET_FILE", path)
