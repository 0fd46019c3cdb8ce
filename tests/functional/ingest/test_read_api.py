"""GET /api/v1/alerts filters and pages; GET /api/v1/alerts/<id> shows the history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.functional.ingest.conftest import load_fixture


def _ingest_all(post: Callable[..., Any]) -> None:
    post(load_fixture("03-firing-group-of-2.json"))
    post(load_fixture("05-group-mixed-1-resolved-2-firing.json"))
    post(load_fixture("01-firing-single.json"))


def test_list_filters_by_status_fingerprint_and_source(
    post: Callable[..., Any], client: Any
) -> None:
    _ingest_all(post)
    everything = client.get("/api/v1/alerts").json["items"]
    assert len(everything) == 4
    resolved = client.get("/api/v1/alerts?status=resolved").json["items"]
    assert [a["fingerprint"] for a in resolved] == ["05a7228d0e0a5fdb"]
    one = client.get("/api/v1/alerts?fingerprint=dc92012a434462ea").json["items"]
    assert [a["labels"]["pod"] for a in one] == ["web-3"]
    assert client.get("/api/v1/alerts?source=alertmanager").json["items"]
    assert client.get("/api/v1/alerts?source=other").json["items"] == []


def test_pages_cover_every_alert_once_newest_first(post: Callable[..., Any], client: Any) -> None:
    _ingest_all(post)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        url = "/api/v1/alerts?limit=1" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url).json
        seen.extend(alert["id"] for alert in body["items"])
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert pages == 4
    assert len(seen) == len(set(seen)) == 4
    # The last notification (01) was received last, so it is listed first.
    first = client.get("/api/v1/alerts?limit=1").json["items"][0]
    assert first["fingerprint"] == "7c8f1b9300292754"


def test_list_rejects_bad_parameters(client: Any) -> None:
    for query, needle in [
        ("status=open", "status must be one of"),
        ("fingerprint=XYZ", "fingerprint"),
        ("limit=0", "limit"),
        ("limit=many", "limit"),
        ("limit=100000", "limit"),
        ("cursor=@@@", "cursor"),
        # A timestamp without offset (ours always have one) cannot be compared.
        (
            "cursor=MjAyNi0xMS0yNlQwNDowMjozOXwwMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDA",
            "cursor",
        ),
        # PostgreSQL refuses a NUL in any query parameter.
        ("source=%00", "source"),
        ("source=" + "a" * 254, "source"),
    ]:
        response = client.get(f"/api/v1/alerts?{query}")
        assert response.status_code == 400, query
        assert needle in response.json["error"]


def test_detail_lists_source_events_and_runs(post: Callable[..., Any], client: Any) -> None:
    first = post(load_fixture("01-firing-single.json")).json
    post(load_fixture("01-firing-single.json"))
    post(load_fixture("02-resolved-single.json"))
    alert_id = first["alerts"][0]
    detail = client.get(f"/api/v1/alerts/{alert_id}").json
    assert detail["status"] == "resolved"
    assert detail["timesSeen"] == 3
    assert [event["alertStatus"] for event in detail["sourceEvents"]] == [
        "firing",
        "firing",
        "resolved",
    ]
    assert [run["id"] for run in detail["workflowRuns"]] == first["runs"]
    assert detail["workflowRuns"][0]["phase"] == "Pending"


def test_detail_of_unknown_or_malformed_id(client: Any) -> None:
    assert client.get("/api/v1/alerts/not-a-uuid").status_code == 400
    missing = client.get("/api/v1/alerts/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert "no alert" in missing.json["error"]


def test_run_detail(post: Callable[..., Any], client: Any) -> None:
    first = post(load_fixture("01-firing-single.json")).json
    [run_id] = first["runs"]
    run = client.get(f"/api/v1/runs/{run_id}").json
    assert run["id"] == run_id
    assert run["phase"] == "Pending"
    assert run["steps"] == []
    assert client.get("/api/v1/runs/nope").status_code == 400
    missing = client.get("/api/v1/runs/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert "no run" in missing.json["error"]
