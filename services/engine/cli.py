"""``punchingfist engine`` and ``punchingfist scheduler``.

``engine`` runs a Celery worker on the ``engine`` queue, started like the
notifier's (``shared.queueing.serve_worker``). ``scheduler`` starts Workflows of
schedule Sources on their cron ticks, once per tick whatever the number of replicas.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from celery import Celery

from shared import queueing, settings
from shared.db import migrate

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


def serve(args: argparse.Namespace) -> int:
    config = settings.from_env()
    migrate.require_current(config.database)

    def create_app() -> Celery:
        # Imported here, after serve_worker has set the metrics folder.
        from services.engine.app import create_app

        return create_app(config)

    return queueing.serve_worker(
        create_app,
        queue=queueing.ENGINE_QUEUE,
        concurrency=args.concurrency or config.engine.concurrency,
        pool=args.pool or config.engine.pool,
        log_level=config.log_level,
        var_dir=config.var_dir,
        metrics_bind=config.engine.metrics_bind,
        metrics_setting="PF_ENGINE_METRICS_BIND",
    )


def schedule(args: argparse.Namespace) -> int:
    from services.engine import scheduler

    config = settings.from_env()
    migrate.require_current(config.database)
    return scheduler.run_forever(config)
