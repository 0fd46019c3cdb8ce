"""``punchingfist scheduler``: start the Workflows of schedule Sources on their ticks.

Every pass reads the schedule Sources from the store and, for each one whose cron
tick is due, inserts in one transaction: the tick (unique per Source and instant),
a Pending run (trigger "schedule") and its ``engine.start_workflow`` outbox entry.
A replica that loses the race on the tick's unique key rolls its savepoint back and
starts nothing, so a tick starts one run however many schedulers run. The engine
then treats the run like any other (limits, steps, sinks).

The run's context has ``source`` (name, namespace, context) and ``schedule``
(tick, cron, timezone); there is no ``alert``.

The scheduler process also runs the retention pass (``shared.retention``) in a
thread of its own, and serves ``/metrics`` on ``PF_SCHEDULER_METRICS_BIND``: ticks
started and taken by Source, errors, and when the last pass completed, which is how
a stalled scheduler shows (it starts nothing and, stuck, logs nothing).
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
import time
import uuid
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from services.engine import metrics as engine_metrics
from services.engine.core import schedules
from shared import outbox, queueing, retention, units
from shared.db import resources
from shared.db.engines import make_engine, make_session_factory
from shared.db.models import ScheduleTick, WorkflowRun, utcnow
from shared.domain import runs
from shared.errors import ConfigError
from shared.settings import Settings

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        publisher: queueing.Publisher | None,
        *,
        outbox_lease: float,
        metrics: engine_metrics.SchedulerMetrics | None = None,
    ) -> None:
        self._sessions = session_factory
        # publisher None: the engine's relay sends the start when its lease runs out.
        self._units = units.Units(session_factory, publisher)
        self._outbox_lease = outbox_lease
        self.metrics = metrics or engine_metrics.scheduler_metrics()
        # The last tick this replica claimed (or found taken) per Source. A tick stays
        # due for a minute of passes; without this, every pass of that minute would
        # try to insert it again only to hit the unique key, and the ticks counted
        # as taken would be this replica's own.
        self._decided: dict[tuple[str, str], dt.datetime] = {}

    def run_pass(self, now: dt.datetime | None = None) -> list[uuid.UUID]:
        """Start every due tick this replica wins; returns the runs it created."""
        now = now or utcnow()
        with self._sessions() as session:
            sources = [
                (namespace, name, spec)
                for namespace, name, spec in resources.list_specs(session, "Source")
                if spec.get("type") == "schedule" and spec.get("triggerWorkflow")
            ]
        started = []
        for namespace, name, spec in sources:
            config = spec.get("config") or {}
            try:
                tick = schedules.due_tick(
                    str(config.get("cron", "")), str(config.get("timezone") or "UTC"), now
                )
            except ConfigError as exc:
                self.metrics.errors.labels(type(exc).__name__).inc()
                log.warning(
                    "schedule Source skipped",
                    extra={"source": f"{namespace}/{name}", "error": str(exc)},
                )
                continue
            if tick is None or self._decided.get((namespace, name)) == tick:
                continue
            run_id = self._claim(namespace, name, spec, tick, now)
            self._decided[(namespace, name)] = tick
            result = engine_metrics.TAKEN if run_id is None else engine_metrics.STARTED
            self.metrics.ticks.labels(namespace, name, result).inc()
            if run_id is not None:
                started.append(run_id)
        # Sources that went away are forgotten.
        names = {(namespace, name) for namespace, name, _spec in sources}
        self._decided = {key: tick for key, tick in self._decided.items() if key in names}
        self.metrics.last_success.set(time.time())
        return started

    def _claim(
        self, namespace: str, name: str, spec: dict[str, Any], tick: dt.datetime, now: dt.datetime
    ) -> uuid.UUID | None:
        config = spec.get("config") or {}
        run = runs.new_pending_run(
            workflow=spec["triggerWorkflow"],
            namespace=namespace,
            source=name,
            source_context=spec.get("context") or {},
            now=now,
            schedule={
                "tick": tick.isoformat(),
                "cron": config.get("cron"),
                "timezone": config.get("timezone") or "UTC",
            },
        )
        run_id = run.id
        source = f"{namespace}/{name}"
        with self._units.begin(source=source, tick=tick.isoformat(), run_id=str(run_id)) as unit:
            session = unit.session
            try:
                with session.begin_nested():
                    session.execute(
                        sa.insert(cast(sa.Table, ScheduleTick.__table__)).values(
                            source_namespace=namespace,
                            source_name=name,
                            tick_at=tick,
                            run_id=run_id,
                            created_at=now,
                        )
                    )
            except sa.exc.IntegrityError:
                return None  # another replica (or an earlier pass) has this tick
            session.execute(sa.insert(cast(sa.Table, WorkflowRun.__table__)).values(run.row()))
            unit.publish_after_commit(
                outbox.add(
                    session,
                    [(queueing.START_WORKFLOW, queueing.ENGINE_QUEUE, [str(run_id)])],
                    self._outbox_lease,
                )
            )
        log.info(
            "schedule tick started a run",
            extra={"source": source, "tick": tick.isoformat(), "run_id": str(run_id)},
        )
        return run_id


def run_forever(config: Settings) -> int:
    """Run passes every ``PF_SCHEDULER_INTERVAL`` seconds until SIGTERM/SIGINT."""
    engine = make_engine(config.database)
    sessions = make_session_factory(engine)
    app = queueing.make_celery(config, name="punchingfist-scheduler")
    scheduler = Scheduler(
        sessions,
        queueing.Publisher(app, config.broker.publish_backoff),
        outbox_lease=config.outbox.lease_seconds,
    )
    stopped = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    bind = config.engine.scheduler_metrics_bind
    server = engine_metrics.serve_scheduler(bind) if bind else None
    # Old finished records go in the same process, so that `punchingfist run` has it.
    retention.start(engine, config.retention, stopped)
    log.info("scheduler running", extra={"interval": config.engine.scheduler_interval})
    while not stopped.wait(config.engine.scheduler_interval):
        try:
            scheduler.run_pass()
        except Exception as exc:  # a database hiccup must not stop the schedule
            scheduler.metrics.errors.labels(type(exc).__name__).inc()
            log.exception("scheduler pass failed")
    if server is not None:
        server.shutdown()
        server.server_close()
    engine.dispose()
    return 0
