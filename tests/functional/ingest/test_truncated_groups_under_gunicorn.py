"""Alerts AlertManager dropped from a group (``truncatedAlerts``) are not silent.

AlertManager's ``max_alerts`` cuts a group and says how many alerts it left out;
those alerts never reach us, and ingest ignored the number. Now the source event
records it, the log warns and ``punchingfist_alerts_truncated_total`` counts it by
Source, through the real server.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared.db import migrate
from shared.db.engines import make_engine
from shared.db.models import SourceEvent
from shared.settings import DatabaseSettings
from tests.functional.ingest.conftest import load_fixture, source_spec
from tests.functional.ingest.ingestserver import running_ingest

pytestmark = pytest.mark.timeout(120)


def test_a_truncated_group_is_recorded_logged_and_counted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/pf.db"
    engine = make_engine(DatabaseSettings(url=url))
    migrate.upgrade(engine)
    body = load_fixture("03-firing-group-of-2.json")
    body["truncatedAlerts"] = 7
    with running_ingest(
        url, tmp_path, f"sqla+sqlite:///{tmp_path}/broker.db", {"alertmanager": source_spec()}
    ) as ingest:
        answer = ingest.post(body)
        assert answer.status == 200, answer.body
        assert answer.body["truncated"] == 7
        assert answer.body["new"] == 2
        assert ingest.post(load_fixture("01-firing-single.json")).body["truncated"] == 0
        metrics = ingest.request("GET", "/metrics").body
        detail = ingest.get(f"/api/v1/alerts/{answer.body['alerts'][0]}").body
        log = ingest.log()
    with engine.connect() as connection:
        stored = connection.execute(
            sa.select(SourceEvent.alerts_truncated).where(
                SourceEvent.id == uuid.UUID(answer.body["event"])
            )
        ).scalar_one()
    engine.dispose()
    assert stored == 7
    assert detail["sourceEvents"][0]["alertsTruncated"] == 7
    assert re.search(
        r'^punchingfist_alerts_truncated_total\{source="alertmanager"\} 7\.0$',
        metrics,
        re.MULTILINE,
    ), metrics
    warnings = [
        json.loads(line)
        for line in log.splitlines()
        if line.startswith("{") and "webhook group truncated" in line
    ]
    assert len(warnings) == 1, log
    assert warnings[0]["level"] == "warning"
    assert warnings[0]["truncated"] == 7
    assert warnings[0]["source"] == "alertmanager"
    assert warnings[0]["event_id"] == answer.body["event"]
