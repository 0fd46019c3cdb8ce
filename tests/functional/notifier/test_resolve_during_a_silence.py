"""An alert that resolves while our silence holds is still reported, once.

AlertManager mutes the ``resolved`` notification of a silenced alert, so ingest never
hears of it. Through the real processes (``punchingfist ingest``, engine and notifier
workers on Redis), the Slack stand-in and a real AlertManager whose only receiver
sends nothing: the alert fires (in AlertManager and at ingest), the run silences it
and starts the Slack thread; the alert then ends in AlertManager alone (``POST
/api/v2/alerts`` with ``endsAt`` now), so no webhook reaches ingest. The notifier's
silence watch finds it gone: the alert is resolved in our API, the silence expired,
the parent edited and one reply posted. An AlertManager younger than the grace
period is not believed: nothing is resolved.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from notifierkit import Pipeline, put_resources, running_pipeline, slack_sink

from services.standins.slack import SlackAPI
from shared.db.engines import make_engine
from shared.db.models import AlertSinkState
from shared.settings import DatabaseSettings
from tests.functional.ingest.conftest import load_fixture
from tests.support.ports import free_port
from tests.support.scrape import scrape
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.alertmanager, pytest.mark.timeout(120)]

WORKFLOW = {
    "steps": [{"name": "look", "type": "cli", "command": ["echo", "restarts: 7"]}],
    "outputs": [{"name": "summary", "value": "{{ steps.look.output.stdout }}"}],
    "sinks": ["slack", "am"],
}
# Passes twice a second, so that the test need not wait a minute for one.
WATCH_INTERVAL = "0.5"


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def _post_alert(alertmanager: str, alert: dict[str, Any], ends_at: str | None = None) -> None:
    """What Prometheus does: post the alert (firing), or post it with ``endsAt`` (ended)."""
    body = {
        "labels": alert["labels"],
        "annotations": alert["annotations"],
        "startsAt": alert["startsAt"],
        "generatorURL": alert["generatorURL"],
        **({"endsAt": ends_at} if ends_at else {}),
    }
    request = urllib.request.Request(
        f"{alertmanager}/api/v2/alerts",
        data=json.dumps([body]).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def _silences(alertmanager: str) -> list[dict[str, Any]]:
    return [s for s in _get(f"{alertmanager}/api/v2/silences") if s["createdBy"] == "punching-fist"]


def _held(alertmanager: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = _get(f"{alertmanager}/api/v2/alerts")
    return found


def _watch_checks(database_url: str) -> int:
    engine = make_engine(DatabaseSettings(url=database_url))
    table = AlertSinkState.__table__
    with engine.connect() as conn:
        checks = conn.execute(sa.select(sa.func.sum(table.c.watch_checks))).scalar_one()
    engine.dispose()
    return int(checks or 0)


@pytest.fixture
def silenced(
    database_url: str, slack: SlackAPI, alertmanager: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Workflow and Sinks (Slack, and AlertManager silencing for 1h); the firing
    notification, whose alert AlertManager holds as Prometheus would have sent it."""
    silence = {"url": alertmanager, "actions": ["silence"], "silenceDuration": "1h"}
    sinks = {"slack": slack_sink(slack.url), "am": {"type": "alertmanager", "config": silence}}
    put_resources(database_url, WORKFLOW, sinks)
    firing = load_fixture("01-firing-single.json")
    alert = firing["alerts"][0]
    _post_alert(alertmanager, alert)
    return firing, alert


@pytest.fixture
def metrics_bind() -> str:
    """Where the notifier serves /metrics (the watch's checks, by finding)."""
    return f"127.0.0.1:{free_port()}"


def _checks(metrics_bind: str, finding: str) -> float:
    samples = scrape(f"http://{metrics_bind}/metrics")
    return samples.value("punchingfist_silence_watch_checks_total", finding=finding)


@pytest.fixture
def watching(
    database_url: str, redis_url: str, tmp_path: Path, metrics_bind: str
) -> Callable[[str], contextlib.AbstractContextManager[Pipeline]]:
    """Starts the pipeline with the silence watch's grace (seconds) given."""

    def start(grace: str) -> contextlib.AbstractContextManager[Pipeline]:
        return running_pipeline(
            database_url,
            redis_url,
            tmp_path,
            PF_NOTIFIER_SILENCE_WATCH_INTERVAL=WATCH_INTERVAL,
            PF_NOTIFIER_SILENCE_WATCH_GRACE=grace,
            PF_NOTIFIER_METRICS_BIND=metrics_bind,
        )

    return start


