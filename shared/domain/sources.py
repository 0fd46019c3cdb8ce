"""A Source as the services use it, and the one rule for webhook paths.

The spec shape is owned by ``shared.resources`` (which validates it and fills
defaults); this module turns a stored spec into values the ingest path can use
without looking at dicts again.

``normalize_path`` is the only place a webhook path is put into its canonical form.
The schema stores that form, the controller and ``validate`` compare it to find two
Sources on one path, and ingest looks requests up by it. Comparing spellings in
several places is how ``/webhook/prod/`` once took the traffic of ``/webhook/prod``.

A webhook Source must say how callers authenticate, ``type: none`` included:
reading a spec without an ``authentication`` block raises ``SourceError`` rather
than serving the path to anyone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from shared.domain.matchers import AlertFilter

DEFAULT_MAX_WORKFLOW_STARTS = 100
DEFAULT_WINDOW_SECONDS = 60
MAX_PATH_LENGTH = 253
# Prefixes ingest serves itself; a Source there would be shadowed by (or shadow) them.
RESERVED_PATHS = ("/api", "/healthz", "/readyz", "/metrics")
AUTH_BEARER = "bearer"
AUTH_NONE = "none"
NO_AUTHENTICATION = (
    "spec.config.authentication is required: give a bearer secretRef, or write "
    "authentication: {type: none} to accept webhooks from anyone who can reach ingest."
)


class SourceError(ValueError):
    """A stored or requested Source value that cannot be used."""


class PathError(SourceError):
    """A webhook path that has no canonical form (``..``, a reserved prefix, ...)."""


def normalize_path(path: str) -> str:
    """The canonical form of a webhook path, or ``PathError``.

    Rules, the same for a Source's ``config.path`` and for a request path:

    - it starts with ``/``; empty segments are dropped, so ``//`` is ``/`` and a
      trailing ``/`` goes (``/webhook//prod/`` is ``/webhook/prod``);
    - ``.`` and ``..`` segments are refused, not resolved: a path that climbs names
      no Source on purpose;
    - case is kept (paths are case-sensitive);
    - ``/`` alone and the prefixes ingest serves itself (``RESERVED_PATHS``) are
      refused.

    Percent-encoding is not decoded here. A Source's path may not contain ``%`` (the
    schema allows letters, digits and ``._~/-``), and the HTTP server decodes the
    request path before the application sees it, so ``/webhook/%70rod`` and
    ``/webhook%2Fprod`` arrive as ``/webhook/prod`` and reach that Source.
    """
    if not isinstance(path, str) or not path.startswith("/"):
        raise PathError(f"{path!r} is not an absolute path: it must start with '/'.")
    segments = [segment for segment in path.split("/") if segment]
    if any(segment in {".", ".."} for segment in segments):
        raise PathError(f"{path!r} has a '.' or '..' segment.")
    if not segments:
        raise PathError("'/' alone is not a webhook path; name one below it.")
    normalized = "/" + "/".join(segments)
    for reserved in RESERVED_PATHS:
        if normalized == reserved or normalized.startswith(reserved + "/"):
            raise PathError(f"{normalized} is under {reserved}, which ingest serves itself.")
    if len(normalized) > MAX_PATH_LENGTH:
        raise PathError(f"path is longer than {MAX_PATH_LENGTH} characters.")
    return normalized


def webhook_path(name: str, spec: Mapping[str, Any]) -> str | None:
    """The normalized path a Source spec serves; None for other Source types."""
    if spec.get("type", "webhook") != "webhook":
        return None
    config = spec.get("config") or {}
    return normalize_path(config.get("path") or f"/webhook/{name}")


@dataclasses.dataclass(frozen=True)
class SecretRef:
    name: str
    key: str


@dataclasses.dataclass(frozen=True)
class StartLimit:
    """At most ``max_starts`` workflow starts per ``window_seconds`` for one Source."""

    max_starts: int = DEFAULT_MAX_WORKFLOW_STARTS
    window_seconds: int = DEFAULT_WINDOW_SECONDS


def _bearer_secret(source_type: str, config: Mapping[str, Any]) -> SecretRef | None:
    if source_type != "webhook":
        return None
    auth = config.get("authentication")
    if not isinstance(auth, Mapping):
        raise SourceError(NO_AUTHENTICATION)
    auth_type = auth.get("type", AUTH_BEARER)
    if auth_type == AUTH_NONE:
        return None
    secret_ref = auth.get("secretRef")
    if auth_type != AUTH_BEARER or not isinstance(secret_ref, Mapping):
        raise SourceError(
            f"spec.config.authentication: type {auth_type!r} with secretRef {secret_ref!r} "
            "is not usable; use bearer with a secretRef, or none."
        )
    return SecretRef(str(secret_ref["name"]), str(secret_ref["key"]))


@dataclasses.dataclass(frozen=True)
class Source:
    name: str
    namespace: str
    type: str
    path: str | None
    alert_filter: AlertFilter
    # None only when the spec says ``authentication: {type: none}``.
    bearer_secret: SecretRef | None
    trigger_workflow: str | None
    context: Mapping[str, Any]
    start_limit: StartLimit

    @classmethod
    def from_spec(cls, namespace: str, name: str, spec: Mapping[str, Any]) -> Source:
        """Raises ``SourceError`` (a ValueError) for a spec that must not be served."""
        config = spec.get("config") or {}
        limit = config.get("rateLimit") or {}
        source_type = spec.get("type", "webhook")
        return cls(
            name=name,
            namespace=namespace,
            type=source_type,
            path=webhook_path(name, spec),
            alert_filter=AlertFilter.build(config.get("filters"), config.get("matchers")),
            bearer_secret=_bearer_secret(source_type, config),
            trigger_workflow=spec.get("triggerWorkflow"),
            context=spec.get("context") or {},
            start_limit=StartLimit(
                max_starts=limit.get("maxWorkflowStarts", DEFAULT_MAX_WORKFLOW_STARTS),
                window_seconds=limit.get("windowSeconds", DEFAULT_WINDOW_SECONDS),
            ),
        )
