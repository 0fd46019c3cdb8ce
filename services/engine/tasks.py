"""Celery adapters: take ids, load, decide with ``core``, persist, let the chain go on.

``engine.start_workflow(run_id)`` (or ``engine.start_workflows([run_id, ...])``, the
one message ingest sends per webhook) starts a Pending run and sends the chain
``engine.run_step(run_id, 0) | ... | engine.run_step(run_id, n-1)``. Each link loads
the run's context from the database, runs its step, writes the step record and the
context and commits; only when the task returns does Celery send the next link. A
link that finds its step already finished does nothing and lets the chain go on (a
redelivery after a crash between commit and ack); a link that finds the run over,
or a live worker on its step, stops its chain (a duplicate).

Each transaction is a unit of work (``shared.units``): its outbox entries (sink
deliveries) are published after it commits, and the task's id and run id are bound
to the log context, so every line logged for a task says which one.

Tasks are bound to the app in ``register(app)`` rather than with ``shared_task``:
tests and ``make run`` build several apps in one process, and a task must always send
its next link through the app (and broker) it was received from.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import sqlalchemy as sa
import tenacity
from celery import Celery, Task

from services.engine import approvals
from services.engine import metrics as engine_metrics
from services.engine.core import outcomes
from services.engine.core.outcomes import Claim, Finish, Outcome
from services.engine.runtime import Runtime, is_dead, runtime_for, worker_id
from services.engine.steps import registries
from services.engine.store import Loaded
from shared import approvals as approvals_shared
from shared import logs, units
from shared.db import engines
from shared.db.models import utcnow
from shared.domain.alerts import AlertStatus
from shared.domain.notifications import Event
from shared.domain.runs import RunPhase, StepPhase
from shared.queueing import RESUME_STEP, RUN_STEP, START_WORKFLOW, START_WORKFLOWS

log = logging.getLogger(__name__)

_T = TypeVar("_T")
# Seconds a finished step's result is kept, and its write tried again, while the
# database cannot be reached (a restart or failover takes seconds to a minute);
# between tries at most RECORD_RETRY_MAX_DELAY seconds.
RECORD_RETRY_SECONDS = 600.0
RECORD_RETRY_MAX_DELAY = 2.0


class EngineTask(Task):  # type: ignore[misc]
    """Plumbing shared by the engine's tasks: runtime, chain control, acks."""

    # Retries are decided by the step's own ``retries``, not by Celery's counter.
    max_retries = None
    # A step that dies with its worker is redelivered, not lost (see also claims).
    acks_late = True
    reject_on_worker_lost = True
    typing = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Bound for the whole task, steps and retries included (see shared.logs).
        with logs.bound(task_id=self.request.id):
            return super().__call__(*args, **kwargs)

    @property
    def runtime(self) -> Runtime:
        return runtime_for(self.app)

    def stop_chain(self) -> None:
        """Do not send the next link when this task returns."""
        self.request.chain = None


def register(app: Celery) -> None:
    app.task(name=START_WORKFLOW, base=EngineTask, bind=True)(start_workflow)
    app.task(name=START_WORKFLOWS, base=EngineTask, bind=True)(start_workflows)
    app.task(name=RUN_STEP, base=EngineTask, bind=True)(run_step)
    app.task(name=RESUME_STEP, base=EngineTask, bind=True)(resume_step)


def start_workflows(task: EngineTask, run_ids: list[str]) -> None:
    """Ingest's one message per webhook: start each run in its own transaction."""
    for run_id in run_ids:
        start_workflow(task, run_id)


def start_workflow(task: EngineTask, run_id: str) -> None:
    runtime = task.runtime
    with logs.bound(run_id=run_id):
        with runtime.units.begin() as unit:
            started = runtime.store.start(unit.session, uuid.UUID(run_id), utcnow())
            if started is None:
                log.info("start ignored: run is not Pending")
                return
            if started.alert_id is not None:
                logs.bind(alert_id=str(started.alert_id))
            unit.publish_after_commit(started.tasks)
        if started.phase is RunPhase.RUNNING:
            runtime.step_chain(run_id, 0, started.total_steps).apply_async()
            log.info("run started", extra={"steps": started.total_steps})
        else:
            # Refused at start (a Workflow limit, an unusable Workflow): it ended here.
            engine_metrics.metrics().runs_finished.labels(started.phase.value).inc()


