"""A real ``punchingfist engine`` worker (prefork, Redis) serves what it did on /metrics.

The counts come from the pool processes (multiprocess folder) and are summed by the
worker's main process at the scrape: a step retried once, a conditional step, a
message that makes the task raise, and a run that ends Succeeded must each show up
exactly once, under the task's stable name.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from celery import Celery
from enginekit import Harness, WorkerProcess, start_run

from shared.queueing import ENGINE_QUEUE, RUN_STEP
from tests.support.ports import free_port
from tests.support.scrape import Samples, scrape
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]


def flaky_workflow(marker: Path) -> dict[str, object]:
    # Fails on its first attempt (no marker yet), succeeds on the retry.
    script = f"test -e {marker} && echo again || {{ touch {marker}; exit 1; }}"
    return {
        "steps": [
            {"name": "flaky", "type": "cli", "command": ["sh", "-c", script], "retries": 1},
            {
                "name": "check",
                "type": "conditional",
                "condition": "steps.flaky.output.exit_code == 0",
            },
        ]
    }


def test_task_outcomes_durations_runs_and_queue_depth(
    harness: Harness, redis_app: Celery, worker_process: WorkerProcess, tmp_path: Path
) -> None:
    port = free_port()
    worker_process.env["PF_ENGINE_METRICS_BIND"] = f"127.0.0.1:{port}"
    url = f"http://127.0.0.1:{port}/metrics"
    harness.put_workflow(flaky_workflow(tmp_path / "marker"))
    run_id = harness.add_run()
    worker_process.start()
    before = wait_for(lambda: scrape(url), 30, "the metrics endpoint", ignoring=(OSError,))
    assert before.value("punchingfist_broker_up") == 1
    assert before.has("punchingfist_queue_length", queue=ENGINE_QUEUE)

    start_run(redis_app, run_id)
    run = harness.wait_finished(run_id, timeout=40)
    assert run.phase == "Succeeded", (run.error, worker_process.log()[-3000:])
    # Not a run id: the task raises before it touches the database.
    redis_app.send_task(RUN_STEP, args=["not-a-run-id", 0], queue=ENGINE_QUEUE)

    def failed_counted() -> Samples | None:
        samples = scrape(url)
        failed = samples.value("punchingfist_tasks_total", task=RUN_STEP, outcome="failed")
        return samples if failed else None

    samples = wait_for(failed_counted, 30, "the failed task to be counted")

    def tasks(task: str, outcome: str) -> float:
        return samples.value("punchingfist_tasks_total", task=task, outcome=outcome)

    assert tasks("engine.start_workflow", "succeeded") == 1
    assert tasks(RUN_STEP, "retried") == 1  # flaky, first attempt
    assert tasks(RUN_STEP, "succeeded") == 2  # flaky's retry, check
    assert tasks(RUN_STEP, "failed") == 1
    assert samples.total("punchingfist_tasks_total") == 5
    assert (
        samples.value("punchingfist_task_failures_total", task=RUN_STEP, exception="ValueError")
        == 1
    )
    # Every run counted in the duration histogram, retries and failures included.
    assert samples.value("punchingfist_task_duration_seconds_count", task=RUN_STEP) == 4
    assert samples.value("punchingfist_task_duration_seconds_bucket", task=RUN_STEP, le="+Inf") == 4
    assert samples.value("punchingfist_task_duration_seconds_sum", task=RUN_STEP) > 0
    assert samples.value("punchingfist_runs_finished_total", phase="Succeeded") == 1
    assert samples.total("punchingfist_runs_finished_total") == 1
    assert samples.value("punchingfist_queue_length", queue=ENGINE_QUEUE) == 0


def test_queue_depth_counts_the_messages_waiting_behind_a_busy_worker(
    harness: Harness, redis_app: Celery, worker_process: WorkerProcess, tmp_path: Path
) -> None:
    port = free_port()
    worker_process.env.update(
        {"PF_ENGINE_METRICS_BIND": f"127.0.0.1:{port}", "PF_ENGINE_CONCURRENCY": "1"}
    )
    url = f"http://127.0.0.1:{port}/metrics"
    release = tmp_path / "release"
    wait_script = f"while ! test -e {release}; do sleep 0.05; done"
    harness.put_workflow(
        {"steps": [{"name": "busy", "type": "cli", "command": ["sh", "-c", wait_script]}]}
    )
    run_id = harness.add_run()
    worker_process.start()
    start_run(redis_app, run_id)
    wait_for(lambda: [s.phase for s in harness.steps(run_id)] == ["Running"], 30, "the step to run")
    # The one pool process is busy (and prefetches nothing more): these three wait.
    for _ in range(3):
        redis_app.send_task(RUN_STEP, args=["not-a-run-id", 0], queue=ENGINE_QUEUE)
    waiting = lambda: scrape(url).value("punchingfist_queue_length", queue=ENGINE_QUEUE)  # noqa: E731
    wait_for(lambda: waiting() == 3, 30, "three messages waiting")
    release.touch()
    harness.wait_finished(run_id, timeout=30)
    wait_for(lambda: waiting() == 0, 30, "the queue to drain")
    samples = wait_for(
        lambda: (
            (s := scrape(url)).value("punchingfist_tasks_total", task=RUN_STEP, outcome="failed")
            == 3
            and s
        ),
        30,
        "three failed tasks",
    )
    assert samples.value("punchingfist_tasks_total", task=RUN_STEP, outcome="succeeded") == 1


def test_a_metrics_port_in_use_stops_the_worker_at_start(
    worker_process: WorkerProcess,
) -> None:
    port = free_port()
    worker_process.env["PF_ENGINE_METRICS_BIND"] = f"127.0.0.1:{port}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        worker_process.start()
        assert worker_process.process is not None
        assert worker_process.process.wait(30) != 0
    assert f"PF_ENGINE_METRICS_BIND=127.0.0.1:{port}" in worker_process.log()
    assert "cannot listen for metrics" in worker_process.log()
