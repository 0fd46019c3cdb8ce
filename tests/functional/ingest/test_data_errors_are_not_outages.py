"""One bad alert must not silence its group, and a data error is not an outage.

Before: on PostgreSQL a NUL in any label (even of an alert the Source filters out),
a long severity or alertname made every AlertManager retry a 503, so the five good
alerts of the group were never recorded. Now the good ones are recorded, the bad one
is reported (answer, source event, metric), and 503 is kept for an unreachable
database.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from shared.db.engines import make_engine
from shared.db.models import SourceEvent
from shared.domain import webhooks
from shared.settings import DatabaseSettings
from tests.functional.ingest.bad_webhooks import SOURCE_MATCHERS, alert, group
from tests.functional.ingest.conftest import source_spec, table_counts
from tests.functional.ingest.gunicorn import running_ingest


@pytest.mark.redis
@pytest.mark.parametrize(
    "bad",
    [
        {"labels": {"severity": "ignore", "pod": "web-\u0000"}},  # filtered out, yet fatal
        {"labels": {"severity": "s" * 33}},
        {"labels": {"alertname": "A" * 256}},
        {"labels": {"pod": "web-\ud800"}},
    ],
    ids=["nul-in-filtered-alert", "severity-33", "alertname-256", "lone-surrogate"],
)
def test_five_good_alerts_and_one_bad_are_recorded_once_through_retries(
    database_url: str, tmp_path: Path, redis_url: str, bad: dict[str, Any]
) -> None:
    body = group(*[alert("retry", n) for n in range(5)], alert("retry", 5, **bad))
    engine = make_engine(DatabaseSettings(url=database_url))
    sources = {"alertmanager": source_spec(matchers=SOURCE_MATCHERS)}
    with running_ingest(database_url, tmp_path, redis_url, sources) as ingest:
        # AlertManager sends the group again after each repeat_interval or failure.
        answers = [ingest.post(body) for _ in range(3)]
        metrics = ingest.request("GET", "/metrics").body
    assert [a.status for a in answers] == [200, 200, 200]
    assert [(a.body["new"], a.body["deduplicated"]) for a in answers] == [(5, 0), (0, 5), (0, 5)]
    assert {a.body["refused"] for a in answers} == {1}
    (refusal,) = answers[0].body["refusals"]
    assert refusal["index"] == 5
    assert refusal["field"].startswith("alerts.5.labels")
    assert table_counts(engine)["alerts"] == 5
    with engine.connect() as conn:
        events = conn.execute(sa.select(SourceEvent.alerts_refused, SourceEvent.refusals)).all()
    engine.dispose()
    assert [(e.alerts_refused, e.refusals) for e in events] == [(1, [refusal])] * 3
    counted = re.findall(
        r'^punchingfist_alerts_refused_total\{reason="(\w+)",source="alertmanager"\} (\S+)$',
        metrics,
        re.MULTILINE,
    )
    assert counted == [(refusal["code"], "3.0")]


@pytest.mark.postgres
def test_a_data_error_that_slips_through_is_422_not_503(
    post: Callable[..., Any], engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores long and NUL strings; only PostgreSQL refuses them")
    # Turn the content checks off, as if a new column limit had been missed.
    monkeypatch.setattr(webhooks, "_alert_problems", lambda prefix, alert: [])
    too_long = post(group(alert("slip", labels={"severity": "s" * 40})))
    assert too_long.status_code == 422
    assert (
        "database refused this request's data (StringDataRightTruncation)"
        in (too_long.json["error"])
    )
    # psycopg2 itself refuses a NUL in a text parameter (a ValueError, not wrapped).
    nul_text = post(group(alert("slip", labels={"severity": "crit\u0000"})))
    assert nul_text.status_code == 422
    assert "cannot be stored" in nul_text.json["error"]
    # JSONB refuses the \u0000 escape (a DataError).
    nul_json = post(group(alert("slip", labels={"pod": "\u0000"})))
    assert nul_json.status_code == 422
    assert "database refused" in nul_json.json["error"]
    assert set(table_counts(engine).values()) == {0}


def test_a_group_larger_than_sqlites_parameter_limit_is_recorded(
    post: Callable[..., Any], engine: sa.Engine
) -> None:
    # 17,000 distinct fingerprints and start times: one dedup query for all of them
    # would bind 34,000 parameters, over SQLite's 32,766 ("too many SQL variables",
    # an OperationalError, so a 503 that AlertManager would retry forever).
    alerts = [
        alert("large", n, startsAt=f"2026-11-26T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z")
        for n in range(17_000)
    ]
    first = post(group(*alerts))
    assert first.status_code == 200, first.json
    assert first.json["new"] == 17_000
    again = post(group(*alerts))
    assert again.status_code == 200
    assert again.json["deduplicated"] == 17_000
