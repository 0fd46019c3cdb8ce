"""The silence watch's pass (``silence_watch.watch_once``) in process, against a real
AlertManager, on both databases: what it claims, what it leaves alone, and what it
records when the silenced alert is gone.

The alert is silenced by a real delivery (``tasks.deliver_once``), and its labels
carry a double quote and a backslash, which the ``filter`` matchers must pass to
AlertManager as data.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from celery import Celery
from notifierkit import Harness

from services.notifier import silence_watch, tasks
from services.notifier.app import Runtime, create_app, runtime_for
from shared.db.models import OutboxEntry, utcnow
from shared.domain.fingerprints import label_set_fingerprint
from shared.queueing import ALERT_RESOLVED
from shared.settings import Settings
from tests.support.ports import free_port

pytestmark = pytest.mark.alertmanager

LABELS = {
    "alertname": "KubePodCrashLooping",
    "namespace": "prod",
    "pod": 'api-"0"\\blue',
    "severity": "critical",
}
INTERVAL = 60.0


def _post_alert(url: str, starts: dt.datetime, ends: dt.datetime | None = None) -> None:
    body = {"labels": LABELS, "startsAt": starts.isoformat()}
    if ends is not None:
        body["endsAt"] = ends.isoformat()
    request = urllib.request.Request(
        f"{url}/api/v2/alerts",
        data=json.dumps([body]).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def _silences(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v2/silences", timeout=5) as response:
        found: list[dict[str, Any]] = json.load(response)
    return [s for s in found if s["createdBy"] == "punching-fist"]


@pytest.fixture
def watcher(notifier_settings: Callable[..., Settings]) -> Iterator[Runtime]:
    """A runtime whose grace is 0: the fixture's AlertManager is seconds old."""
    app: Celery = create_app(
        notifier_settings(
            PF_NOTIFIER_SILENCE_WATCH_GRACE="0",
            PF_NOTIFIER_SILENCE_WATCH_INTERVAL=str(INTERVAL),
        )
    )
    rt = runtime_for(app)
    yield rt
    rt.close()


@pytest.fixture
def silenced(
    harness: Harness, watcher: Runtime, alertmanager: str
) -> tuple[uuid.UUID, dt.datetime]:
    """An alert AlertManager holds and our delivery silenced; returns (id, startsAt)."""
    starts = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=1)
    _post_alert(alertmanager, starts)
    config = {"url": alertmanager, "actions": ["silence"], "silenceDuration": "1h"}
    harness.put_sink("am", {"type": "alertmanager", "config": config})
    alert_id = harness.add_alert(
        labels=LABELS, starts_at=starts, fingerprint=label_set_fingerprint(LABELS)
    )
    _, ids = harness.add_finished_run(["am"], alert_id)
    tasks.deliver_once(watcher, str(ids["am"]))
    assert harness.delivery(ids["am"]).phase == "Delivered"
    assert harness.state(alert_id, "am").silence_id == _silences(alertmanager)[0]["id"]
    return alert_id, starts


def _resolutions_queued(harness: Harness, alert_id: uuid.UUID) -> int:
    table = OutboxEntry.__table__
    with harness.engine.connect() as conn:
        rows = conn.execute(sa.select(table.c.args).where(table.c.task_name == ALERT_RESOLVED))
        return sum(1 for (args,) in rows if args == [str(alert_id)])


def test_a_firing_alert_is_checked_once_per_interval_across_workers(
    harness: Harness,
    watcher: Runtime,
    silenced: tuple[uuid.UUID, dt.datetime],
    caplog: pytest.LogCaptureFixture,
) -> None:
    alert_id, _ = silenced
    now = utcnow()
    # Two workers read the same due row; only the first claim holds.
    with watcher.units.begin() as unit:
        [item] = silence_watch.due(unit.session, now, 10)
        assert silence_watch.claim(unit.session, item, "host-a:1", now, INTERVAL)
        assert not silence_watch.claim(unit.session, item, "host-b:2", now, INTERVAL)
        assert silence_watch.due(unit.session, now, 10) == []
    state = harness.state(alert_id, "am")
    assert (state.watch_worker, state.watch_checks) == ("host-a:1", 1)
    assert state.watch_until == now + dt.timedelta(seconds=INTERVAL)

    # Not due again until the lease has run out; then AlertManager still holds it
    # (a clear answer: the quoted labels matched, no 400 for the filter).
    assert silence_watch.watch_once(watcher, now + dt.timedelta(seconds=INTERVAL - 1)) == 0
    assert harness.state(alert_id, "am").watch_checks == 1
    with caplog.at_level(logging.INFO, logger="services.notifier.silence_watch"):
        assert silence_watch.watch_once(watcher, now + dt.timedelta(seconds=INTERVAL)) == 0
    assert caplog.text == ""
    assert harness.state(alert_id, "am").watch_checks == 2
    alert = harness.alert(alert_id)
    assert alert.status == "triaging"
    assert _resolutions_queued(harness, alert_id) == 0


def test_an_alert_gone_from_alertmanager_is_resolved_once(
    harness: Harness,
    watcher: Runtime,
    alertmanager: str,
    silenced: tuple[uuid.UUID, dt.datetime],
) -> None:
    alert_id, starts = silenced
    _post_alert(alertmanager, starts, ends=dt.datetime.now(dt.UTC))
    before = utcnow()
    assert silence_watch.watch_once(watcher) == 1
    alert = harness.alert(alert_id)
    assert alert.status == "resolved"
    assert alert.auto_resolved is False
    assert before <= alert.resolved_at <= utcnow()
    assert alert.ends_at == alert.resolved_at
    assert alert.triage_completed_at == alert.resolved_at  # triaging -> resolved
    assert _resolutions_queued(harness, alert_id) == 1

    # A resolved alert is not watched any more, and resolving again does nothing.
    later = utcnow() + dt.timedelta(seconds=2 * INTERVAL)
    assert silence_watch.watch_once(watcher, later) == 0
    with watcher.units.begin() as unit:
        assert not silence_watch.resolve(unit.session, alert_id, later)
    assert _resolutions_queued(harness, alert_id) == 1

    # The queued resolution is the existing one: it expires the silence.
    assert tasks.on_alert_resolved(watcher, str(alert_id)).retry_in is None
    assert _silences(alertmanager)[0]["status"]["state"] == "expired"
    assert harness.state(alert_id, "am").resolved_at is not None


def test_an_unreachable_alertmanager_changes_nothing(
    harness: Harness,
    watcher: Runtime,
    alertmanager: str,
    silenced: tuple[uuid.UUID, dt.datetime],
    caplog: pytest.LogCaptureFixture,
) -> None:
    alert_id, starts = silenced
    _post_alert(alertmanager, starts, ends=dt.datetime.now(dt.UTC))
    # The Sink now names an AlertManager that nobody answers for.
    gone = f"http://127.0.0.1:{free_port()}"
    harness.put_sink(
        "am", {"type": "alertmanager", "config": {"url": gone, "actions": ["silence"]}}
    )
    with caplog.at_level(logging.WARNING, logger="services.notifier.silence_watch"):
        assert silence_watch.watch_once(watcher) == 0
    assert "AlertManager unreachable" in caplog.text
    assert harness.state(alert_id, "am").watch_checks == 1  # it did look
    assert harness.alert(alert_id).status == "triaging"
    assert _resolutions_queued(harness, alert_id) == 0
