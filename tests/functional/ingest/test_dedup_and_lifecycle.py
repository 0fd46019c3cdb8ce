"""Repeats of one occurrence are recorded once and start one workflow; resolves close it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from shared.db.models import AlertSinkState
from tests.functional.ingest.conftest import load_fixture, table_counts


def _alerts(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM alerts")).mappings().all()
    return {row["fingerprint"]: row for row in rows}


def test_first_notification_records_alert_run_and_outbox(
    post: Callable[..., Any], engine: sa.Engine
) -> None:
    response = post(load_fixture("01-firing-single.json"))
    assert response.status_code == 200
    assert response.json["new"] == 1
    assert response.json["workflowsStarted"] == 1
    assert table_counts(engine) == {
        "alerts": 1,
        "source_events": 1,
        "alert_source_events": 1,
        "workflow_runs": 1,
        "outbox": 1,
    }
    alert = _alerts(engine)["7c8f1b9300292754"]
    assert alert["status"] == "received"
    assert alert["alert_name"] == "KubePodCrashLooping"
    assert alert["severity"] == "critical"
    assert alert["summary"] == "KubePodCrashLooping on api-7d9f-abc"
    assert alert["ends_at"] is None
    with engine.connect() as conn:
        run = conn.execute(sa.text("SELECT * FROM workflow_runs")).mappings().one()
        entry = conn.execute(sa.text("SELECT * FROM outbox")).mappings().one()
    assert run["phase"] == "Pending"
    assert run["workflow_name"] == "triage"
    assert run["source_name"] == "alertmanager"
    # The outbox message carries the run id only.
    assert entry["task_name"] == "engine.start_workflows"
    assert entry["queue"] == "engine"
    args = entry["args"] if isinstance(entry["args"], list) else json.loads(entry["args"])
    assert args == [[str(uuid.UUID(str(run["id"])))]]


def test_repeat_notification_updates_last_seen_and_starts_nothing(
    post: Callable[..., Any], engine: sa.Engine
) -> None:
    body = load_fixture("01-firing-single.json")
    first = post(body).json
    before = _alerts(engine)["7c8f1b9300292754"]
    second = post(body).json
    third = post(body).json
    assert first["alerts"] == second["alerts"] == third["alerts"]
    assert second["deduplicated"] == 1
    assert second["workflowsStarted"] == 0
    after = _alerts(engine)["7c8f1b9300292754"]
    assert after["times_seen"] == 3
    assert after["last_seen_at"] > before["last_seen_at"]
    counts = table_counts(engine)
    assert counts["alerts"] == 1
    assert counts["workflow_runs"] == 1
    assert counts["source_events"] == 3  # every request is recorded
    assert counts["alert_source_events"] == 3


def test_resolved_notification_resolves_the_alert(
    post: Callable[..., Any], engine: sa.Engine
) -> None:
    post(load_fixture("01-firing-single.json"))
    response = post(load_fixture("02-resolved-single.json"))
    assert response.json["resolved"] == 1
    assert response.json["workflowsStarted"] == 0
    alert = _alerts(engine)["7c8f1b9300292754"]
    assert alert["status"] == "resolved"
    assert alert["resolved_at"] is not None
    assert alert["ends_at"] is not None
    assert not alert["auto_resolved"]
    # A late repeat of the resolve changes nothing more.
    again = post(load_fixture("02-resolved-single.json")).json
    assert again["resolved"] == 0
    assert again["deduplicated"] == 1


def test_new_firing_after_resolve_is_a_new_occurrence(
    post: Callable[..., Any], engine: sa.Engine
) -> None:
    post(load_fixture("01-firing-single.json"))
    post(load_fixture("02-resolved-single.json"))
    refire = load_fixture("01-firing-single.json")
    refire["alerts"][0]["startsAt"] = "2026-11-26T05:00:00.123456789Z"
    response = post(refire).json
    assert response["new"] == 1
    assert response["workflowsStarted"] == 1
    assert table_counts(engine)["alerts"] == 2


def test_mixed_group_each_alert_keeps_its_own_status(
    post: Callable[..., Any], engine: sa.Engine
) -> None:
    post(load_fixture("03-firing-group-of-2.json"))
    response = post(load_fixture("05-group-mixed-1-resolved-2-firing.json")).json
    # web-1 resolved, web-2 repeated, web-3 new (top-level status says "firing").
    assert response["deduplicated"] == 2
    assert response["new"] == 1
    assert response["resolved"] == 1
    assert response["workflowsStarted"] == 1
    alerts = _alerts(engine)
    assert alerts["05a7228d0e0a5fdb"]["status"] == "resolved"
    assert alerts["36dcae375552a64e"]["status"] == "received"
    assert alerts["dc92012a434462ea"]["status"] == "received"
    assert table_counts(engine)["workflow_runs"] == 3


def test_resolved_alert_never_seen_firing_is_recorded_without_a_run(
    post: Callable[..., Any], engine: sa.Engine
) -> None:
    response = post(load_fixture("02-resolved-single.json")).json
    assert response["new"] == 1
    assert response["workflowsStarted"] == 0
    assert _alerts(engine)["7c8f1b9300292754"]["status"] == "resolved"
    assert table_counts(engine)["workflow_runs"] == 0


def test_missing_fingerprint_is_computed_like_alertmanager(
    post: Callable[..., Any], engine: sa.Engine
) -> None:
    body = load_fixture("01-firing-single.json")
    del body["alerts"][0]["fingerprint"]
    post(body)
    # The same alert from AlertManager, with its own fingerprint, is a repeat.
    response = post(load_fixture("01-firing-single.json")).json
    assert response["deduplicated"] == 1
    assert list(_alerts(engine)) == ["7c8f1b9300292754"]


def test_same_alert_from_two_sources_is_tracked_per_source(
    post: Callable[..., Any], put_source: Callable[..., None], engine: sa.Engine
) -> None:
    put_source("second")
    body = load_fixture("01-firing-single.json")
    assert post(body).json["workflowsStarted"] == 1
    assert post(body, path="/webhook/second").json["workflowsStarted"] == 1
    assert table_counts(engine)["alerts"] == 2


def _notifier_messages(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT args FROM outbox WHERE task_name = 'notifier.alert_resolved'")
        ).all()
    return [row.args if isinstance(row.args, list) else json.loads(row.args) for row in rows]


def test_resolve_queues_the_notifier_only_for_alerts_a_sink_left_something_on(
    post: Callable[..., Any], engine: sa.Engine
) -> None:
    """The resolve writes ``notifier.alert_resolved`` in its own transaction when the
    alert has a Slack thread or a silence (or a parent being posted), once."""
    group = load_fixture("05-group-mixed-1-resolved-2-firing.json")
    firing = json.loads(json.dumps(group))
    for alert in firing["alerts"]:
        alert["status"] = "firing"
    post(firing)
    ids = sorted(uuid.UUID(str(row["id"])) for row in _alerts(engine).values())
    web1, web2 = ids[0], ids[1]
    with engine.begin() as conn:
        conn.execute(
            sa.insert(AlertSinkState.__table__),
            [
                {"alert_id": web1, "sink_name": "slack", "thread_ts": "1.000001"},
                # A Sink state with nothing to undo: the delivery failed for good.
                {"alert_id": web2, "sink_name": "other", "thread_ts": None},
            ],
        )
    resolved = json.loads(json.dumps(firing))
    for alert in resolved["alerts"]:
        alert["status"] = "resolved"
        alert["endsAt"] = "2026-11-26T05:00:00Z"
    assert post(resolved).json["resolved"] == len(resolved["alerts"])
    assert _notifier_messages(engine) == [[str(web1)]]
    # A repeated resolve changes nothing and queues nothing more.
    assert post(resolved).json["resolved"] == 0
    assert len(_notifier_messages(engine)) == 1