def run_step(task: EngineTask, run_id: str, index: int) -> None:
    # ``step`` (the name) and ``alert_id`` are bound once the run is loaded.
    with logs.bound(run_id=run_id, index=index):
        _run_step(task, task.runtime, uuid.UUID(run_id), index)


def _run_step(task: EngineTask, runtime: Runtime, rid: uuid.UUID, index: int) -> None:
    me = worker_id()
    lease = runtime.settings.engine.lease_seconds
    outcome: Outcome | None = None
    with runtime.units.begin() as unit:
        now = utcnow()
        # The read and the one write of this unit go through ``unit.alone``: on
        # PostgreSQL each commits on its own, without BEGIN and COMMIT round trips
        # (the read takes no lock, so a transaction around it changes nothing).
        loaded = runtime.store.load(unit.alone, rid, index)
        if loaded is None:
            log.warning("run_step: no such run or step")
            task.stop_chain()
            return
        _bind_loaded(loaded)
        decision = outcomes.claim(
            loaded.run_phase,
            loaded.state.phase,
            loaded.state.lease_until,
            now,
            owner_dead=is_dead(loaded.state.worker),
        )
        if decision is Claim.CONTINUE:
            return
        if decision is not Claim.RUN:
            log.info("run_step: nothing to do", extra={"claim": decision.value})
            task.stop_chain()
            return
        try:
            executor: registries.StepExecutor | None = runtime.registry.get(loaded.step.type)
        except registries.StepNotAvailableError as exc:
            executor = None
            outcome = Outcome(ok=False, error=str(exc))
        attempt = loaded.state.attempts + 1
        if executor is None or executor.pure:
            # No side effects (or nothing to run): execute inside this transaction
            # and let the result's write be the claim (a compare-and-set on what
            # ``load`` saw): two statements fewer than claim, then record.
            if outcome is None:
                assert executor is not None
                outcome = registries.invoke(executor, _step_context(runtime, loaded, attempt))
            result = _record(
                runtime,
                unit,
                loaded,
                attempt=attempt,
                me=me,
                outcome=outcome,
                claimed=False,
                only_write=True,
            )
            if result[1] is None:
                log.info("run_step: claimed by another delivery")
                task.stop_chain()
                return
        elif not runtime.store.claim(unit.alone, loaded, me, now, lease):
            log.info("run_step: claimed by another delivery")
            task.stop_chain()
            return
    if outcome is None:
        assert executor is not None
        with _heartbeat(runtime, loaded.state.id, me, attempt):
            outcome = registries.invoke(executor, _step_context(runtime, loaded, attempt))
        done = outcome
        if done.ok and done.output.get("pendingApproval"):
            # A change waits for a human: the run pauses here and this chain ends;
            # ``resume_step`` carries the run on once the approval is decided.

            def pause() -> None:
                with runtime.units.begin() as unit:
                    now = utcnow()
                    approval_id = approvals.pause(
                        unit.session,
                        loaded,
                        attempt=attempt,
                        worker=me,
                        output=done.output,
                        now=now,
                    )
                    if approval_id is not None:
                        # The people who decide hear of it from the Workflow's Sinks (the
                        # Slack message with the buttons), in the pause's transaction.
                        unit.publish_after_commit(
                            runtime.store.notify(
                                unit.session,
                                loaded.run_id,
                                loaded.workflow.sinks,
                                event=Event.APPROVAL_REQUESTED,
                                event_id=str(approval_id),
                                now=now,
                            )
                        )

            _when_reachable(pause)
            task.stop_chain()
            return

        def record() -> _Result:
            with runtime.units.begin() as unit:
                return _record(
                    runtime, unit, loaded, attempt=attempt, me=me, outcome=done, only_write=True
                )

        result = _when_reachable(record)
    _after_commit(task, result)


