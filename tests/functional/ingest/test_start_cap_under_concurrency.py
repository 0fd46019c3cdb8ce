"""A Source's start cap holds when its webhooks arrive at once.

Each request counted the Source's recent runs and started up to the cap; two
requests counting before either committed both started, and a storm on PostgreSQL
overshot the cap (before the fix this test failed four runs in four on PostgreSQL: 31
runs for a cap of 30). ``punchingfist ingest`` under gunicorn with four workers gets bursts of
single-alert webhooks, each alert new, one burst per Source: exactly each cap's
worth of runs start, and every other alert is recorded as rate limited.
"""

from __future__ import annotations

import concurrent.futures
import copy
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from shared.db.engines import make_engine
from shared.settings import DatabaseSettings
from tests.functional.ingest.conftest import load_fixture, source_spec
from tests.functional.ingest.ingestserver import Answer, Ingest, running_ingest

CAP = 30
WEBHOOKS = 100
# One race is not certain in one burst; each Source is a fresh burst below its cap.
SOURCES = [f"burst-{n}" for n in range(6)]


def _webhook(source: int, index: int) -> dict[str, Any]:
    body = copy.deepcopy(load_fixture("01-firing-single.json"))
    alert = body["alerts"][0]
    alert["labels"]["pod"] = f"web-{source}-{index}"
    alert["fingerprint"] = f"{source:04x}{index:012x}"
    return body


def _burst(pf: Ingest, source: int) -> list[Answer]:
    path = f"/webhook/{SOURCES[source]}"
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda i: pf.post(_webhook(source, i), path=path), range(WEBHOOKS)))


def _runs_by_source(database_url: str) -> dict[str, int]:
    engine = make_engine(DatabaseSettings(url=database_url))
    with engine.connect() as conn:
        query = "SELECT source_name, count(*) FROM workflow_runs GROUP BY source_name"
        counted = {str(name): int(count) for name, count in conn.execute(sa.text(query)).all()}
    engine.dispose()
    return counted


@pytest.mark.redis
def test_concurrent_webhooks_start_no_more_runs_than_the_cap(
    database_url: str, tmp_path: Path, redis_url: str
) -> None:
    cap = {"maxWorkflowStarts": CAP, "windowSeconds": 3600}
    sources = {name: source_spec(rateLimit=cap) for name in SOURCES}
    with running_ingest(database_url, tmp_path, redis_url, sources, workers=4) as pf:
        bursts = [_burst(pf, n) for n in range(len(SOURCES))]
    for answers in bursts:
        assert [a.status for a in answers] == [200] * WEBHOOKS, [a.body for a in answers]
        assert sum(a.body["new"] for a in answers) == WEBHOOKS
        assert sum(a.body["rateLimited"] for a in answers) == WEBHOOKS - CAP
    started = [sum(a.body["workflowsStarted"] for a in answers) for answers in bursts]
    assert started == [CAP] * len(SOURCES)
    assert _runs_by_source(database_url) == dict.fromkeys(SOURCES, CAP)
    assert "Traceback" not in pf.log()
