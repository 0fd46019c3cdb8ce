"""Ingest writes each run's fingerprint with the run; the engine caps starts by it.

The run row used to get its fingerprint only when the engine started it, dug out of
``input_context``; now the one ``new_pending_run`` writes it, for ingest and the
scheduler alike, and the engine reads the column.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from services.engine.store import Store
from shared.db import resources
from shared.db.engines import make_session_factory
from shared.domain.runs import RunPhase
from shared.domain.templates import Templates
from tests.functional.ingest.conftest import load_fixture, mutated


def _runs(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        query = "SELECT id, phase, trigger, fingerprint FROM workflow_runs ORDER BY created_at"
        return list(conn.execute(sa.text(query)).mappings().all())


def test_runs_are_written_with_their_alerts_fingerprint(
    post: Callable[..., Any], engine: sa.Engine
) -> None:
    first = load_fixture("01-firing-single.json")
    assert post(first).json["workflowsStarted"] == 1
    # The same alert firing again later: a new occurrence, a new run.
    again = mutated("01-firing-single.json")
    again["alerts"][0]["startsAt"] = "2026-11-27T04:02:39Z"
    assert post(again).json["workflowsStarted"] == 1

    runs = _runs(engine)
    assert [(r["phase"], r["trigger"], r["fingerprint"]) for r in runs] == [
        ("Pending", "alert", "7c8f1b9300292754"),
        ("Pending", "alert", "7c8f1b9300292754"),
    ]

    # The engine's start applies the per-fingerprint cap from that column.
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        resources.upsert(
            session,
            "Workflow",
            "default",
            "triage",
            {"steps": [{"name": "a", "type": "cli", "command": ["true"]}]},
        )
    store = Store(Templates(), outbox_lease_seconds=10)
    phases = []
    for run in runs:
        with sessions.begin() as session:
            started = store.start(session, uuid.UUID(str(run["id"])), dt.datetime.now(dt.UTC))
        assert started is not None
        phases.append(started.phase)
    assert phases == [RunPhase.RUNNING, RunPhase.SKIPPED]
