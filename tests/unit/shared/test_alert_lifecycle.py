"""The alert lifecycle: which moves are legal and what each one writes."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from shared.domain import alerts
from shared.domain.alerts import AlertStatus, IncomingAlert
from shared.errors import LifecycleError

AT = dt.datetime(2026, 11, 26, 4, 2, 39, 580783, tzinfo=dt.UTC)

RECEIVED, TRIAGING, ESCALATED, RESOLVED = (
    AlertStatus.RECEIVED,
    AlertStatus.TRIAGING,
    AlertStatus.ESCALATED,
    AlertStatus.RESOLVED,
)
LEGAL = {
    (RECEIVED, TRIAGING),
    (RECEIVED, RESOLVED),
    (TRIAGING, ESCALATED),
    (TRIAGING, RESOLVED),
    (ESCALATED, RESOLVED),
}
ALL_PAIRS = list(itertools.product(AlertStatus, repeat=2))
ILLEGAL = [pair for pair in ALL_PAIRS if pair not in LEGAL]


def _ids(pair: tuple[AlertStatus, AlertStatus]) -> str:
    return f"{pair[0]}->{pair[1]}"


def test_pairs_cover_every_status() -> None:
    assert len(ALL_PAIRS) == 16
    assert len(ILLEGAL) == 11


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=_ids)
def test_can_transition_allows_exactly_the_drawn_moves(
    pair: tuple[AlertStatus, AlertStatus],
) -> None:
    assert alerts.can_transition(*pair) is (pair in LEGAL)


@pytest.mark.parametrize("pair", sorted(LEGAL), ids=_ids)
def test_legal_transition_returns_target(pair: tuple[AlertStatus, AlertStatus]) -> None:
    assert alerts.transition(*pair, at=AT).status is pair[1]


@pytest.mark.parametrize("pair", ILLEGAL, ids=_ids)
def test_illegal_transition_raises_naming_both_statuses(
    pair: tuple[AlertStatus, AlertStatus],
) -> None:
    current, target = pair
    with pytest.raises(LifecycleError, match=f"from {current} to {target}$"):
        alerts.transition(current, target, at=AT)


@pytest.mark.parametrize("by_workflow", [False, True])
@pytest.mark.parametrize("target", list(AlertStatus))
def test_resolved_is_final(target: AlertStatus, by_workflow: bool) -> None:
    with pytest.raises(LifecycleError):
        alerts.transition(RESOLVED, target, at=AT, by_workflow=by_workflow)


@pytest.mark.parametrize(
    ("current", "target", "columns"),
    [
        (RECEIVED, TRIAGING, {"triage_started_at"}),
        (TRIAGING, ESCALATED, {"triage_completed_at"}),
        (RECEIVED, RESOLVED, {"resolved_at"}),
        # Resolving mid-triage also closes the triage.
        (TRIAGING, RESOLVED, {"resolved_at", "triage_completed_at"}),
        # Escalation already completed the triage; do not overwrite it.
        (ESCALATED, RESOLVED, {"resolved_at"}),
    ],
)
def test_each_transition_sets_its_timestamps(
    current: AlertStatus, target: AlertStatus, columns: set[str]
) -> None:
    result = alerts.transition(current, target, at=AT)
    assert result.timestamps == dict.fromkeys(columns, AT)


@pytest.mark.parametrize("current", [RECEIVED, TRIAGING, ESCALATED])
@pytest.mark.parametrize("by_workflow", [False, True])
def test_resolving_records_whether_a_workflow_did_it(
    current: AlertStatus, by_workflow: bool
) -> None:
    result = alerts.transition(current, RESOLVED, at=AT, by_workflow=by_workflow)
    assert result.auto_resolved is by_workflow


@pytest.mark.parametrize("pair", [(RECEIVED, TRIAGING), (TRIAGING, ESCALATED)], ids=_ids)
@pytest.mark.parametrize("by_workflow", [False, True])
def test_only_resolving_sets_auto_resolved(
    pair: tuple[AlertStatus, AlertStatus], by_workflow: bool
) -> None:
    assert alerts.transition(*pair, at=AT, by_workflow=by_workflow).auto_resolved is None


def test_accepts_status_strings_as_stored() -> None:
    result = alerts.transition("received", "triaging", at=AT)
    assert result.status is TRIAGING
    with pytest.raises(LifecycleError, match="from escalated to triaging"):
        alerts.transition("escalated", "triaging", at=AT)


def test_timestamps_are_the_given_instant() -> None:
    later = AT + dt.timedelta(minutes=5)
    assert alerts.transition(TRIAGING, RESOLVED, at=later).timestamps == {
        "resolved_at": later,
        "triage_completed_at": later,
    }


def _alert(**overrides: object) -> IncomingAlert:
    fields: dict[str, object] = {
        "status": "firing",
        "labels": {"alertname": "KubePodCrashLooping", "severity": "critical", "pod": "api-1"},
        "annotations": {"summary": "crash looping"},
        "starts_at": AT,
        "ends_at": None,
        "generator_url": "http://prometheus/graph?g0.expr=up",
        "fingerprint": "7c8f1b9300292754",
    }
    fields.update(overrides)
    return IncomingAlert(**fields)  # type: ignore[arg-type]


class TestIncomingAlert:
    def test_to_context_of_a_firing_alert(self) -> None:
        assert _alert().to_context() == {
            "status": "firing",
            "labels": {"alertname": "KubePodCrashLooping", "severity": "critical", "pod": "api-1"},
            "annotations": {"summary": "crash looping"},
            "startsAt": "2026-11-26T04:02:39.580783+00:00",
            "endsAt": None,
            "generatorURL": "http://prometheus/graph?g0.expr=up",
            "fingerprint": "7c8f1b9300292754",
            "name": "KubePodCrashLooping",
            "severity": "critical",
        }

    def test_to_context_of_a_resolved_alert(self) -> None:
        ends = AT + dt.timedelta(seconds=35, microseconds=29084)
        alert = _alert(status="resolved", ends_at=ends)
        context = alert.to_context()
        assert alert.is_resolved
        assert context["status"] == "resolved"
        assert context["endsAt"] == "2026-11-26T04:03:14.609867+00:00"

    def test_name_and_severity_default_to_empty(self) -> None:
        alert = _alert(labels={"job": "node"}, generator_url=None)
        context = alert.to_context()
        assert (alert.alert_name, alert.severity) == ("", "")
        assert (context["name"], context["severity"], context["generatorURL"]) == ("", "", None)
        assert not alert.is_resolved

    def test_to_context_copies_labels_and_annotations(self) -> None:
        alert = _alert()
        context = alert.to_context()
        context["labels"]["pod"] = "changed"  # type: ignore[index]
        context["annotations"]["summary"] = "changed"  # type: ignore[index]
        assert alert.labels["pod"] == "api-1"
        assert alert.annotations["summary"] == "crash looping"
        assert type(context["labels"]) is dict
