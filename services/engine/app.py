"""The engine's Celery app: factory and wiring.

``create_app(settings)`` builds the app from the shared factory (JSON only, stable
names, one queue per deployable) and registers the engine's tasks. What the tasks
use per process is the ``Runtime`` (``services.engine.runtime``), which this module
imports like the tasks do; the tasks never import this module.

The worker's main process also runs two housekeeping threads (``worker_ready``):
the recovery pass, which re-drives steps whose worker died and runs whose chain
message was lost and expires approvals nobody decided in time, and the outbox relay,
which publishes sink deliveries that could not be published right after commit.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
import uuid

from celery import Celery

from services.engine import approvals as engine_approvals
from services.engine import tasks
from services.engine.runtime import Runtime, is_dead, runtime_for
from shared import approvals, metrics, outbox, queueing
from shared.db import engines
from shared.db.models import utcnow
from shared.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings, runtime: Runtime | None = None) -> Celery:
    """The engine's Celery app; ``runtime`` lets tests inject registries and runners."""
    app = queueing.make_worker_celery(settings, name="punchingfist-engine")
    app.pf_settings = settings
    if runtime is not None:
        app.pf_runtime = runtime
    tasks.register(app)
    metrics.instrument_tasks()
    queueing.on_worker_ready(app, lambda: _start_housekeeping(app))
    return app


def _start_housekeeping(app: Celery) -> None:
    runtime = runtime_for(app)
    Housekeeping(runtime).start()
    settings = runtime.settings
    outbox.Relay(
        lambda: outbox.relay_once(
            runtime.session_factory,
            runtime.publisher,
            batch_size=settings.outbox.batch_size,
            lease_seconds=settings.outbox.lease_seconds,
        ),
        settings.outbox.relay_interval,
    ).start()


class Housekeeping(threading.Thread):
    """Re-drives abandoned steps and stalled runs, once at start and then periodically.

    After a pass failed because the database could not be reached, leases are not
    trusted for one lease's length: no owner could renew its lease during the outage,
    and a worker holding a finished step's result (``tasks._when_reachable``) must
    get to write it before the step is taken from it and run again. Steps whose
    owner is known to be dead are released at once as always. Every worker's pass
    fails during an outage longer than the recovery interval, which is shorter than
    a lease, so every worker sees the outage that matters.
    """

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(name="engine-recovery", daemon=True)
        self._runtime = runtime
        self._stopped = threading.Event()
        # Monotonic time before which leases are not trusted; inf during an outage.
        self._leases_trusted_at = 0.0

    def run(self) -> None:
        interval = self._runtime.settings.engine.recovery_interval
        lease = self._runtime.settings.engine.lease_seconds
        while True:
            outage = math.isinf(self._leases_trusted_at)
            try:
                recover_once(
                    self._runtime, trust_leases=time.monotonic() >= self._leases_trusted_at
                )
            except Exception as exc:  # the thread must outlive a database hiccup
                if engines.unreachable(exc):
                    self._leases_trusted_at = math.inf
                log.exception("engine recovery pass failed")
            else:
                if outage:
                    self._leases_trusted_at = time.monotonic() + lease
                    log.info(
                        "database reachable again; expired leases honoured after one lease",
                        extra={"lease_seconds": lease},
                    )
            if self._stopped.wait(interval):
                return

    def stop(self) -> None:
        self._stopped.set()


def recover_once(
    runtime: Runtime, now: dt.datetime | None = None, *, trust_leases: bool = True
) -> int:
    """One recovery pass; returns how many chains were re-driven."""
    now = now or utcnow()
    engine_settings = runtime.settings.engine
    # What the cluster shows of each change lost mid-way, read before the transaction
    # that records them (API calls must not hold it open).
    with runtime.session_factory() as session:
        lost = runtime.store.interrupted_changes(session, now, is_dead, trust_leases=trust_leases)
        changes = engine_approvals.lost_changes(session, [found[0] for found in lost])
    traces = engine_approvals.lost_change_traces(changes, engine_settings.kubernetes_api_url)
    with runtime.units.begin() as unit:
        todo = runtime.store.release_abandoned(
            unit.session, now, is_dead, trust_leases=trust_leases
        )
        # Changes whose worker was lost mid-way: never made again, the step fails.
        for found in runtime.store.interrupted_changes(
            unit.session, now, is_dead, trust_leases=trust_leases
        ):
            resolved = engine_approvals.interrupted(
                unit.session,
                runtime.store,
                found,
                now=now,
                backoff=runtime.backoff,
                traces=traces.get(found[0]),
            )
            if resolved is None:
                continue
            decision, finished = resolved
            unit.publish_after_commit(finished)
            # The messages that asked for the change say that a person must check.
            unit.publish_after_commit(
                approvals.change_ended(
                    unit.session,
                    found[0],
                    approvals.Status.UNKNOWN,
                    runtime.settings.outbox.lease_seconds,
                )
            )
            if decision.finish is None:  # continueOnError: the run goes on
                todo.append((found[1], found[2] + 1))
        todo += runtime.store.stalled(unit.session, now, engine_settings.stall_seconds)
        starts = runtime.store.forgotten_starts(unit.session, now, engine_settings.stall_seconds)
        # Approvals nobody decided in time: denied by expiry (resume_step ends the run).
        expired = approvals.expire(
            unit.session, now, outbox_lease_seconds=runtime.settings.outbox.lease_seconds
        )
        unit.publish_after_commit(expired)
    for run_id, index in todo:
        total = _total_steps(runtime, run_id)
        log.warning("re-driving run from step", extra={"run_id": str(run_id), "index": index})
        runtime.step_chain(str(run_id), index, total).apply_async()
    for run_id in starts:
        # start_workflow acts only on a Pending run, so a start that was merely slow
        # and arrives as well does nothing twice.
        log.warning("re-sending the start of a forgotten run", extra={"run_id": str(run_id)})
        runtime.app.send_task(queueing.START_WORKFLOW, args=[str(run_id)])
    return len(todo) + len(starts) + len(expired)


def _total_steps(runtime: Runtime, run_id: uuid.UUID) -> int:
    from shared.db.models import WorkflowRun

    with runtime.session_factory() as session:
        run = session.get(WorkflowRun, run_id)
        return run.total_steps if run is not None else 0