def _fire_and_wait_for_the_silence(
    pipeline: Pipeline, slack: SlackAPI, alertmanager: str, firing: dict[str, Any]
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    answer = pipeline.ingest.post(firing)
    assert answer.status == 200, answer.body
    assert answer.body["workflowsStarted"] == 1
    alert_id = answer.body["alerts"][0]
    [parent] = wait_for(slack.parents, 60, "no Slack parent for the alert")
    [silence] = wait_for(lambda: _silences(alertmanager), 30, "no silence for the alert")
    assert silence["status"]["state"] == "active"
    wait_for(
        lambda: pipeline.ingest.get(f"/api/v1/alerts/{alert_id}").body["status"] == "escalated",
        30,
        "the alert was not escalated after the Slack message",
    )
    [held] = _held(alertmanager)
    assert held["status"]["silencedBy"] == [silence["id"]]
    return alert_id, parent, silence


def test_an_alert_that_ends_while_silenced_is_resolved_and_told_once(  # noqa: PLR0917
    database_url: str,
    metrics_bind: str,
    watching: Callable[[str], contextlib.AbstractContextManager[Pipeline]],
    slack: SlackAPI,
    alertmanager: str,
    silenced: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    firing, alert = silenced
    with watching("1") as pipeline:
        alert_id, parent, silence = _fire_and_wait_for_the_silence(
            pipeline, slack, alertmanager, firing
        )
        # While AlertManager holds the alert, the watch looks and leaves it alone.
        wait_for(lambda: _watch_checks(database_url) >= 3, 30, "the watch never looked")
        assert pipeline.ingest.get(f"/api/v1/alerts/{alert_id}").body["status"] == "escalated"
        assert _silences(alertmanager)[0]["status"]["state"] == "active"
        assert slack.replies(parent["ts"]) == []

        ended = dt.datetime.now(dt.UTC)
        _post_alert(alertmanager, alert, ends_at=ended.isoformat())
        assert _held(alertmanager) == []  # AlertManager dropped it; it told nobody

        shown = wait_for(
            lambda: (
                (a := pipeline.ingest.get(f"/api/v1/alerts/{alert_id}").body)["status"]
                == "resolved"
                and a
            ),
            30,
            "the alert was not resolved after it ended in AlertManager",
        )
        assert shown["autoResolved"] is False
        resolved_at = dt.datetime.fromisoformat(shown["resolvedAt"])
        assert ended - dt.timedelta(seconds=1) <= resolved_at <= ended + dt.timedelta(seconds=30)
        assert shown["endsAt"] == shown["resolvedAt"]
        wait_for(
            lambda: _silences(alertmanager)[0]["status"]["state"] == "expired",
            30,
            "the silence was not expired",
        )
        wait_for(
            lambda: "Resolved" in json.dumps(slack.parents()[0]["blocks"]),
            30,
            "the parent was not edited to show the alert resolved",
        )
        [reply] = wait_for(lambda: slack.replies(parent["ts"]), 30, "no reply in the thread")
        assert "Resolved at" in reply["text"]
        # Several more watch passes find nothing left to resolve: one reply, one edit.
        time.sleep(2)
        assert len(slack.replies(parent["ts"])) == 1
        assert len(slack.calls("chat.update")) == 1
        assert len(slack.parents()) == 1
        assert silence["id"] == _silences(alertmanager)[0]["id"]
        # What the watch found, on the notifier's /metrics.
        assert _checks(metrics_bind, "firing") >= 3
        assert _checks(metrics_bind, "resolved") == 1
        assert _checks(metrics_bind, "untrusted") == 0


def test_a_young_alertmanager_is_not_believed(  # noqa: PLR0917
    database_url: str,
    metrics_bind: str,
    watching: Callable[[str], contextlib.AbstractContextManager[Pipeline]],
    slack: SlackAPI,
    alertmanager: str,
    silenced: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    firing, alert = silenced
    # AlertManager has been up for seconds; an hour's grace makes it young throughout.
    with watching("3600") as pipeline:
        alert_id, parent, _ = _fire_and_wait_for_the_silence(pipeline, slack, alertmanager, firing)
        _post_alert(alertmanager, alert, ends_at=dt.datetime.now(dt.UTC).isoformat())
        assert _held(alertmanager) == []
        checks = _watch_checks(database_url)
        # The watch asks again and again and finds the alert gone, but distrusts it.
        wait_for(lambda: _watch_checks(database_url) >= checks + 4, 30, "the watch never looked")
        wait_for(
            lambda: "absence not trusted yet" in pipeline.notifier.log(),
            10,
            "the watch did not say why it left the alert alone",
        )
        assert "less than the grace of 3600s" in pipeline.notifier.log()
        assert pipeline.ingest.get(f"/api/v1/alerts/{alert_id}").body["status"] == "escalated"
        assert _silences(alertmanager)[0]["status"]["state"] == "active"
        assert slack.replies(parent["ts"]) == []
        assert slack.calls("chat.update") == []
        assert _checks(metrics_bind, "untrusted") >= 4
        assert _checks(metrics_bind, "resolved") == 0
