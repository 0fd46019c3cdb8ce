"""What the cluster shows of an approved change whose worker was lost while making it.

``remediation.traces`` reads the targeted object as it is now against the moment
the change was approved; the sentence goes to the person who must check, so it must
tell a made change from one not made where the object can tell, and say so where it
cannot.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from services.engine.core.remediation import RESTARTED_AT, Request, traces

APPROVED = dt.datetime(2026, 11, 29, 12, 0, 0, 400_000, tzinfo=dt.UTC)


def _restart(stamp: str | None) -> dict[str, Any]:
    annotations = {RESTARTED_AT: stamp} if stamp is not None else {}
    return {"spec": {"template": {"metadata": {"annotations": annotations}}}}


RESTART = Request("restart-rollout", "deployment", "web", "shop")


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        # Whole seconds: the approval's second counts as after it.
        ("2026-11-29T12:00:00Z", "was restarted at 2026-11-29T12:00:00Z, after the approval"),
        ("2026-11-29T12:00:07Z", "was restarted at 2026-11-29T12:00:07Z, after the approval"),
        ("2026-11-29T11:59:59Z", "shows no restart since the approval"),
        (None, "shows no restart since the approval"),
        ("yesterday", "shows no restart since the approval"),
    ],
)
def test_a_restart_is_read_from_the_pod_templates_annotation(
    stamp: str | None, expected: str
) -> None:
    assert traces(RESTART, _restart(stamp), APPROVED) == f"deployment shop/web {expected}"


def test_a_deleted_pod_is_gone_or_replaced() -> None:
    delete = Request("delete-pod", "pod", "web-1", "shop")
    assert "is gone: deleted, by this change or by its controller" in traces(delete, None, APPROVED)
    before = {"metadata": {"creationTimestamp": "2026-11-29T11:00:00Z"}}
    assert "created before the approval: it was not deleted" in traces(delete, before, APPROVED)
    after = {"metadata": {"creationTimestamp": "2026-11-29T12:00:05Z"}}
    assert "created after the approval" in traces(delete, after, APPROVED)


def test_scale_and_cordon_say_what_the_object_asks_for() -> None:
    scale = Request("scale", "deployment", "web", "shop", replicas=4)
    assert traces(scale, {"spec": {"replicas": 4}}, APPROVED) == (
        "deployment shop/web asks for 4 replicas, the count approved"
    )
    assert traces(scale, {"spec": {"replicas": 2}}, APPROVED) == (
        "deployment shop/web asks for 2 replicas, not the 4 approved"
    )
    cordon = Request("cordon", "node", "node-1")
    assert "is cordoned" in traces(cordon, {"spec": {"unschedulable": True}}, APPROVED)
    assert traces(cordon, {"spec": {}}, APPROVED) == "node node-1 is not cordoned"
    assert traces(scale, None, APPROVED) == "deployment shop/web is not found"
