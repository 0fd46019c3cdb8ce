"""Fault: the model endpoint hangs (accepts, never answers), then is down (refused).

Either way the agent step must fail with a reason that names the provider, its URL
and what went wrong, in a time bounded by the step's timeout (the request timeout is
the step's timeout less the engine's recording margin, and retries stop at the
step's deadline), and nothing may be done twice: one run, one failed step, one Slack
parent... here no Sink, so one run per alert and no tool call made on the model's
behalf.

There is no Workflow option to fall back to the rule-based investigator when the
model is unavailable (``runtime.llmConfig`` has provider, endpoint, model, key,
temperature and maxTokens only); the rules run only for a Workflow without a model.

The bound is asserted through the reason ("timed out" after one attempt: the step's
12 s leave room for no second 7 s request), not with a clock.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.e2e.harness import Pipeline
from tests.support.openai_double import status

pytestmark = pytest.mark.timeout(150)


def _alert(pod: str) -> dict[str, Any]:
    return {"labels": {"alertname": "ModelFault", "severity": "warning", "pod": pod}}


def _failed_step(pipeline: Pipeline, pod: str) -> tuple[dict[str, Any], dict[str, Any]]:
    alert = pipeline.wait(
        lambda: next((a for a in pipeline.alerts() if a["labels"].get("pod") == pod), None),
        f"the alert of {pod}",
    )
    [run_ref] = pipeline.alert(alert["id"])["workflowRuns"]
    run = pipeline.wait_run_finished(run_ref["id"], timeout=60)
    [step] = run["steps"]
    return run, step


def test_a_hanging_then_refusing_model_fails_the_agent_step_with_the_reason(
    pipeline_for: Any,
) -> None:
    pipeline: Pipeline = pipeline_for("fault-llm", database_prefix="ft_")
    release = threading.Event()

    def hang(body: dict[str, Any]) -> dict[str, Any]:
        # Accepts the request and answers only when the test ends.
        release.wait(120)
        return status(500)

    pipeline.model.script[:] = [hang, hang, hang]
    try:
        pipeline.fire(_alert("hangs-1"))
        run, step = _failed_step(pipeline, "hangs-1")
    finally:
        release.set()
    assert run["phase"] == "Failed", run
    assert step["phase"] == "Failed", step
    reason = step["error"] or ""
    assert "the model provider local at" in reason, reason
    assert pipeline.model.url in reason, reason
    assert "timed out (1 attempt(s))" in reason, reason
    assert len(pipeline.model.requests) == 1

    # Now nothing listens on the model's port: connection refused, retried, then failed.
    assert pipeline.model.server is not None
    pipeline.model.server.shutdown()
    pipeline.model.server.server_close()
    pipeline.fire(_alert("refused-1"))
    run, step = _failed_step(pipeline, "refused-1")
    assert run["phase"] == "Failed", run
    reason = step["error"] or ""
    assert pipeline.model.url in reason, reason
    assert "cannot connect" in reason, reason

    # One run per alert, each step attempted once (no step retries configured).
    assert pipeline.count("workflow_runs") == 2
    attempts = pipeline.sql("SELECT attempts FROM step_runs")
    assert sorted(row[0] for row in attempts) == [1, 1]
