"""The read API's bearer token, from the file PF_API_TOKEN_FILE names.

Kept apart from ``app.py`` so that ``punchingfist ingest`` can check the file before
gunicorn starts without importing Flask or prometheus_client there: the latter
picks its multiprocess mode at import, before PROMETHEUS_MULTIPROC_DIR is set.
"""

from __future__ import annotations

from pathlib import Path

from shared.errors import ConfigError


def load_api_token(path: Path | None) -> str | None:
    """The token, None when no file is configured; ConfigError if it cannot be used."""
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"PF_API_TOKEN_FILE={str(path)!r}: cannot be read: {exc}") from exc
    if not token:
        # An empty token would let "Authorization: Bearer" with nothing after it pass.
        raise ConfigError(f"PF_API_TOKEN_FILE={str(path)!r}: the file is empty")
    return token
