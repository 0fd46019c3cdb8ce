"""Whether an alert we silenced in AlertManager resolved while the silence held.

AlertManager's notification pipeline drops a resolved alert that an active silence
matches (its MuteStage filters resolved alerts too), so the ``resolved`` webhook that
ingest waits for is muted with the firing repeats: an alert that ends by itself
during the silence would be reported only after ``silenceDuration``, or never if
AlertManager forgets the resolved alert first. The silence watch therefore asks
AlertManager (``GET /api/v2/alerts``, filtered by the alert's labels) whether it
still holds the alert, and this module judges the answers.

Absence is believed only from an AlertManager that has been up for a grace period
(``absence_trusted``): AlertManager keeps alerts in memory only, and after a restart
it holds an alert again only once Prometheus re-sends it. Anything else that is not
a clear answer (an error status, a body that is not the expected list) is
``UNKNOWN``, and unknown changes nothing: a false resolution would expire the
silence and tell people in Slack that a firing alert is gone.

What this module must not do: any I/O. The Sink adapter fetches the answers
(``sinks.alertmanager``), the watch (``silence_watch``) records the outcome.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any


class Finding(enum.StrEnum):
    # AlertManager holds the alert (active, silenced, inhibited or unprocessed).
    FIRING = "firing"
    # AlertManager answered and does not hold it: resolved, once the answer is trusted.
    ABSENT = "absent"
    # No clear answer; nothing is decided.
    UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True)
class Reply:
    """An HTTP answer of AlertManager: its status and its body parsed as JSON (None
    when it was not JSON)."""

    status: int
    body: Any


@dataclasses.dataclass(frozen=True)
class Verdict:
    finding: Finding
    reason: str


def _quoted(value: str) -> str:
    # AlertManager's matcher parser unescapes exactly these three inside double
    # quotes (``labels.ParseMatcher``, and the UTF-8 parser of 0.27+ likewise).
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def filter_matchers(labels: Mapping[str, str]) -> list[str]:
    """One equality matcher per label (``name="value"``), for ``filter`` parameters.

    Label values came from an alert, so they are data: quoted and escaped, never
    spliced in as matcher syntax (an unescaped ``"`` is a 400; a ``=~`` inside a
    value stays a literal).
    """
    return [f"{name}={_quoted(value)}" for name, value in sorted(labels.items())]


def held(reply: Reply, fingerprint: str, labels: Mapping[str, str]) -> Verdict:
    """What AlertManager's ``GET /api/v2/alerts`` answer says about one alert.

    The filter matched every label with equality, so the answer holds the alert and
    any alert with more labels; the fingerprint (AlertManager's hash of the label
    set, which ingest stored) picks ours, and an equal label set counts too, in case
    the fingerprint was computed by a sender that did not send AlertManager's.
    AlertManager leaves resolved alerts (``endsAt`` past) out of this answer.

    The occurrence's ``startsAt`` is not compared: AlertManager prints it to the
    millisecond while the webhook may carry nanoseconds, and a mismatch here would be
    a false resolution. A later occurrence with the same labels therefore keeps the
    earlier one open until it ends too.
    """
    if reply.status != 200:
        return Verdict(Finding.UNKNOWN, f"GET /api/v2/alerts answered HTTP {reply.status}")
    if not isinstance(reply.body, list):
        return Verdict(Finding.UNKNOWN, "GET /api/v2/alerts did not answer a list of alerts")
    wanted = dict(labels)
    for alert in reply.body:
        if not isinstance(alert, Mapping):
            return Verdict(Finding.UNKNOWN, "GET /api/v2/alerts answered a list of non-alerts")
        if alert.get("fingerprint") == fingerprint or alert.get("labels") == wanted:
            state = (alert.get("status") or {}).get("state") or "active"
            return Verdict(Finding.FIRING, f"AlertManager holds it ({state})")
    return Verdict(Finding.ABSENT, "AlertManager no longer holds it")


def started_at(reply: Reply) -> dt.datetime | None:
    """When AlertManager started (``GET /api/v2/status`` ``uptime``, a timestamp)."""
    body = reply.body if isinstance(reply.body, Mapping) else {}
    uptime = body.get("uptime")
    if not isinstance(uptime, str):
        return None
    try:
        started = dt.datetime.fromisoformat(uptime)
    except ValueError:
        return None
    return started if started.tzinfo is not None else started.replace(tzinfo=dt.UTC)


def absence_trusted(status: Reply, asked_at: dt.datetime, grace: float) -> str | None:
    """None when an absence AlertManager reported from ``asked_at`` on is to be
    believed, else why not.

    ``status`` is asked *after* the alerts: an AlertManager that started at least
    ``grace`` seconds before ``asked_at`` is the process that answered them, and it
    has had time to receive Prometheus' re-sends since its start. (Asked before, a
    restart between the two calls would pass an empty, fresh AlertManager.) Its
    clock and ours are compared: a skew between hosts shifts the grace by as much.
    """
    if status.status != 200:
        return f"GET /api/v2/status answered HTTP {status.status}"
    started = started_at(status)
    if started is None:
        return "GET /api/v2/status has no uptime"
    up = (asked_at - started).total_seconds()
    if up < grace:
        return (
            f"AlertManager had been up {max(up, 0.0):.0f}s, less than the grace of "
            f"{grace:g}s: Prometheus may not have re-sent its alerts since it started"
        )
    return None
