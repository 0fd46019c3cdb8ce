"""How the silence watch judges AlertManager's answers (``core.silences``), without I/O.

The answers are shaped as AlertManager 0.25 gives them (``GET /api/v2/alerts`` with
``filter`` matchers, ``GET /api/v2/status``); the functional test asks the real one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from services.notifier.core import silences
from services.notifier.core.silences import Finding, Reply
from shared.domain.fingerprints import label_set_fingerprint

LABELS = {"alertname": "KubePodCrashLooping", "namespace": "prod", "pod": "web-1"}
FINGERPRINT = label_set_fingerprint(LABELS)
ASKED_AT = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
GRACE = 300.0


def _alert(labels: dict[str, str], state: str = "suppressed") -> dict[str, Any]:
    return {
        "fingerprint": label_set_fingerprint(labels),
        "labels": labels,
        "startsAt": "2026-11-29T11:00:00.000Z",
        "endsAt": "2026-11-29T12:04:00.000Z",
        "status": {"state": state, "silencedBy": ["s1"], "inhibitedBy": []},
    }


def _status(uptime: Any) -> Reply:
    return Reply(200, {"uptime": uptime, "cluster": {"status": "disabled"}})


@pytest.mark.parametrize("state", ["active", "suppressed", "unprocessed"])
def test_an_alert_alertmanager_still_holds_is_firing_whatever_its_state(state: str) -> None:
    verdict = silences.held(Reply(200, [_alert(LABELS, state)]), FINGERPRINT, LABELS)
    assert verdict.finding is Finding.FIRING
    assert state in verdict.reason


def test_an_empty_answer_is_absence() -> None:
    assert silences.held(Reply(200, []), FINGERPRINT, LABELS).finding is Finding.ABSENT


def test_an_alert_with_more_labels_that_the_filter_also_matched_is_not_ours() -> None:
    wider = {**LABELS, "container": "app"}
    verdict = silences.held(Reply(200, [_alert(wider)]), FINGERPRINT, LABELS)
    assert verdict.finding is Finding.ABSENT


def test_the_same_label_set_counts_even_when_our_fingerprint_came_from_elsewhere() -> None:
    verdict = silences.held(Reply(200, [_alert(LABELS)]), "0123456789abcdef", LABELS)
    assert verdict.finding is Finding.FIRING


def test_a_later_occurrence_with_the_same_labels_keeps_the_alert_open() -> None:
    later = {**_alert(LABELS), "startsAt": "2026-11-29T11:55:00.000Z"}
    assert silences.held(Reply(200, [later]), FINGERPRINT, LABELS).finding is Finding.FIRING


@pytest.mark.parametrize(
    "reply",
    [
        Reply(500, {"message": "internal"}),
        Reply(400, "bad matcher format"),
        Reply(404, None),
        Reply(200, None),  # not JSON (a proxy's HTML page)
        Reply(200, {"alerts": []}),  # not the list of alerts
        Reply(200, ["not an alert"]),
    ],
)
def test_anything_but_a_200_list_of_alerts_decides_nothing(reply: Reply) -> None:
    verdict = silences.held(reply, FINGERPRINT, LABELS)
    assert verdict.finding is Finding.UNKNOWN
    assert verdict.reason


def test_an_alertmanager_up_longer_than_the_grace_is_believed() -> None:
    started = (ASKED_AT - dt.timedelta(seconds=GRACE + 1)).isoformat().replace("+00:00", "Z")
    assert silences.absence_trusted(_status(started), ASKED_AT, GRACE) is None


def test_a_young_alertmanager_is_not_believed() -> None:
    started = ASKED_AT - dt.timedelta(seconds=42)
    why = silences.absence_trusted(_status(started.isoformat()), ASKED_AT, GRACE)
    assert why is not None
    assert "42s" in why
    assert "300" in why


def test_an_alertmanager_that_restarted_after_it_was_asked_is_not_believed() -> None:
    # The status is asked after the alerts: a start after ``asked_at`` means the
    # process that answered the alerts may be a fresh, empty one.
    started = ASKED_AT + dt.timedelta(seconds=3)
    why = silences.absence_trusted(_status(started.isoformat()), ASKED_AT, 0.0)
    assert why is not None
    assert "0s" in why


@pytest.mark.parametrize(
    "status",
    [
        Reply(503, None),
        Reply(200, {}),
        Reply(200, {"uptime": "yesterday"}),
        Reply(200, {"uptime": 12345}),
        Reply(200, ["uptime"]),
    ],
)
def test_a_status_without_a_readable_uptime_is_not_believed(status: Reply) -> None:
    assert silences.absence_trusted(status, ASKED_AT, GRACE) is not None


def test_an_uptime_without_a_zone_is_read_as_utc() -> None:
    started = silences.started_at(_status("2026-11-29T11:00:00"))
    assert started == dt.datetime(2026, 11, 29, 11, 0, tzinfo=dt.UTC)


def test_filter_matchers_quote_label_values_as_data() -> None:
    matchers = silences.filter_matchers(
        {"pod": 'we"b\\1', "alertname": "X", "note": "a\nb", "expr": 'x=~".*"'}
    )
    assert matchers == [
        'alertname="X"',
        'expr="x=~\\".*\\""',
        'note="a\\nb"',
        'pod="we\\"b\\\\1"',
    ]
