"""``punchingfist engine`` and ``punchingfist scheduler``.

``engine`` runs a Celery worker on the ``engine`` queue. Mingle and gossip are off:
they make a starting worker wait about a second for its peers, and the engine
needs nothing from them (the database holds all state). ``scheduler`` starts
Workflows of schedule Sources on their cron ticks, once per tick whatever the number
of replicas.
"""

from __future__ import annotations

import argparse
import gc
import logging
from typing import Any

from shared import multiprocess, settings
from shared.errors import ConfigError
from shared.queueing import ENGINE_QUEUE

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    engine = subparsers.add_parser(
        "engine",
        help="the workflow engine: a Celery worker on the 'engine' queue",
        description=(
            "Run Workflow steps as chained Celery tasks. Settings: PF_ENGINE_* (pool, "
            "concurrency, timeouts, retries, leases), PF_BROKER_URL, PF_DATABASE_URL."
        ),
    )
    engine.add_argument(
        "--concurrency", type=int, metavar="N", help="pool size (default: $PF_ENGINE_CONCURRENCY)"
    )
    engine.add_argument(
        "--pool",
        choices=("prefork", "threads", "solo"),
        help="Celery pool (default: $PF_ENGINE_POOL or prefork)",
    )
    engine.set_defaults(handler=serve)
    scheduler = subparsers.add_parser(
        "scheduler",
        help="start the Workflows of schedule Sources on their cron ticks",
        description="Fire each schedule Source's cron ticks, once per tick across replicas.",
    )
    scheduler.set_defaults(handler=schedule)


def _check_schema(config: settings.Settings) -> None:
    from shared.db import migrate
    from shared.db.engines import make_engine

    engine = make_engine(config.database)
    try:
        if not migrate.is_current(engine):
            raise ConfigError(
                f"the database is at revision {migrate.current_revision(engine)}, not "
                f"{migrate.head_revision()}: run `punchingfist migrate` first"
            )
    finally:
        engine.dispose()


def serve(args: argparse.Namespace) -> int:
    config = settings.from_env()
    _check_schema(config)
    bind = config.engine.metrics_bind
    # Before the app (and prometheus_client) is imported: see shared.multiprocess.
    folder = multiprocess.use_folder(config.var_dir, "engine") if bind else None
    from services.engine.app import create_app

    app = create_app(config)
    if bind:
        from shared import metrics

        metrics.serve(bind, metrics.worker_registry(app, [ENGINE_QUEUE]), "PF_ENGINE_METRICS_BIND")
    argv = [
        "worker",
        "--queues",
        ENGINE_QUEUE,
        "--hostname",
        "engine@%h",
        "--concurrency",
        str(args.concurrency or config.engine.concurrency),
        "--pool",
        args.pool or config.engine.pool,
        "--loglevel",
        config.log_level,
        "--without-mingle",
        "--without-gossip",
    ]
    log.info("engine worker starting", extra={"argv": argv})
    _freeze_imported_objects()
    try:
        app.worker_main(argv)
    finally:
        if folder is not None:
            multiprocess.remove_folder(folder)
    return 0


def _freeze_imported_objects() -> None:
    """Move what the imports built out of the garbage collector's sight before forking.

    Celery's prefork pool runs a full ``gc.collect()`` before forking each pool
    process (celery issue #2927); over the ~100,000 objects that Celery,
    SQLAlchemy and the engine leave behind that is 65-130 ms per process, so
    several hundred ms of every worker start with 4 processes. Frozen objects are
    skipped by every later collection (here and in the forked children, which
    also copy fewer pages because collections no longer write to them); the
    ``collect`` first means nothing collectable is frozen, so nothing is leaked.
    This is what the ``gc.freeze`` documentation recommends before fork.
    """
    gc.collect()
    gc.freeze()


def schedule(args: argparse.Namespace) -> int:
    from services.engine import scheduler

    config = settings.from_env()
    _check_schema(config)
    return scheduler.run_forever(config)
