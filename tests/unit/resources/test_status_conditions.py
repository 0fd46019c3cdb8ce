"""Status: ready and conditions from what the controller found."""

from __future__ import annotations

import datetime as dt

from shared.resources import status

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(minutes=5)


def by_type(built: dict) -> dict:  # type: ignore[type-arg]
    return {c["type"]: c for c in built["conditions"]}


def test_all_good_is_ready() -> None:
    built = status.build(status.Facts(generation=3, counters={"eventsProcessed": 2}), None, T0)
    assert built["ready"] is True
    assert built["observedGeneration"] == 3
    assert built["eventsProcessed"] == 2
    conditions = by_type(built)
    assert list(conditions) == ["Valid", "Resolved", "Stored", "Ready"]
    assert all(c["status"] == "True" and c["observedGeneration"] == 3 for c in conditions.values())
    assert conditions["Ready"]["lastTransitionTime"] == "2026-01-01T12:00:00Z"


def test_first_problem_is_the_ready_reason() -> None:
    facts = status.Facts(
        generation=1,
        unresolved=[
            status.Problem("WorkflowNotFound", "spec.triggerWorkflow: no Workflow default/x."),
            status.Problem("SecretNotFound", "spec.config.authentication.secretRef: gone"),
        ],
    )
    built = status.build(facts, None, T0)
    assert built["ready"] is False
    ready = by_type(built)["Ready"]
    assert ready["status"] == "False"
    assert ready["reason"] == "WorkflowNotFound"
    assert "spec.triggerWorkflow" in ready["message"]
    assert "secretRef" in ready["message"]


def test_transition_time_moves_only_on_change() -> None:
    first = status.build(status.Facts(generation=1), None, T0)
    same = status.build(status.Facts(generation=1), first, T1)
    assert not status.changed(same, first)
    broken = status.build(
        status.Facts(generation=2, invalid=status.Problem("Invalid", "spec.x: bad")), same, T1
    )
    conditions = by_type(broken)
    assert conditions["Valid"]["lastTransitionTime"] == "2026-01-01T12:05:00Z"
    assert conditions["Stored"]["lastTransitionTime"] == "2026-01-01T12:00:00Z"
    assert status.changed(broken, same)
