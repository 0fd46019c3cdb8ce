"""Chains, redelivery and crashes with a real ``punchingfist engine`` process on Redis.

Each test starts the worker as a child process (prefork pool, the tests' Redis)
against a SQLite file or the PostgreSQL test database, and watches the database.
The crash tests SIGKILL the worker mid-step and check that the step runs again after
the restart and that the run completes exactly once (one sink delivery, one
notifier message, earlier steps not repeated).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from enginekit import ENGINE_REDIS_URL, Harness, WorkerProcess, start_run

from shared.queueing import DELIVER, RUN_STEP
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]


def crash_workflow(marks: Path) -> dict[str, Any]:
    return {
        "steps": [
            {"name": "first", "type": "cli", "command": ["sh", "-c", f"echo first >> {marks}"]},
            {
                "name": "slow",
                "type": "cli",
                "command": ["sh", "-c", f"echo started >> {marks}; sleep 2; echo done >> {marks}"],
            },
            {
                "name": "check",
                "type": "conditional",
                "condition": "steps.slow.output.exit_code == 0",
            },
        ],
        "sinks": ["slack"],
    }


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def queues_drained() -> bool:
    client = redis.Redis.from_url(ENGINE_REDIS_URL)
    try:
        return client.llen("engine") == 0 and client.hlen("unacked") == 0
    finally:
        client.close()


def assert_completed_once(harness: Harness, run_id: uuid.UUID) -> None:
    run = harness.wait_finished(run_id, timeout=60)
    assert run.phase == "Succeeded", run.error
    assert run.steps_completed == 3
    deliveries = harness.deliveries(run_id)
    assert [d.sink_name for d in deliveries] == ["slack"]
    assert [tuple(e.args) for e in harness.outbox(DELIVER)] == [
        (str(deliveries[0].id), str(run_id))
    ]


def test_a_chain_runs_on_a_worker_process(
    harness: Harness, redis_app: Celery, worker_process: WorkerProcess, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    harness.put_workflow(crash_workflow(marks))
    run_id = harness.add_run()
    worker_process.start()
    start_run(redis_app, run_id)
    assert_completed_once(harness, run_id)
    assert lines(marks) == ["first", "started", "done"]
    assert [s.attempts for s in harness.steps(run_id)] == [1, 1, 1]
    # Every line a task logs names its task and run (bound by the unit of work),
    # also lines from modules that do not know them (the executors' registry).
    entries = [json.loads(line) for line in worker_process.log().splitlines() if "{" in line[:1]]
    ours = [entry for entry in entries if entry.get("run_id") == str(run_id)]
    attempts = [entry for entry in ours if entry["msg"] == "step attempt finished"]
    assert [entry["index"] for entry in attempts] == [0, 1, 2]
    started = [entry for entry in ours if entry["msg"] == "run started"]
    assert len(started) == 1
    task_ids = {entry["task_id"] for entry in [*started, *attempts]}
    assert len(task_ids) == 4
    assert None not in task_ids


def test_redelivered_and_duplicated_messages_change_nothing(
    harness: Harness, redis_app: Celery, worker_process: WorkerProcess, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    harness.put_workflow(crash_workflow(marks))
    run_id = harness.add_run()
    worker_process.start()
    # The outbox may publish a start twice; a chain link may be delivered again.
    start_run(redis_app, run_id)
    start_run(redis_app, run_id)
    assert_completed_once(harness, run_id)
    for index in range(3):
        redis_app.send_task(RUN_STEP, args=[str(run_id), index], queue="engine")
    start_run(redis_app, run_id)
    time.sleep(0.5)
    wait_for(queues_drained, 20, "the worker to consume the duplicates")
    assert lines(marks) == ["first", "started", "done"]
    assert [s.attempts for s in harness.steps(run_id)] == [1, 1, 1]
    assert_completed_once(harness, run_id)


def test_sigkill_mid_step_reruns_the_step_after_restart(
    harness: Harness, redis_app: Celery, worker_process: WorkerProcess, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    harness.put_workflow(crash_workflow(marks))
    run_id = harness.add_run()
    worker_process.start()
    start_run(redis_app, run_id)
    wait_for(lambda: "started" in lines(marks), 30, "the slow step to start")
    worker_process.kill()
    slow = harness.steps(run_id)[1]
    assert (harness.run(run_id).phase, slow.phase, slow.attempts) == ("Running", "Running", 1)

    worker_process.start()
    assert_completed_once(harness, run_id)
    # The killed step ran again; the step before it did not.
    assert lines(marks) == ["first", "started", "started", "done"]
    assert [s.attempts for s in harness.steps(run_id)] == [1, 2, 1]


def test_a_killed_pool_process_is_replaced_and_its_step_redelivered(
    harness: Harness, redis_app: Celery, worker_process: WorkerProcess, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    harness.put_workflow(crash_workflow(marks))
    run_id = harness.add_run()
    worker_process.start()
    start_run(redis_app, run_id)
    wait_for(lambda: "started" in lines(marks), 30, "the slow step to start")
    owner = harness.steps(run_id)[1].worker
    pid = int(owner.rpartition(":")[2])
    assert pid != worker_process.process.pid  # type: ignore[union-attr]
    os.kill(pid, 9)
    # No restart: the worker requeues the lost message and the step is taken over.
    assert_completed_once(harness, run_id)
    assert lines(marks).count("started") == 2
    assert lines(marks).count("first") == 1
    assert harness.steps(run_id)[1].attempts == 2
