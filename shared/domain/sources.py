"""A Source as the services use it: built from a stored, already validated spec.

The spec shape is owned by ``shared.resources`` (which validates it and fills
defaults); this module turns it into values the ingest path can use without looking
at dicts again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from shared.domain.matchers import AlertFilter

DEFAULT_MAX_WORKFLOW_STARTS = 100
DEFAULT_WINDOW_SECONDS = 60


@dataclasses.dataclass(frozen=True)
class SecretRef:
    name: str
    key: str


@dataclasses.dataclass(frozen=True)
class StartLimit:
    """At most ``max_starts`` workflow starts per ``window_seconds`` for one Source."""

    max_starts: int = DEFAULT_MAX_WORKFLOW_STARTS
    window_seconds: int = DEFAULT_WINDOW_SECONDS


@dataclasses.dataclass(frozen=True)
class Source:
    name: str
    namespace: str
    type: str
    path: str | None
    alert_filter: AlertFilter
    bearer_secret: SecretRef | None
    trigger_workflow: str | None
    context: Mapping[str, Any]
    start_limit: StartLimit

    @classmethod
    def from_spec(cls, namespace: str, name: str, spec: Mapping[str, Any]) -> Source:
        config = spec.get("config") or {}
        auth = config.get("authentication") or {}
        secret_ref = auth.get("secretRef") if auth.get("type", "bearer") == "bearer" else None
        limit = config.get("rateLimit") or {}
        source_type = spec.get("type", "webhook")
        return cls(
            name=name,
            namespace=namespace,
            type=source_type,
            path=config.get("path") or (f"/webhook/{name}" if source_type == "webhook" else None),
            alert_filter=AlertFilter.build(config.get("filters"), config.get("matchers")),
            bearer_secret=SecretRef(secret_ref["name"], secret_ref["key"]) if secret_ref else None,
            trigger_workflow=spec.get("triggerWorkflow"),
            context=spec.get("context") or {},
            start_limit=StartLimit(
                max_starts=limit.get("maxWorkflowStarts", DEFAULT_MAX_WORKFLOW_STARTS),
                window_seconds=limit.get("windowSeconds", DEFAULT_WINDOW_SECONDS),
            ),
        )
