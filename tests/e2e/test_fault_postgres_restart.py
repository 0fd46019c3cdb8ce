"""Fault: PostgreSQL restarted during a run (the harness's private server, ``postgres="private"``).

The run's step is held open; PostgreSQL is stopped (every session is ended, as in a
restart or a failover); the step's command finishes while the database is down, so
its result cannot be recorded yet, and PostgreSQL stays down until the step's lease
has run out; then PostgreSQL is started again. With no manual step (no process
restarted, nothing replayed by hand) the run must finish,
its step must not be run again, and ingest, the controller, the engine and the
notifier must go on: a second alert fired through AlertManager after the restart runs
to the end too, and Slack has one parent per alert.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.faults_support import ledger
from tests.e2e.harness import Pipeline

pytestmark = pytest.mark.timeout(180)

# How far past the step's lease the outage lasts (the harness's lease is 5 s).
LEASE_SLACK = dt.timedelta(seconds=1)


def _alert(gate: str) -> dict[str, Any]:
    return {"labels": {"alertname": "GatedFault", "severity": "warning", "gate": gate}}


def _run_of(pipeline: Pipeline, gate: str) -> str:
    def found() -> str | None:
        for alert in pipeline.alerts():
            if alert["labels"].get("gate") == gate:
                runs = pipeline.alert(alert["id"])["workflowRuns"]
                return str(runs[0]["id"]) if runs else None
        return None

    return str(pipeline.wait(found, f"the run of gate {gate}", 60))


def test_postgres_restarted_during_a_run_the_services_recover_on_their_own(
    pipeline_for: Any, tmp_path: Path
) -> None:
    steps = tmp_path / "steps"
    steps.mkdir()
    pipeline: Pipeline = pipeline_for(
        "fault-crash",
        env={"TMPDIR": str(steps)},
        postgres="private",
        database_prefix="ft_",
    )
    pipeline.fire(_alert("a"))
    [run_a] = pipeline.wait(lambda: ledger(steps / "started"), "the gated step to start", 60)

    [(lease_until,)] = pipeline.sql(
        "SELECT lease_until FROM step_runs WHERE run_id = :r AND index = 0", r=run_a
    )
    if lease_until.tzinfo is None:  # stored as UTC
        lease_until = lease_until.replace(tzinfo=dt.UTC)
    pipeline.stop("postgres")
    (steps / "go-a").touch()
    # The step's command is over while the database is down, and the database stays
    # down until the step's lease has run out (no heartbeat could renew it).
    pipeline.wait(lambda: ledger(steps / "done") == [run_a], "the step's command to end", 30)
    pipeline.wait(
        lambda: dt.datetime.now(dt.UTC) > lease_until + LEASE_SLACK,
        "the step's lease to run out while the database is down",
        30,
    )
    pipeline.start_again("postgres")

    run = pipeline.wait_run_finished(run_a, timeout=90)
    assert run["phase"] == "Succeeded", run
    assert run["outputs"]["summary"].strip() == "after the gate of a"

    # Everything still serves: a new alert goes all the way through.
    (steps / "go-b").touch()
    pipeline.fire(_alert("b"))
    run_b = _run_of(pipeline, "b")
    run = pipeline.wait_run_finished(run_b, timeout=90)
    assert run["phase"] == "Succeeded", run
    pipeline.wait(lambda: len(pipeline.slack.parents()) >= 2, "a Slack parent for each alert", 60)

    # Nothing twice: each step began and got through once, one run and one parent each.
    assert ledger(steps / "started") == [run_a, run_b]
    assert ledger(steps / "done") == [run_a, run_b]
    assert pipeline.count("workflow_runs") == 2
    assert len(pipeline.slack.parents()) == 2
    # No manual step: every process but PostgreSQL is the one first started.
    restarted = {
        name: p.pids
        for name, p in pipeline.processes.items()
        if name != "postgres" and len(p.pids) != 1
    }
    assert restarted == {}
    stopped = [name for name, p in pipeline.processes.items() if not p.running()]
    assert stopped == []
