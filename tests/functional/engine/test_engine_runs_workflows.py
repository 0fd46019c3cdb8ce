"""A run from start to finish through a worker, on SQLite and on PostgreSQL.

The worker is a thread on the memory transport here: the point is the database
context and the state machine on both backends. Real Redis and worker processes are
in test_engine_worker_process.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from celery import Celery
from enginekit import Harness, inprocess_worker, start_run

from services.engine.app import Runtime, create_app
from services.engine.steps import cli, registries
from shared.queueing import DELIVER
from shared.settings import Settings


def workflow(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"runtime": {"environment": {"REGION": "eu-1"}}, "steps": list(steps), **extra}


def test_steps_share_the_context_and_outputs_and_sinks_are_queued(
    harness: Harness, inproc: Celery
) -> None:
    harness.put_workflow(
        workflow(
            {
                "name": "look",
                "type": "cli",
                "command": [
                    "printf",
                    '{"restarts": 7, "pod": "%s", "cluster": "%s", "region": "%s"}',
                    "{{ alert.labels.pod }}",
                    "{{ source.context.cluster }}",
                    "{{ env.REGION }}",
                ],
                "output": "json",
            },
            {
                "name": "decide",
                "type": "conditional",
                "condition": "steps.look.output.restarts > 5 and alert.severity == 'critical'",
                "then": {"run": ["restart"]},
                "else": {"run": ["wait"]},
            },
            {
                "name": "restart",
                "type": "cli",
                "command": ["echo", "restarting {{ .alert.labels.pod }}"],
            },
            {"name": "wait", "type": "cli", "command": ["echo", "waiting"]},
            outputs=[
                {"name": "said", "value": "{{ steps.restart.output.stdout | trim }}"},
                {"name": "waited", "value": "{{ steps.wait.phase }}"},
            ],
            sinks=["slack", "alertmanager"],
        )
    )
    run_id = harness.add_run(labels={"alertname": "X", "severity": "critical", "pod": "web-7"})
    start_run(inproc, run_id)
    run = harness.wait_finished(run_id)

    assert run.phase == "Succeeded", run.error
    assert run.total_steps == 4
    assert run.steps_completed == 3
    assert run.outputs == {"said": "restarting web-7", "waited": "Skipped"}
    assert run.started_at
    assert run.completed_at
    assert run.current_step is None
    steps = harness.steps(run_id)
    assert [(s.name, s.phase, s.attempts) for s in steps] == [
        ("look", "Succeeded", 1),
        ("decide", "Succeeded", 1),
        ("restart", "Succeeded", 1),
        ("wait", "Skipped", 0),
    ]
    look = steps[0].output
    assert (look["pod"], look["cluster"], look["region"], look["exit_code"]) == (
        "web-7",
        "test",
        "eu-1",
        0,
    )
    assert json.loads(look["stdout"])["restarts"] == 7
    assert steps[1].output == {"result": True, "branch": "then", "skipped": ["wait"]}
    # The context in the database carries every step for the ones after it.
    assert run.context["steps"]["restart"]["output"]["stdout"] == "restarting web-7\n"
    assert run.context["env"] == {"REGION": "eu-1"}
    # Ran through all its steps; nobody was told yet: escalation is the notifier's,
    # when a delivery reaches a person.
    assert harness.alert(run_id).status == "triaging"
    deliveries = harness.deliveries(run_id)
    assert sorted(d.sink_name for d in deliveries) == ["alertmanager", "slack"]
    assert {d.phase for d in deliveries} == {"Pending"}
    queued = {tuple(entry.args) for entry in harness.outbox(DELIVER)}
    # The run id rides along for Flower and the logs.
    assert queued == {(str(d.id), str(run_id)) for d in deliveries}


def test_a_failed_step_fails_the_run_and_skips_the_rest(harness: Harness, inproc: Celery) -> None:
    harness.put_workflow(
        workflow(
            {"name": "broken", "type": "cli", "command": ["sh", "-c", "echo oops >&2; exit 3"]},
            {"name": "never", "type": "cli", "command": ["echo", "no"]},
            sinks=["slack"],
        )
    )
    run_id = harness.add_run()
    start_run(inproc, run_id)
    run = harness.wait_finished(run_id)
    assert run.phase == "Failed"
    assert run.error == "step 'broken' failed: command exited with code 3: oops"
    broken, never = harness.steps(run_id)
    assert (broken.phase, broken.output["exit_code"], broken.output["stderr"]) == (
        "Failed",
        3,
        "oops\n",
    )
    assert never.phase == "Skipped"
    assert harness.alert(run_id).status == "triaging"
    # A failed run is reported too.
    assert [d.sink_name for d in harness.deliveries(run_id)] == ["slack"]


def test_continue_on_error_lets_the_run_succeed(harness: Harness, inproc: Celery) -> None:
    harness.put_workflow(
        workflow(
            {"name": "flaky", "type": "cli", "command": ["false"], "continueOnError": True},
            {
                "name": "after",
                "type": "cli",
                "command": ["echo", "{{ steps.flaky.phase }} {{ steps.flaky.output.exit_code }}"],
            },
        )
    )
    run_id = harness.add_run()
    start_run(inproc, run_id)
    run = harness.wait_finished(run_id)
    assert run.phase == "Succeeded"
    assert run.message == "1 step(s) failed with continueOnError: flaky"
    flaky, after = harness.steps(run_id)
    assert flaky.phase == "Failed"
    assert after.output["stdout"] == "Failed 1\n"


def test_stop_succeeded_resolves_the_alert(harness: Harness, inproc: Celery) -> None:
    harness.put_workflow(
        workflow(
            {
                "name": "recovered",
                "type": "conditional",
                "condition": "alert.labels.pod.startswith('web')",
                "then": {"stop": "succeeded", "message": "auto-resolved"},
            },
            {"name": "escalate", "type": "cli", "command": ["echo", "page someone"]},
        )
    )
    run_id = harness.add_run()
    start_run(inproc, run_id)
    run = harness.wait_finished(run_id)
    assert (run.phase, run.message, run.error) == ("Succeeded", "auto-resolved", None)
    assert [s.phase for s in harness.steps(run_id)] == ["Succeeded", "Skipped"]
    alert = harness.alert(run_id)
    assert (alert.status, alert.auto_resolved) == ("resolved", True)
    assert alert.triage_started_at is not None
    assert alert.resolved_at is not None


def test_a_template_error_names_the_step_and_the_expression(
    harness: Harness, inproc: Celery
) -> None:
    harness.put_workflow(
        workflow(
            {"name": "logs", "type": "cli", "command": ["echo", "{{ alert.labels.namespace }}"]}
        )
    )
    run_id = harness.add_run()
    start_run(inproc, run_id)
    run = harness.wait_finished(run_id)
    assert run.phase == "Failed"
    assert "step 'logs' command[1]" in run.error
    assert "{{ alert.labels.namespace }}" in run.error
    assert "has no attribute 'namespace'" in run.error
    assert harness.steps(run_id)[0].attempts == 1


def test_temporary_failures_are_retried_up_to_retries(
    harness: Harness, inproc: Celery, tmp_path: Any
) -> None:
    counter = tmp_path / "count"
    script = f'echo x >> {counter}; test "$(wc -l < {counter})" -ge 3'
    harness.put_workflow(
        workflow(
            {"name": "third-time", "type": "cli", "command": ["sh", "-c", script], "retries": 2}
        )
    )
    run_id = harness.add_run()
    start_run(inproc, run_id)
    run = harness.wait_finished(run_id)
    assert run.phase == "Succeeded", run.error
    assert harness.steps(run_id)[0].attempts == 3
    assert counter.read_text().count("x") == 3


def test_retries_run_out_and_timeouts_are_enforced(harness: Harness, inproc: Celery) -> None:
    harness.put_workflow(
        workflow(
            {
                "name": "slow",
                "type": "cli",
                "command": ["sleep", "30"],
                "timeoutSeconds": 0.3,
                "retries": 1,
            }
        )
    )
    run_id = harness.add_run()
    start_run(inproc, run_id)
    run = harness.wait_finished(run_id, timeout=15)
    assert run.phase == "Failed"
    assert "timed out after 0.3s" in run.error
    assert harness.steps(run_id)[0].attempts == 2


def test_permanent_errors_are_not_retried(harness: Harness, inproc: Celery) -> None:
    harness.put_workflow(
        workflow({"name": "typo", "type": "cli", "command": ["no-such-command-xyz"], "retries": 3})
    )
    run_id = harness.add_run()
    start_run(inproc, run_id)
    run = harness.wait_finished(run_id)
    assert run.phase == "Failed"
    assert "cannot start 'no-such-command-xyz'" in run.error
    assert harness.steps(run_id)[0].attempts == 1


def test_a_type_without_executor_fails_the_run_as_not_available(
    harness: Harness, engine_settings: Callable[..., Settings]
) -> None:
    # An engine whose registry knows the agent type but has no executor for it (as
    # before the agent landed, or a type added to the schemas ahead of its code).
    registry = registries.StepRegistry()
    registry.add(cli.CliExecutor())
    settings = engine_settings()
    app = create_app(settings)
    app.pf_runtime = Runtime(settings, app, registry=registry)
    harness.put_workflow(
        workflow(
            {"name": "first", "type": "cli", "command": ["true"]},
            {"name": "think", "type": "agent", "goal": "find the cause"},
        )
    )
    run_id = harness.add_run()
    with inprocess_worker(app):
        start_run(app, run_id)
        run = harness.wait_finished(run_id)
    assert run.phase == "Failed"
    assert "step type 'agent' is not available in this engine yet" in run.error
    assert [s.phase for s in harness.steps(run_id)] == ["Succeeded", "Failed"]


def test_an_unknown_type_or_missing_workflow_fails_at_start(
    harness: Harness, inproc: Celery
) -> None:
    harness.put_workflow(workflow({"name": "x", "type": "teleport"}), name="odd")
    odd = harness.add_run("odd")
    missing = harness.add_run("nope")
    start_run(inproc, odd)
    start_run(inproc, missing)
    odd_run, missing_run = harness.wait_finished(odd), harness.wait_finished(missing)
    assert odd_run.phase == "Failed"
    assert "spec.steps.0.type: Unknown step type 'teleport'" in odd_run.error
    assert missing_run.phase == "Failed"
    assert "Workflow default/nope does not exist" in missing_run.error
    assert harness.steps(odd) == []
    # Never triaged: the alert keeps its state for a human to see.
    assert harness.alert(odd).status == "received"


def test_duplicate_start_messages_start_the_run_once(harness: Harness, inproc: Celery) -> None:
    harness.put_workflow(workflow({"name": "one", "type": "cli", "command": ["echo", "hi"]}))
    run_id = harness.add_run()
    for _ in range(3):
        start_run(inproc, run_id)
    run = harness.wait_finished(run_id)
    assert run.phase == "Succeeded"
    steps = harness.steps(run_id)
    assert len(steps) == 1
    assert steps[0].attempts == 1


def test_per_fingerprint_cap_skips_a_second_run(harness: Harness, inproc: Celery) -> None:
    harness.put_workflow(
        workflow(
            {"name": "one", "type": "cli", "command": ["true"]}, limits={"maxRunsPerFingerprint": 1}
        )
    )
    first = harness.add_run(fingerprint="abc")
    start_run(inproc, first)
    assert harness.wait_finished(first).phase == "Succeeded"
    second = harness.add_run(fingerprint="abc")
    start_run(inproc, second)
    run = harness.wait_finished(second)
    assert run.phase == "Skipped"
    assert "limits.maxRunsPerFingerprint=1" in run.error
    assert harness.alert(second).status == "received"
    other = harness.add_run(fingerprint="def")
    start_run(inproc, other)
    assert harness.wait_finished(other).phase == "Succeeded"


def test_concurrency_cap_skips_runs_over_it(harness: Harness, inproc: Celery) -> None:
    harness.put_workflow(
        workflow(
            {"name": "one", "type": "cli", "command": ["true"]},
            limits={"maxConcurrentRuns": 1, "maxRunsPerFingerprint": 0},
        )
    )
    # A run already Running (as if on another worker) fills the one slot.
    busy = harness.add_run()
    with harness.sessions.begin() as session:
        from shared.db.models import WorkflowRun

        session.get(WorkflowRun, busy).phase = "Running"  # type: ignore[union-attr]
    run_id = harness.add_run()
    start_run(inproc, run_id)
    run = harness.wait_finished(run_id)
    assert run.phase == "Skipped"
    assert "limits.maxConcurrentRuns=1" in run.error
