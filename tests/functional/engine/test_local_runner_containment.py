"""What a ``runner: local`` step leaves behind and can see, with a real engine worker.

A step ends when its command ends or times out, and so does everything the command
started in the background (it used to keep the step, and the worker slot, until
the last background child exited: ``sleep infinity &`` held it forever). The command
sees only its small allowlisted environment, never the worker's database URL, and
``PF_ENGINE_LOCAL_RUNNER=false`` turns the runner off with a message that says so.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from celery import Celery
from enginekit import Harness, WorkerProcess, start_run

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def shell_step(name: str, command: str, **extra: object) -> dict[str, object]:
    return {
        "name": name,
        "type": "cli",
        "shell": True,
        "command": command,
        "continueOnError": True,
        **extra,
    }


def seconds(step: object) -> float:
    return (step.completed_at - step.started_at).total_seconds()  # type: ignore[attr-defined]


def test_a_step_ends_with_its_command_and_takes_its_background_children_along(
    harness: Harness, redis_app: Celery, worker_process: WorkerProcess, tmp_path: Path
) -> None:
    pidfile = tmp_path / "timed-out.pid"
    harness.put_workflow(
        {
            "steps": [
                shell_step("background", "sleep 20 & echo $!; echo started", timeoutSeconds=3),
                shell_step("forever", "sleep infinity & echo $!", timeoutSeconds=3),
                shell_step(
                    "timeout",
                    f"sleep 30 & echo $! > {pidfile}; sleep 30",
                    timeoutSeconds=2,
                ),
                shell_step("after", "echo next"),
            ]
        }
    )
    run_id = harness.add_run()
    worker_process.start()
    started = time.monotonic()
    start_run(redis_app, run_id)
    run = harness.wait_finished(run_id, timeout=30)
    elapsed = time.monotonic() - started

    background, forever, timeout, after = harness.steps(run_id)
    assert (background.phase, forever.phase) == ("Succeeded", "Succeeded")
    assert background.output["stdout"].endswith("started\n")
    assert seconds(background) < 2
    assert seconds(forever) < 2
    assert timeout.phase == "Failed"
    assert timeout.error == "timed out after 2s and was killed"
    assert 2 <= seconds(timeout) < 4
    assert after.output["stdout"] == "next\n"
    assert run.phase == "Succeeded"
    # Well below the 20 s and the infinity the background children asked for.
    assert elapsed < 15
    pids = [
        int(background.output["stdout"].split()[0]),
        int(forever.output["stdout"].split()[0]),
        int(pidfile.read_text()),
    ]
    assert [pid for pid in pids if alive(pid)] == []


def test_a_local_command_does_not_get_the_workers_environment(
    harness: Harness, redis_app: Celery, worker_process: WorkerProcess, worker_env: dict[str, str]
) -> None:
    assert worker_env["PF_DATABASE_URL"]
    harness.put_workflow(
        {
            "runtime": {"environment": {"REGION": "eu-1"}},
            "steps": [
                shell_step("env", "env"),
                shell_step("self", "tr '\\0' '\\n' < /proc/self/environ"),
                shell_step(
                    "variable", 'echo "db=${PF_DATABASE_URL:-none} broker=${PF_BROKER_URL:-none}"'
                ),
            ],
        }
    )
    run_id = harness.add_run()
    worker_process.start()
    start_run(redis_app, run_id)
    assert harness.wait_finished(run_id).phase == "Succeeded"
    env, own, variable = harness.steps(run_id)
    for step in (env, own):
        names = {line.partition("=")[0] for line in step.output["stdout"].splitlines()}
        assert "REGION" in names
        assert not {name for name in names if name.startswith("PF_")}, names
        assert worker_env["PF_DATABASE_URL"] not in step.output["stdout"]
    assert variable.output["stdout"] == "db=none broker=none\n"


def test_the_local_runner_can_be_turned_off(
    harness: Harness, redis_app: Celery, worker_process: WorkerProcess, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    worker_process.env["PF_ENGINE_LOCAL_RUNNER"] = "false"
    harness.put_workflow({"steps": [shell_step("local", f"touch {marker}")]})
    run_id = harness.add_run()
    worker_process.start()
    start_run(redis_app, run_id)
    harness.wait_finished(run_id)
    [step] = harness.steps(run_id)
    assert step.phase == "Failed"
    assert step.attempts == 1
    assert step.error == (
        "runner 'local' is turned off in this engine (PF_ENGINE_LOCAL_RUNNER=false): "
        "it would run the command inside the engine worker; use runner: kubernetes"
    )
    assert not marker.exists()
