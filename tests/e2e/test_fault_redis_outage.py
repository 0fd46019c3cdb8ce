"""Fault: Redis stopped while 1,000 alerts are accepted, then started again.

Ingest commits each alert with its run and an outbox entry in one transaction and
answers 200 whether or not the broker took the message; the outbox relay publishes
what was held back once Redis is back, and the engine runs every run. Nothing
accepted may be lost, and no run may be started (or its step run) twice.

The alerts are posted to ingest's webhook as AlertManager would send them (version 4
bodies, ten alerts a group, with the bearer token), not through AlertManager: at this
volume AlertManager's grouping and group_wait would only add time, and what is under
test is what happens after ingest accepted a notification.
"""

from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.faults_support import alertmanager_webhook, ledger_lines
from tests.e2e.harness import WEBHOOK_TOKEN, Pipeline

pytestmark = pytest.mark.timeout(300)

ALERTS = 1000
PER_WEBHOOK = 10


def _post_all(pipeline: Pipeline) -> list[httpx.Response]:
    groups = [
        [
            {"alertname": "OutboxFault", "severity": "warning", "seq": str(n)}
            for n in range(start, start + PER_WEBHOOK)
        ]
        for start in range(0, ALERTS, PER_WEBHOOK)
    ]
    headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    url = f"{pipeline.ingest_url}/webhook/alertmanager"
    with httpx.Client(timeout=60.0) as client:

        def post(index_and_alerts: tuple[int, list[dict[str, str]]]) -> httpx.Response:
            index, alerts = index_and_alerts
            body = alertmanager_webhook(alerts, group=f"g{index}")
            return client.post(url, json=body, headers=headers)

        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(post, enumerate(groups)))


def test_alerts_accepted_while_redis_is_down_all_run_once_after_it_is_back(
    pipeline_for: Any, tmp_path: Path
) -> None:
    steps = tmp_path / "steps"
    steps.mkdir()
    pipeline: Pipeline = pipeline_for(
        "fault-outbox", env={"TMPDIR": str(steps)}, database_prefix="ft_"
    )

    pipeline.stop_redis()
    answers = _post_all(pipeline)
    refused = [(a.status_code, a.text) for a in answers if a.status_code != 200]
    assert refused == [], refused[:3]
    assert sum(a.json()["new"] for a in answers) == ALERTS
    assert sum(a.json()["workflowsStarted"] for a in answers) == ALERTS
    assert pipeline.count("alerts") == ALERTS
    assert pipeline.count("workflow_runs") == ALERTS
    # Held in the outbox: accepted, committed, not yet on a queue.
    held = pipeline.sql("SELECT count(*) FROM outbox WHERE published_at IS NULL")[0][0]
    assert held >= 1
    assert ledger_lines(steps / "ledger") == []

    pipeline.start_redis()

    def all_finished() -> bool:
        phases = dict(pipeline.sql("SELECT phase, count(*) FROM workflow_runs GROUP BY phase"))
        return sum(phases.get(p, 0) for p in ("Succeeded", "Failed", "Skipped")) >= ALERTS

    pipeline.wait(all_finished, f"all {ALERTS} runs to finish after Redis came back", 240)
    phases = dict(pipeline.sql("SELECT phase, count(*) FROM workflow_runs GROUP BY phase"))
    assert phases == {"Succeeded": ALERTS}

    # One run per alert, and each run's step ran exactly once.
    [(runs, alerts_with_runs)] = pipeline.sql(
        "SELECT count(*), count(DISTINCT alert_id) FROM workflow_runs"
    )
    assert (runs, alerts_with_runs) == (ALERTS, ALERTS)
    lines = ledger_lines(steps / "ledger")
    twice = [line for line, n in collections.Counter(lines).items() if n > 1]
    assert twice == []
    assert len(lines) == ALERTS
    assert {line.split()[1] for line in lines} == {str(n) for n in range(ALERTS)}
    run_ids = {str(row[0]) for row in pipeline.sql("SELECT id FROM workflow_runs")}
    assert {line.split()[0] for line in lines} == run_ids
    assert pipeline.sql("SELECT count(*) FROM outbox WHERE published_at IS NULL")[0][0] == 0
