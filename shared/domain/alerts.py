"""The alert lifecycle, and the AlertManager notification it starts from.

An alert occurrence (fingerprint + startsAt) moves through::

    received ──> triaging ──> escalated
        │            │            │
        └────────────┴────────────┴──> resolved

``resolved`` is final. It is reached when AlertManager reports the alert resolved or
when a workflow resolves it (``auto_resolved``). Any other move raises LifecycleError.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping

from shared.errors import LifecycleError


class AlertStatus(enum.StrEnum):
    RECEIVED = "received"
    TRIAGING = "triaging"
    ESCALATED = "escalated"
    RESOLVED = "resolved"


_ALLOWED: Mapping[AlertStatus, frozenset[AlertStatus]] = {
    AlertStatus.RECEIVED: frozenset({AlertStatus.TRIAGING, AlertStatus.RESOLVED}),
    AlertStatus.TRIAGING: frozenset({AlertStatus.ESCALATED, AlertStatus.RESOLVED}),
    AlertStatus.ESCALATED: frozenset({AlertStatus.RESOLVED}),
    AlertStatus.RESOLVED: frozenset(),
}


def can_transition(current: AlertStatus, target: AlertStatus) -> bool:
    return target in _ALLOWED[current]


@dataclasses.dataclass(frozen=True)
class Transition:
    """What to write when an alert changes status: the new status and its timing column."""

    status: AlertStatus
    timestamps: Mapping[str, dt.datetime]
    auto_resolved: bool | None = None


def transition(
    current: AlertStatus | str,
    target: AlertStatus | str,
    *,
    at: dt.datetime,
    by_workflow: bool = False,
) -> Transition:
    try:
        current, target = AlertStatus(current), AlertStatus(target)
    except ValueError as exc:
        raise LifecycleError(f"unknown alert status: {exc}") from exc
    if not can_transition(current, target):
        raise LifecycleError(f"alert cannot go from {current} to {target}")
    timestamps: dict[str, dt.datetime] = {}
    auto_resolved = None
    if target is AlertStatus.TRIAGING:
        timestamps["triage_started_at"] = at
    elif target is AlertStatus.ESCALATED:
        timestamps["triage_completed_at"] = at
    elif target is AlertStatus.RESOLVED:
        timestamps["resolved_at"] = at
        if current is AlertStatus.TRIAGING:
            timestamps["triage_completed_at"] = at
        auto_resolved = by_workflow
    return Transition(target, timestamps, auto_resolved)


@dataclasses.dataclass(frozen=True)
class IncomingAlert:
    """One alert of an AlertManager notification, validated."""

    status: str  # "firing" or "resolved", as AlertManager says
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: dt.datetime
    ends_at: dt.datetime | None  # None while firing (AlertManager sends year 1)
    generator_url: str | None
    fingerprint: str

    @property
    def alert_name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    @property
    def is_resolved(self) -> bool:
        return self.status == "resolved"

    def to_context(self) -> dict[str, object]:
        """The alert as workflow templates see it (``{{ alert.labels.pod }}``)."""
        return {
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": self.starts_at.isoformat(),
            "endsAt": self.ends_at.isoformat() if self.ends_at else None,
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint,
            "name": self.alert_name,
            "severity": self.severity,
        }


@dataclasses.dataclass(frozen=True)
class RefusedAlert:
    """An alert of a notification that cannot be recorded; the others still are.

    ``code`` is a small fixed vocabulary (the metric's ``reason`` label): ``invalid``
    (breaks the webhook schema), ``nul`` (a NUL character), ``surrogate`` (a lone
    UTF-16 surrogate, not Unicode text), ``too_long`` (longer than its column).
    """

    index: int
    field: str
    code: str
    reason: str

    def as_json(self) -> dict[str, object]:
        return {"index": self.index, "field": self.field, "code": self.code, "reason": self.reason}


@dataclasses.dataclass(frozen=True)
class Notification:
    """An AlertManager webhook (version 4) body, validated.

    ``alerts`` holds the alerts that can be recorded, ``refused`` the ones that
    cannot (with their index in the body), so that one bad alert never costs its
    group.
    """

    version: str
    group_key: str
    truncated_alerts: int
    status: str
    receiver: str
    group_labels: Mapping[str, str]
    common_labels: Mapping[str, str]
    common_annotations: Mapping[str, str]
    external_url: str
    alerts: tuple[IncomingAlert, ...]
    refused: tuple[RefusedAlert, ...] = ()

    @property
    def received(self) -> int:
        return len(self.alerts) + len(self.refused)
