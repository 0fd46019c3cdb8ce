"""The alertmanager Sink against a real Prometheus AlertManager on loopback.

The silence is created for the alert's labels and duration, listed by
``GET /api/v2/silences``, suppresses the alert, survives a lost record without a
second silence, and is expired when the alert resolves; ``annotate`` re-posts the
alert with the findings as annotations.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.request
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from notifierkit import Harness

from services.notifier import tasks
from services.notifier.app import Runtime
from shared.db.models import AlertSinkState, SinkDelivery
from tests.support.ports import free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.alertmanager
LABELS = {
    "alertname": "KubePodCrashLooping",
    "namespace": "prod",
    "pod": "api-0",
    "severity": "critical",
}


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _push(url: str, starts: dt.datetime) -> None:
    body = [
        {
            "labels": LABELS,
            "annotations": {"summary": "api-0 crashes"},
            "startsAt": starts.isoformat(),
        }
    ]
    request = urllib.request.Request(
        f"{url}/api/v2/alerts",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def _our_silences(url: str) -> list[dict[str, Any]]:
    return [s for s in _get(f"{url}/api/v2/silences") if s["createdBy"] == "punching-fist"]


def _alert_in_am(url: str) -> dict[str, Any]:
    [alert] = [a for a in _get(f"{url}/api/v2/alerts") if a["labels"]["pod"] == "api-0"]
    return alert


def test_silence_suppresses_the_alert_and_is_expired_on_resolve(
    harness: Harness, runtime: Runtime, alertmanager: str
) -> None:
    starts = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=1)
    _push(alertmanager, starts)
    harness.put_sink(
        "am",
        {
            "type": "alertmanager",
            "config": {
                "url": alertmanager,
                "actions": ["silence", "annotate"],
                "silenceDuration": "2h",
            },
        },
    )
    alert_id = harness.add_alert(
        labels=LABELS, starts_at=starts, annotations={"summary": "api-0 crashes"}
    )
    run_id, ids = harness.add_finished_run(["am"], alert_id)
    tasks.deliver_once(runtime, str(ids["am"]))

    delivery = harness.delivery(ids["am"])
    assert delivery.phase == "Delivered", delivery.error
    [silence] = _our_silences(alertmanager)
    assert silence["status"]["state"] == "active"
    assert delivery.response == {"silenceId": silence["id"], "annotated": True}
    assert harness.state(alert_id, "am").silence_id == silence["id"]
    assert {(m["name"], m["value"], m["isRegex"]) for m in silence["matchers"]} == {
        (name, value, False) for name, value in LABELS.items()
    }
    ends = dt.datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00"))
    assert dt.timedelta(minutes=119) < ends - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=2)
    assert "web-1 is OOMKilled" in silence["comment"]
    assert f"http://pf.example:8080/api/v1/runs/{run_id}" in silence["comment"]

    alert = wait_for(
        lambda: (a := _alert_in_am(alertmanager))["status"]["silencedBy"] and a,
        10,
        "the alert was not silenced",
    )
    assert alert["status"]["state"] == "suppressed"
    assert alert["status"]["silencedBy"] == [silence["id"]]
    assert alert["annotations"]["ai_summary"] == "web-1 is OOMKilled"
    assert alert["annotations"]["ai_root_cause"] == "memory limit 128Mi is too low"
    assert alert["annotations"]["ai_confidence"] == "0.9"
    assert alert["annotations"]["summary"] == "api-0 crashes"  # kept

    harness.resolve(alert_id)
    assert tasks.on_alert_resolved(runtime, str(alert_id)).retry_in is None
    [expired] = _our_silences(alertmanager)
    assert expired["status"]["state"] == "expired"
    state = harness.state(alert_id, "am")
    assert state.resolved_at is not None
    assert state.resolution == {"expired": True}


def test_a_run_waiting_for_approval_silences_the_alert_and_its_end_keeps_that_silence(
    harness: Harness, runtime: Runtime, alertmanager: str
) -> None:
    harness.put_sink(
        "am",
        {
            "type": "alertmanager",
            "config": {"url": alertmanager, "actions": ["silence", "annotate"]},
        },
    )
    alert_id = harness.add_alert(labels=LABELS)
    run_id, _ = harness.add_finished_run([], alert_id, phase="WaitingApproval")
    approval_id = harness.add_approval(run_id)
    asked = harness.add_delivery(run_id, "am", "approval_requested", str(approval_id))
    tasks.deliver_once(runtime, str(asked))
    delivery = harness.delivery(asked)
    assert delivery.phase == "Delivered", delivery.error
    [silence] = _our_silences(alertmanager)
    assert silence["status"]["state"] == "active"
    assert delivery.response == {"silenceId": silence["id"]}  # nothing annotated yet
    assert "Waiting for a person to approve delete-pod pod prod/web-1" in silence["comment"]
    assert harness.state(alert_id, "am").silence_id == silence["id"]
    # The run's end keeps the silence it made while waiting: one per alert and Sink.
    ended = harness.add_delivery(run_id, "am", "run_finished", str(run_id))
    tasks.deliver_once(runtime, str(ended))
    assert harness.delivery(ended).response == {"silenceId": silence["id"], "annotated": True}
    assert [s["id"] for s in _our_silences(alertmanager)] == [silence["id"]]
    harness.resolve(alert_id, auto=True)
    assert tasks.on_alert_resolved(runtime, str(alert_id)).retry_in is None
    assert [s["status"]["state"] for s in _our_silences(alertmanager)] == ["expired"]


def test_a_lost_record_does_not_create_a_second_silence(
    harness: Harness, runtime: Runtime, alertmanager: str
) -> None:
    harness.put_sink(
        "am", {"type": "alertmanager", "config": {"url": alertmanager, "actions": ["silence"]}}
    )
    alert_id = harness.add_alert(labels=LABELS)
    _, ids = harness.add_finished_run(["am"], alert_id)
    tasks.deliver_once(runtime, str(ids["am"]))
    [silence] = _our_silences(alertmanager)
    # As if the worker died after AlertManager answered and before the record:
    # the delivery is Pending again after one attempt and nothing is stored.
    _forget_record(harness, ids["am"], alert_id)
    tasks.deliver_once(runtime, str(ids["am"]))
    assert [s["id"] for s in _our_silences(alertmanager)] == [silence["id"]]
    delivery = harness.delivery(ids["am"])
    assert (delivery.phase, delivery.attempts) == ("Delivered", 2)
    assert delivery.response["silenceId"] == silence["id"]


def test_nothing_is_silenced_for_an_alert_already_resolved(
    harness: Harness, runtime: Runtime, alertmanager: str
) -> None:
    harness.put_sink(
        "am",
        {
            "type": "alertmanager",
            "config": {"url": alertmanager, "actions": ["silence", "annotate"]},
        },
    )
    alert_id = harness.add_alert(labels=LABELS, status="resolved")
    _, ids = harness.add_finished_run(["am"], alert_id)
    tasks.deliver_once(runtime, str(ids["am"]))
    assert harness.delivery(ids["am"]).phase == "Delivered"
    assert _our_silences(alertmanager) == []
    assert _get(f"{alertmanager}/api/v2/alerts") == []


def test_an_unreachable_alertmanager_is_a_temporary_failure(
    harness: Harness, runtime: Runtime
) -> None:
    harness.put_sink(
        "am",
        {
            "type": "alertmanager",
            "config": {"url": f"http://127.0.0.1:{free_port()}", "actions": ["silence"]},
        },
    )
    _, ids = harness.add_finished_run(["am"], harness.add_alert(labels=LABELS))
    step = tasks.deliver_once(runtime, str(ids["am"]))
    assert step.retry_in is not None
    delivery = harness.delivery(ids["am"])
    assert (delivery.phase, delivery.attempts) == ("Pending", 1)
    assert "ConnectError" in delivery.error


def _forget_record(harness: Harness, delivery_id: uuid.UUID, alert_id: uuid.UUID) -> None:
    deliveries, states = SinkDelivery.__table__, AlertSinkState.__table__
    with harness.sessions.begin() as session:
        session.execute(
            sa.update(deliveries)
            .where(deliveries.c.id == delivery_id)
            .values(phase="Pending", response=None, sent_at=None, next_attempt_at=None)
        )
        session.execute(sa.delete(states).where(states.c.alert_id == alert_id))
    time.sleep(0.01)
