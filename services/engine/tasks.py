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
from collections.abc import Iterator
from typing import Any

from celery import Celery, Task

from services.engine.core import outcomes
from services.engine.core.outcomes import Claim, Outcome
from services.engine.runtime import Runtime, is_dead, runtime_for, worker_id
from services.engine.steps import registries
from services.engine.store import Loaded
from shared import logs, units
from shared.db.models import utcnow
from shared.domain.runs import RunPhase
from shared.queueing import RUN_STEP, START_WORKFLOW, START_WORKFLOWS

log = logging.getLogger(__name__)


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
            unit.publish_after_commit(started.tasks)
        if started.phase is RunPhase.RUNNING:
            runtime.step_chain(run_id, 0, started.total_steps).apply_async()
            log.info("run started", extra={"steps": started.total_steps})


def run_step(task: EngineTask, run_id: str, index: int) -> None:
    with logs.bound(run_id=run_id, index=index):
        _run_step(task, task.runtime, uuid.UUID(run_id), index)


def _run_step(task: EngineTask, runtime: Runtime, rid: uuid.UUID, index: int) -> None:
    me = worker_id()
    lease = runtime.settings.engine.lease_seconds
    outcome: Outcome | None = None
    with runtime.units.begin() as unit:
        now = utcnow()
        loaded = runtime.store.load(unit.session, rid, index)
        if loaded is None:
            log.warning("run_step: no such run or step")
            task.stop_chain()
            return
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
                runtime, unit, loaded, attempt=attempt, me=me, outcome=outcome, claimed=False
            )
            if result[1] is None:
                log.info("run_step: claimed by another delivery")
                task.stop_chain()
                return
        elif not runtime.store.claim(unit.session, loaded, me, now, lease):
            log.info("run_step: claimed by another delivery")
            task.stop_chain()
            return
    if outcome is None:
        assert executor is not None
        with _heartbeat(runtime, loaded.state.id, me, attempt):
            outcome = registries.invoke(executor, _step_context(runtime, loaded, attempt))
        with runtime.units.begin() as unit:
            result = _record(runtime, unit, loaded, attempt=attempt, me=me, outcome=outcome)
    _after_commit(task, result)


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
) -> _Result:
    """Decide what the attempt means and write it; its entries go out after commit."""
    decision = outcomes.after_attempt(
        loaded.workflow,
        loaded.step,
        attempts=attempt,
        outcome=outcome,
        phases=loaded.phases,
        backoff=runtime.backoff,
    )
    tasks = runtime.store.record(
        unit.session,
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
        task.stop_chain()


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
