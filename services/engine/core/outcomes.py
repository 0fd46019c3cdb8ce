"""What happens after each attempt of a step: the run's state machine as functions.

The phases are ``shared.domain.runs``' (a run ``Pending -> Running -> Succeeded |
Failed | Skipped``, a step ``Pending -> Running -> Succeeded | Failed | Skipped``); a
temporary failure with retries left sends a step back to ``Pending`` with a
backoff. The original system reported a run Succeeded after a failed step; here a
failed step fails the run unless the step says ``continueOnError``.

The task adapter records each attempt as an ``Outcome`` and asks ``after_attempt``
what to write. Claims (``claim``) decide what a delivered step message may do, which
is what makes redelivered and duplicated messages harmless.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any

from shared.domain.alerts import AlertStatus
from shared.domain.runs import FINISHED_STEP, RunPhase, StepPhase
from shared.domain.workflows import Branch, Step, Workflow


@dataclasses.dataclass(frozen=True)
class Directive:
    """What a conditional asks of the rest of the run."""

    skip: frozenset[str] = frozenset()
    stop: str | None = None
    message: str | None = None


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The frozen result of one attempt."""

    ok: bool
    output: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    error: str | None = None
    # Only for failures: may a retry help, and not before how many seconds.
    temporary: bool = False
    delay: float = 0.0
    directive: Directive | None = None


@dataclasses.dataclass(frozen=True)
class Finish:
    phase: RunPhase
    message: str | None = None
    error: str | None = None
    # Stopped on purpose by a conditional (``stop``), as opposed to running out of steps.
    stopped: bool = False


@dataclasses.dataclass(frozen=True)
class Next:
    """What to write after an attempt."""

    # None: the attempt will be retried (the step goes back to Pending).
    step_phase: StepPhase | None
    retry_in: float | None = None
    # Later steps to mark Skipped.
    skip: frozenset[str] = frozenset()
    finish: Finish | None = None


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``base * 2**(attempt-1)`` seconds, at most ``cap``."""

    base: float = 2.0
    cap: float = 300.0

    def delay(self, attempt: int, at_least: float = 0.0) -> float:
        return max(at_least, min(self.cap, self.base * 2.0 ** max(attempt - 1, 0)))


def choose_branch(step: Step, result: bool) -> Directive:
    """The directive of a conditional: its chosen branch, gating the other's ``run``.

    A step named in the other branch's ``run`` but not in the chosen one's is skipped:
    ``then: {run: [fix]}, else: {run: [escalate]}`` is an if/else. Steps no branch
    names run as usual.
    """
    chosen = (step.then if result else step.otherwise) or Branch()
    other = (step.otherwise if result else step.then) or Branch()
    skip = (set(chosen.skip) | set(other.run)) - set(chosen.run)
    return Directive(skip=frozenset(skip), stop=chosen.stop, message=chosen.message)


def after_attempt(
    workflow: Workflow,
    step: Step,
    *,
    attempts: int,
    outcome: Outcome,
    phases: Mapping[str, StepPhase],
    backoff: Backoff,
) -> Next:
    """Decide the step's phase, retries, skips and whether the run ends here.

    ``phases`` holds the current phase of every step (before this attempt's write).
    """
    if not outcome.ok:
        if outcome.temporary and attempts <= step.retries:
            return Next(step_phase=None, retry_in=backoff.delay(attempts, outcome.delay))
        if not step.continue_on_error:
            return Next(
                step_phase=StepPhase.FAILED,
                skip=_pending_after(workflow, step, phases),
                finish=Finish(RunPhase.FAILED, error=f"step {step.name!r} failed: {outcome.error}"),
            )
        return _go_on(workflow, step, StepPhase.FAILED, None, phases)
    return _go_on(workflow, step, StepPhase.SUCCEEDED, outcome.directive, phases)


def _go_on(
    workflow: Workflow,
    step: Step,
    phase: StepPhase,
    directive: Directive | None,
    phases: Mapping[str, StepPhase],
) -> Next:
    if directive is not None and directive.stop is not None:
        finish_phase = RunPhase.SUCCEEDED if directive.stop == "succeeded" else RunPhase.FAILED
        return Next(
            step_phase=phase,
            skip=_pending_after(workflow, step, phases),
            finish=Finish(
                finish_phase,
                message=directive.message,
                error=(
                    f"stopped by step {step.name!r}: {directive.message or 'stop: failed'}"
                    if finish_phase is RunPhase.FAILED
                    else None
                ),
                stopped=True,
            ),
        )
    skip = frozenset(directive.skip) if directive is not None else frozenset()
    remaining = [
        later
        for later in workflow.steps[step.index + 1 :]
        if later.name not in skip and phases.get(later.name) not in FINISHED_STEP
    ]
    if remaining:
        return Next(step_phase=phase, skip=skip)
    failed = [
        name for name, value in {**phases, step.name: phase}.items() if value is StepPhase.FAILED
    ]
    message = (
        f"{len(failed)} step(s) failed with continueOnError: {', '.join(failed)}"
        if failed
        else None
    )
    return Next(step_phase=phase, skip=skip, finish=Finish(RunPhase.SUCCEEDED, message=message))


def _pending_after(
    workflow: Workflow, step: Step, phases: Mapping[str, StepPhase]
) -> frozenset[str]:
    return frozenset(
        later.name
        for later in workflow.steps[step.index + 1 :]
        if phases.get(later.name) not in FINISHED_STEP
    )


class Claim(enum.Enum):
    """What a delivered ``run_step`` message may do with its step."""

    RUN = "run"  # the step is ours to execute
    CONTINUE = "continue"  # already finished or skipped: let the chain go on, do nothing
    BUSY = "busy"  # a live worker is executing it: drop this duplicate
    DROP = "drop"  # the run is over (or not started): nothing after this either


def claim(
    run_phase: RunPhase,
    step_phase: StepPhase,
    lease_until: dt.datetime | None,
    now: dt.datetime,
    owner_dead: bool,
) -> Claim:
    """Decide from the stored state; the adapter then claims with a compare-and-set.

    A Running step is taken over when its lease ran out (the worker stopped
    heartbeating) or its owner is known to be dead (same host, pid gone: a SIGKILLed
    pool process whose message was redelivered at once).
    """
    if run_phase is not RunPhase.RUNNING:
        return Claim.DROP
    if step_phase in FINISHED_STEP:
        return Claim.CONTINUE
    if (
        step_phase is StepPhase.RUNNING
        and not owner_dead
        and (lease_until is not None and lease_until > now)
    ):
        return Claim.BUSY
    return Claim.RUN


def alert_status_after(finish: Finish) -> AlertStatus | None:
    """Where the run's end leaves its alert (from triaging); None: where it is.

    * a conditional stopped the run with ``stop: succeeded``: the workflow decided
      nothing needs a human (``auto-resolved``) -> resolved, ``auto_resolved``;
    * any other end leaves the alert triaging. ``escalated`` means a person was
      told, which only a delivery knows: the notifier moves the alert when a Slack
      message or a webhook for the run is delivered. A run whose Sinks tell nobody
      (stdout, none at all, all Skipped or Failed) never claimed a human's attention;
    * a run refused by a limit leaves the alert alone.
    """
    if finish.phase is RunPhase.SUCCEEDED and finish.stopped:
        return AlertStatus.RESOLVED
    return None
