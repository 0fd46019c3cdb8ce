"""After each attempt: retries, failures, continueOnError, branches, stops, claims."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from services.engine.core import outcomes
from services.engine.core.outcomes import Claim, Outcome
from shared.domain import workflows
from shared.domain.runs import RunPhase, StepPhase
from shared.resources.schemas import load_workflow

BACKOFF = outcomes.Backoff(base=1.0, cap=5.0)


def flow(*steps: dict[str, Any]) -> workflows.Workflow:
    return load_workflow("ns", "wf", {"steps": list(steps)})


def cli(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "cli", "command": ["true"], **extra}


def pending(workflow: workflows.Workflow) -> dict[str, StepPhase]:
    return {step.name: StepPhase.PENDING for step in workflow.steps}


def after(
    workflow: workflows.Workflow, index: int, outcome: Outcome, attempts: int = 1
) -> outcomes.Next:
    return outcomes.after_attempt(
        workflow,
        workflow.steps[index],
        attempts=attempts,
        outcome=outcome,
        phases=pending(workflow),
        backoff=BACKOFF,
    )


TWO = flow(cli("a", retries=2), cli("b"))


def test_success_goes_on_and_the_last_success_finishes() -> None:
    assert after(TWO, 0, Outcome(ok=True)) == outcomes.Next(StepPhase.SUCCEEDED)
    last = after(TWO, 1, Outcome(ok=True))
    assert last.finish == outcomes.Finish(RunPhase.SUCCEEDED)


def test_temporary_failure_retries_with_exponential_backoff_then_fails() -> None:
    failure = Outcome(ok=False, error="boom", temporary=True)
    assert after(TWO, 0, failure, attempts=1).retry_in == 1.0
    assert after(TWO, 0, failure, attempts=2).retry_in == 2.0
    final = after(TWO, 0, failure, attempts=3)
    assert final.step_phase is StepPhase.FAILED
    assert final.finish == outcomes.Finish(RunPhase.FAILED, error="step 'a' failed: boom")
    assert final.skip == {"b"}


def test_backoff_is_capped_and_respects_a_requested_delay() -> None:
    assert BACKOFF.delay(10) == 5.0
    assert BACKOFF.delay(1, at_least=3.0) == 3.0


def test_permanent_failure_does_not_retry() -> None:
    result = after(TWO, 0, Outcome(ok=False, error="bad", temporary=False))
    assert result.step_phase is StepPhase.FAILED
    assert result.finish is not None


def test_continue_on_error_goes_on_and_reports_it() -> None:
    workflow = flow(cli("a", continueOnError=True))
    result = after(workflow, 0, Outcome(ok=False, error="x"))
    assert result.step_phase is StepPhase.FAILED
    assert result.finish == outcomes.Finish(
        RunPhase.SUCCEEDED, message="1 step(s) failed with continueOnError: a"
    )


BRANCHY = flow(
    {
        "name": "c",
        "type": "conditional",
        "condition": "true",
        "then": {"run": ["fix"], "skip": ["noise"]},
        "else": {"run": ["page"]},
    },
    cli("fix"),
    cli("page"),
    cli("noise"),
    cli("report"),
)


@pytest.mark.parametrize(("result", "skipped"), [(True, {"page", "noise"}), (False, {"fix"})])
def test_branches_gate_the_other_sides_steps(result: bool, skipped: set[str]) -> None:
    directive = outcomes.choose_branch(BRANCHY.steps[0], result)
    assert directive.skip == skipped
    decision = after(BRANCHY, 0, Outcome(ok=True, directive=directive))
    assert decision.skip == skipped
    assert decision.finish is None


def test_a_run_ends_at_its_last_runnable_step() -> None:
    phases = pending(BRANCHY) | {"c": StepPhase.SUCCEEDED, "noise": StepPhase.SKIPPED}
    decision = outcomes.after_attempt(
        BRANCHY,
        BRANCHY.steps[2],
        attempts=1,
        outcome=Outcome(ok=True),
        phases=phases | {"fix": StepPhase.SKIPPED, "report": StepPhase.SKIPPED},
        backoff=BACKOFF,
    )
    assert decision.finish == outcomes.Finish(RunPhase.SUCCEEDED)


def test_stop_ends_the_run_with_its_outcome() -> None:
    stop = outcomes.Directive(stop="failed", message="not ours")
    decision = after(BRANCHY, 0, Outcome(ok=True, directive=stop))
    assert decision.finish == outcomes.Finish(
        RunPhase.FAILED, message="not ours", error="stopped by step 'c': not ours", stopped=True
    )
    assert decision.skip == {"fix", "page", "noise", "report"}


def test_alert_status_after_a_run() -> None:
    assert (
        outcomes.alert_status_after(outcomes.Finish(RunPhase.SUCCEEDED, stopped=True)) == "resolved"
    )
    # Escalation is the notifier's, when a delivery tells a person.
    assert outcomes.alert_status_after(outcomes.Finish(RunPhase.SUCCEEDED)) is None
    assert outcomes.alert_status_after(outcomes.Finish(RunPhase.FAILED)) is None
    assert outcomes.alert_status_after(outcomes.Finish(RunPhase.SKIPPED)) is None


NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(seconds=10)
EARLIER = NOW - dt.timedelta(seconds=10)


@pytest.mark.parametrize(
    ("run", "step", "lease", "dead", "expected"),
    [
        (RunPhase.RUNNING, StepPhase.PENDING, None, False, Claim.RUN),
        (RunPhase.RUNNING, StepPhase.SUCCEEDED, None, False, Claim.CONTINUE),
        (RunPhase.RUNNING, StepPhase.SKIPPED, None, False, Claim.CONTINUE),
        (RunPhase.RUNNING, StepPhase.RUNNING, LATER, False, Claim.BUSY),
        (RunPhase.RUNNING, StepPhase.RUNNING, LATER, True, Claim.RUN),
        (RunPhase.RUNNING, StepPhase.RUNNING, EARLIER, False, Claim.RUN),
        (RunPhase.FAILED, StepPhase.PENDING, None, False, Claim.DROP),
        (RunPhase.PENDING, StepPhase.PENDING, None, False, Claim.DROP),
    ],
)
def test_claims(
    run: RunPhase, step: StepPhase, lease: dt.datetime | None, dead: bool, expected: Claim
) -> None:
    assert outcomes.claim(run, step, lease, NOW, owner_dead=dead) is expected
