"""The bad-webhook corpus through the real server, on SQLite and on PostgreSQL.

For every case: never a 5xx, the status the case expects, and exactly the writes it
allows. A refused request writes nothing; a partly refused group writes one source
event (with its refusals) and exactly its good alerts. The server's log must show
no traceback: no request may have died on an exception we did not handle.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared.db.engines import make_engine
from shared.db.models import SourceEvent
from shared.settings import DatabaseSettings
from tests.functional.ingest.bad_webhooks import CASES, SOURCE_MATCHERS, Case
from tests.functional.ingest.conftest import source_spec, table_counts
from tests.functional.ingest.gunicorn import Ingest, running_ingest


def _check(ingest: Ingest, engine: sa.Engine, case: Case) -> list[str]:
    before = table_counts(engine)
    answer = ingest.post(case.body)
    after = table_counts(engine)
    delta = {name: after[name] - before[name] for name in after}
    problems = []
    if answer.status >= 500 or answer.status != case.status:
        problems.append(f"status {answer.status} (want {case.status}): {str(answer.body)[:300]}")
    if not isinstance(answer.body, dict) or not answer.body:
        problems.append(f"answer is not a JSON object: {str(answer.body)[:200]}")
        return problems
    if answer.status >= 400:
        if not answer.body.get("error"):
            problems.append("a refusal without an error message")
        if any(delta.values()):
            problems.append(f"a refused request wrote {delta}")
        if answer.body.get("refused", 0) != case.refused:
            problems.append(f"refused {answer.body.get('refused')} (want {case.refused})")
        return problems
    if delta["source_events"] != 1 or delta["alerts"] != case.new:
        problems.append(f"wrote {delta} (want 1 source event and {case.new} alerts)")
    if (answer.body["new"], answer.body["refused"]) != (case.new, case.refused):
        problems.append(f"answered new={answer.body['new']} refused={answer.body['refused']}")
    if len(answer.body["refusals"]) != case.refused:
        problems.append(f"refusals {answer.body['refusals']}")
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(SourceEvent.alerts_refused, SourceEvent.refusals).where(
                SourceEvent.id == uuid.UUID(answer.body["event"])
            )
        ).one()
    if stored.alerts_refused != case.refused or len(stored.refusals or []) != case.refused:
        problems.append(f"source event says {stored.alerts_refused} refused: {stored.refusals}")
    return problems


@pytest.mark.redis
def test_no_bad_webhook_gets_a_5xx_or_a_partial_write(
    database_url: str, tmp_path: Path, redis_url: str
) -> None:
    sources = {"alertmanager": source_spec(matchers=SOURCE_MATCHERS)}
    engine = make_engine(DatabaseSettings(url=database_url))
    failures: dict[str, list[str]] = {}
    with running_ingest(database_url, tmp_path, redis_url, sources) as ingest:
        for case in CASES:
            problems = _check(ingest, engine, case)
            if problems:
                failures[case.name] = problems
        log = ingest.log()
    engine.dispose()
    assert failures == {}, "\n".join(f"{name}: {p}" for name, p in failures.items())
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]
    assert len(CASES) >= 60