def _when_reachable(write: Callable[[], _T]) -> _T:
    """``write()``, again and again while the database cannot be reached.

    Used for the result of a step that has done its work: failing the task would
    lose the result, and the recovery pass would run the step a second time (a
    restart, a page, a model's tokens). The step keeps its claim meanwhile (the
    record is a compare-and-set on worker and attempt), and the recovery pass gives
    claims a lease's grace after an outage (``app.Housekeeping``) so that the owner
    gets to write first. Past ``RECORD_RETRY_SECONDS`` the error is raised and the
    step is re-driven as for a lost worker.
    """
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(_database_unreachable),
        wait=tenacity.wait_exponential(multiplier=0.1, max=RECORD_RETRY_MAX_DELAY),
        stop=tenacity.stop_after_delay(RECORD_RETRY_SECONDS),
        before_sleep=_say_kept,
        reraise=True,
    )
    written = retrying(write)
    if retrying.statistics.get("attempt_number", 1) > 1:
        log.info(
            "step result written after the database came back",
            extra={"tries": retrying.statistics["attempt_number"]},
        )
    return written


def _database_unreachable(exc: BaseException) -> bool:
    return isinstance(exc, sa.exc.SQLAlchemyError) and engines.unreachable(exc)


def _say_kept(state: tenacity.RetryCallState) -> None:
    if state.attempt_number == 1:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "database unreachable; the step's result is kept until it can be written",
            extra={"error": str(getattr(exc, "orig", None) or exc)[:500]},
        )


def _bind_loaded(loaded: Loaded) -> None:
    """The step's name and its run's alert on every line from here to the task's end."""
    logs.bind(step=loaded.step.name)
    if loaded.alert_id is not None:
        logs.bind(alert_id=str(loaded.alert_id))


def resume_step(task: EngineTask, approval_id: str, run_id: str | None = None) -> None:
    """An approval was decided or expired: make the change (or not), finish the step, go on.

    ``run_id`` is for Flower and the logs (messages queued before it had none)."""
    fields = {"approval_id": approval_id} | ({"run_id": run_id} if run_id else {})
    with logs.bound(**fields):
        _resume_step(task, approval_id)


def _resume_step(task: EngineTask, approval_id: str) -> None:
    runtime = task.runtime
    me = worker_id()
    lease = runtime.settings.engine.lease_seconds
    extra = {"approval_id": approval_id, "task_id": task.request.id}
    try:
        with runtime.units.begin() as unit:
            resumed = approvals.begin(
                unit.session,
                runtime.store,
                uuid.UUID(approval_id),
                worker=me,
                now=utcnow(),
                lease=lease,
            )
    except approvals.ResumeConflictError:
        resumed = None
    if resumed is None:
        log.info("resume_step: nothing to do (decided before, or redelivered)", extra=extra)
        return
    loaded = resumed.loaded
    logs.bind(run_id=str(loaded.run_id))
    _bind_loaded(loaded)
    happened = None
    if resumed.approved:
        from services.engine.steps.agent import tool_settings

        workflow = loaded.workflow
        with _heartbeat(runtime, loaded.state.id, me, loaded.state.attempts):
            happened = approvals.apply_and_verify(
                resumed.approval["request"],
                tool_settings(workflow.runtime.tools, runtime.settings.engine.kubernetes_api_url),
                actor=str(resumed.approval["requested_by"]),
                approved_by=str(resumed.approval["decided_by"]),
                verify_timeout=float(resumed.approval["verify_timeout_seconds"]),
            )
    output = approvals.result_after(resumed, happened)
    outcome = Outcome(ok=True, output=output)
    with runtime.units.begin() as unit:
        session = unit.session
        now = utcnow()
        if happened is not None:
            status = (
                approvals_shared.Status.EXECUTED
                if happened["executed"]
                else approvals_shared.Status.FAILED
            )
            approvals.finish_approval(session, resumed.approval["id"], status, happened, now)
            unit.publish_after_commit(
                approvals_shared.change_ended(
                    session,
                    resumed.approval["id"],
                    status,
                    runtime.settings.outbox.lease_seconds,
                )
            )
            if happened.get("verified") and loaded.alert_id is not None:
                # The fix worked: the alert is resolved by the workflow.
                runtime.store.move_alert(session, loaded.alert_id, AlertStatus.RESOLVED, now)
        else:
            approvals.finish_approval(
                session,
                resumed.approval["id"],
                approvals_shared.Status(resumed.approval["status"]),
                {},
                now,
            )
        ended = None
        if happened is None:
            # Denied or expired: the run ends here, without the change, and its alert
            # goes to a human (escalated) with the investigation's result.
            ended = outcomes.Next(
                step_phase=StepPhase.SUCCEEDED,
                finish=Finish(RunPhase.SUCCEEDED, message=_not_made(resumed.approval)),
            )
        result = _record(
            runtime,
            unit,
            loaded,
            attempt=loaded.state.attempts,
            me=me,
            outcome=outcome,
            decision=ended,
        )
    if happened is None:
        log.info("run goes on without the change", extra={**extra, "run_id": str(loaded.run_id)})
    decision, tasks = result
    if tasks is None:
        log.warning("resume_step: lost the step's lease; result discarded", extra=extra)
        return
    _count_finished(decision)
    total = loaded.workflow.steps[-1].index + 1
    if decision.finish is None and loaded.step.index + 1 < total:
        runtime.step_chain(str(loaded.run_id), loaded.step.index + 1, total).apply_async()


