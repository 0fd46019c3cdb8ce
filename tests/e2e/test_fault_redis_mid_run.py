"""Fault: Redis stopped in the middle of a run, while its step finishes.

The engine's worker loses the broker with a task in hand (acknowledged late); the
step's result is committed, and the message for the next step may not get out
(Celery gives up after three tries). Redis is started again. The engine worker must
stay up and reconnect (kombu 5.7 used to crash it: ``shared.redis_transport``), and the
run must finish with nothing run twice and one Slack parent. A next-step message
that was lost is re-sent by the engine's recovery pass once the run has been idle
for ``PF_ENGINE_STALL_SECONDS``, shortened here to seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.faults_support import ledger
from tests.e2e.harness import Pipeline

pytestmark = pytest.mark.timeout(180)

ALERT = {"labels": {"alertname": "GatedFault", "severity": "warning", "gate": "a"}}


def test_redis_down_when_a_step_finishes_the_run_still_finishes_once(
    pipeline_for: Any, tmp_path: Path
) -> None:
    steps = tmp_path / "steps"
    steps.mkdir()
    pipeline: Pipeline = pipeline_for(
        "fault-crash",
        env={"TMPDIR": str(steps), "PF_ENGINE_STALL_SECONDS": "5"},
        database_prefix="ft_",
    )
    pipeline.fire(ALERT)
    [run_id] = pipeline.wait(lambda: ledger(steps / "started"), "the gated step to start", 60)

    pipeline.stop_redis()
    (steps / "go-a").touch()

    def recorded() -> bool:
        rows = pipeline.sql(
            "SELECT phase FROM step_runs WHERE run_id = :r ORDER BY index", r=run_id
        )
        return [row.phase for row in rows] == ["Succeeded", "Pending"]

    pipeline.wait(recorded, "the gated step's result to be recorded without Redis", 30)
    pipeline.start_redis()

    run = pipeline.wait_run_finished(run_id, timeout=90)
    assert run["phase"] == "Succeeded", run
    pipeline.wait(pipeline.slack.parents, "the Slack parent", 60)
    assert ledger(steps / "started") == [run_id]
    assert ledger(steps / "done") == [run_id]
    assert [s["attempts"] for s in run["steps"]] == [1, 1]
    assert pipeline.count("workflow_runs") == 1
    assert len(pipeline.slack.parents()) == 1
    # No manual step: the engine and the notifier are the processes first started.
    assert {n: len(p.pids) for n, p in pipeline.processes.items() if n != "redis"} == {
        n: 1 for n in pipeline.processes if n != "redis"
    }
    assert all(p.running() for p in pipeline.processes.values())
