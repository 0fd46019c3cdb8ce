"""``punchingfist notifier``: a Celery worker on the ``notifier`` queue.

Mingle and gossip are off, as in the engine: they make a starting worker wait for
its peers and the notifier needs nothing from them (the database holds all state).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from shared import multiprocess, settings
from shared.errors import ConfigError
from shared.queueing import NOTIFIER_QUEUE

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    notifier = subparsers.add_parser(
        "notifier",
        help="deliver run results to Sinks: a Celery worker on the 'notifier' queue",
        description=(
            "Send each finished run's result to its Workflow's Sinks (Slack, AlertManager, "
            "stdout, webhooks), once, and update Slack threads and silences when alerts "
            "resolve. Settings: PF_NOTIFIER_* (pool, concurrency, timeouts, retries, "
            "circuit breaker), PF_PUBLIC_URL, PF_BROKER_URL, PF_DATABASE_URL, PF_SECRETS_DIR."
        ),
    )
    notifier.add_argument(
        "--concurrency", type=int, metavar="N", help="pool size (default: $PF_NOTIFIER_CONCURRENCY)"
    )
    notifier.add_argument(
        "--pool", choices=("prefork", "solo"), help="Celery pool (default: $PF_NOTIFIER_POOL)"
    )
    notifier.set_defaults(handler=serve)


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
    bind = config.notifier.metrics_bind
    # Before the app (and prometheus_client) is imported: see shared.multiprocess.
    folder = multiprocess.use_folder(config.var_dir, "notifier") if bind else None
    from services.notifier.app import create_app

    app = create_app(config)
    if bind:
        from shared import metrics

        registry = metrics.worker_registry(app, [NOTIFIER_QUEUE])
        metrics.serve(bind, registry, "PF_NOTIFIER_METRICS_BIND")
    argv = [
        "worker",
        "--queues",
        NOTIFIER_QUEUE,
        "--hostname",
        "notifier@%h",
        "--concurrency",
        str(args.concurrency or config.notifier.concurrency),
        "--pool",
        args.pool or config.notifier.pool,
        "--loglevel",
        config.log_level,
        "--without-mingle",
        "--without-gossip",
    ]
    log.info("notifier worker starting", extra={"argv": argv})
    try:
        app.worker_main(argv)
    finally:
        if folder is not None:
            multiprocess.remove_folder(folder)
    return 0
