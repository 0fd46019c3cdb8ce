"""A Source's filters and matchers decide which alerts count; its cap bounds starts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from tests.functional.ingest.conftest import load_fixture, source_spec, table_counts


def test_allowed_values_filter_drops_other_severities(
    post: Callable[..., Any], put_source: Callable[..., None], engine: sa.Engine
) -> None:
    put_source(**source_spec(filters={"severity": ["critical"]}))
    # 05: web-1 warning (resolved), web-2 warning, web-3 critical.
    response = post(load_fixture("05-group-mixed-1-resolved-2-firing.json")).json
    assert response["received"] == 3
    assert response["filtered"] == 2
    assert response["new"] == 1
    with engine.connect() as conn:
        pods = conn.execute(sa.text("SELECT labels FROM alerts")).scalars().all()
    assert len(pods) == 1
    # A request whose alerts are all filtered out is still a 2xx and still recorded.
    only_warnings = post(load_fixture("03-firing-group-of-2.json"))
    assert only_warnings.status_code == 200
    assert only_warnings.json["filtered"] == 2
    assert table_counts(engine)["source_events"] == 2


def test_matchers_use_alertmanager_syntax_and_anchor_regexes(
    post: Callable[..., Any], put_source: Callable[..., None]
) -> None:
    put_source(**source_spec(matchers=['pod=~"web-[12]"', 'namespace!="prod"']))
    response = post(load_fixture("05-group-mixed-1-resolved-2-firing.json")).json
    assert response["filtered"] == 1  # web-3
    put_source(**source_spec(matchers=['pod=~"web"']))  # anchored: matches no "web-N"
    response = post(load_fixture("03-firing-group-of-2.json")).json
    assert response["filtered"] == 2


def test_filters_and_matchers_combine(
    post: Callable[..., Any], put_source: Callable[..., None]
) -> None:
    put_source(
        **source_spec(filters={"severity": ["warning", "critical"]}, matchers=["pod!~web-2"])
    )
    response = post(load_fixture("05-group-mixed-1-resolved-2-firing.json")).json
    assert response["filtered"] == 1
    assert response["new"] == 2


def test_start_cap_records_alerts_but_skips_starts_over_the_cap(
    post: Callable[..., Any], put_source: Callable[..., None], engine: sa.Engine
) -> None:
    put_source(**source_spec(rateLimit={"maxWorkflowStarts": 2, "windowSeconds": 3600}))
    response = post(load_fixture("05-group-mixed-1-resolved-2-firing.json")).json
    # Two firing alerts (web-2, web-3): both fit the cap.
    assert response["workflowsStarted"] == 2
    storm = load_fixture("01-firing-single.json")
    response = post(storm).json
    assert response["new"] == 1
    assert response["workflowsStarted"] == 0
    assert response["rateLimited"] == 1
    counts = table_counts(engine)
    assert counts["alerts"] == 4
    assert counts["workflow_runs"] == 2
    with engine.connect() as conn:
        skipped = conn.execute(
            sa.text("SELECT sum(workflows_rate_limited) FROM source_events")
        ).scalar_one()
    assert skipped == 1


def test_source_without_workflow_records_alerts_only(
    post: Callable[..., Any], put_source: Callable[..., None], engine: sa.Engine
) -> None:
    spec = source_spec()
    del spec["triggerWorkflow"]
    put_source(**spec)
    response = post(load_fixture("01-firing-single.json")).json
    assert response["new"] == 1
    assert response["workflowsStarted"] == 0
    assert table_counts(engine)["workflow_runs"] == 0


def test_custom_path_and_no_authentication(
    client: Any, put_source: Callable[..., None], engine: sa.Engine
) -> None:
    put_source(
        "open",
        type="webhook",
        config={"path": "/alertmanager", "authentication": {"type": "none"}},
        triggerWorkflow="t",
    )
    import json

    response = client.post(
        "/alertmanager",
        data=json.dumps(load_fixture("01-firing-single.json")),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert table_counts(engine)["alerts"] == 1