def _not_made(approval: Any) -> str:
    if approval["status"] == approvals_shared.Status.DENIED:
        comment = f": {approval['comment']}" if approval["comment"] else ""
        return f"not made: {approval['what']} was denied by {approval['decided_by']}{comment}"
    return f"not made: nobody approved {approval['what']} in time"


def _step_context(runtime: Runtime, loaded: Loaded, attempt: int) -> registries.StepContext:
    settings = runtime.settings.engine
    return registries.StepContext(
        run_id=str(loaded.run_id),
        workflow=loaded.workflow,
        step=loaded.step,
        attempt=attempt,
        namespace=loaded.context,
        templates=runtime.templates,
        timeout=loaded.step.timeout_seconds or settings.default_step_timeout,
        output_limit=settings.output_limit_bytes,
        runners=runtime.runners,
        settings=runtime.settings,
        secrets=runtime.secret,
    )


_Result = tuple[outcomes.Next, list[Any] | None]


def _record(
    runtime: Runtime,
    unit: units.Unit,
    loaded: Loaded,
    *,
    attempt: int,
    me: str,
    outcome: Outcome,
    claimed: bool = True,
    decision: outcomes.Next | None = None,
    only_write: bool = False,
) -> _Result:
    """Decide what the attempt means and write it; its entries go out after commit.

    ``only_write``: nothing else is written in ``unit``, so a write that is one
    statement may commit on its own (``unit.alone``)."""
    decision = decision or outcomes.after_attempt(
        loaded.workflow,
        loaded.step,
        attempts=attempt,
        outcome=outcome,
        phases=loaded.phases,
        backoff=runtime.backoff,
    )
    alone = only_write and runtime.store.single_write(loaded, decision)
    tasks = runtime.store.record(
        unit.alone if alone else unit.session,
        loaded,
        attempt=attempt,
        worker=me,
        outcome=outcome,
        decision=decision,
        now=utcnow(),
        claimed=claimed,
    )
    if tasks:
        unit.publish_after_commit(tasks)
    return decision, tasks


def _after_commit(task: EngineTask, result: _Result) -> None:
    decision, tasks = result
    if tasks is None:
        # A recovery pass took the step from us (our lease ran out); its re-drive
        # carries the run on, so this chain stops here.
        log.warning("run_step: lost the step's lease; result discarded")
        task.stop_chain()
        return
    if decision.step_phase is None:
        assert decision.retry_in is not None
        raise task.retry(countdown=decision.retry_in, max_retries=None)
    if decision.finish is not None:
        _count_finished(decision)
        task.stop_chain()


def _count_finished(decision: outcomes.Next) -> None:
    """Count a run that this (committed) attempt ended."""
    if decision.finish is not None:
        engine_metrics.metrics().runs_finished.labels(decision.finish.phase.value).inc()


@contextlib.contextmanager
def _heartbeat(runtime: Runtime, step_id: uuid.UUID, me: str, attempt: int) -> Iterator[None]:
    """Extend the step's lease every third of it while the step executes."""
    lease = runtime.settings.engine.lease_seconds
    stopped = threading.Event()

    def beat() -> None:
        while not stopped.wait(lease / 3):
            try:
                with runtime.units.begin() as unit:
                    until = utcnow() + dt.timedelta(seconds=lease)
                    if not runtime.store.heartbeat(unit.session, step_id, me, attempt, until):
                        return
            except Exception:  # a missed beat is survivable; the lease has slack
                log.exception("step heartbeat failed", extra={"step_id": str(step_id)})

    thread = threading.Thread(target=beat, name="step-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopped.set()
        thread.join(timeout=5)
