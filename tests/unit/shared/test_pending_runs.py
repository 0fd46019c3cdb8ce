"""One way a run begins, whoever starts it: ingest for an alert, the scheduler for a tick."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from shared.domain.alerts import IncomingAlert
from shared.domain.runs import RunPhase, Trigger, new_pending_run

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ALERT = IncomingAlert(
    status="firing",
    labels={"alertname": "Down", "severity": "critical"},
    annotations={},
    starts_at=NOW,
    ends_at=None,
    generator_url=None,
    fingerprint="abc123",
)


def test_an_alert_run_carries_its_fingerprint_and_context() -> None:
    alert_id = uuid.uuid4()
    run = new_pending_run(
        workflow="triage",
        namespace="ops",
        source="am",
        source_context={"cluster": "c1"},
        now=NOW,
        alert=ALERT,
        alert_id=alert_id,
    )
    row = run.row()
    assert (row["phase"], row["trigger"], row["fingerprint"], row["alert_id"]) == (
        RunPhase.PENDING,
        Trigger.ALERT,
        "abc123",
        alert_id,
    )
    assert row["input_context"]["alert"]["fingerprint"] == "abc123"
    assert row["input_context"]["source"] == {
        "name": "am",
        "namespace": "ops",
        "context": {"cluster": "c1"},
    }
    assert row["workflow_name"] == "triage"
    assert row["created_at"] == NOW


def test_a_schedule_run_has_no_alert() -> None:
    tick = {"tick": NOW.isoformat(), "cron": "* * * * *", "timezone": "UTC"}
    run = new_pending_run(
        workflow="health", namespace="ops", source="cron", source_context={}, now=NOW, schedule=tick
    )
    row = run.row()
    assert (row["trigger"], row["fingerprint"], row["alert_id"]) == ("schedule", None, None)
    assert row["input_context"]["schedule"] == tick
    assert "alert" not in row["input_context"]


def test_exactly_one_trigger() -> None:
    with pytest.raises(ValueError, match="give one"):
        new_pending_run(workflow="w", namespace="n", source="s", source_context={}, now=NOW)
