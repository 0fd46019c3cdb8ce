"""``punchingfist notifier``: a Celery worker on the ``notifier`` queue.

Started like the engine's (``shared.queueing.serve_worker``): same node naming,
mingle and gossip off.
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


def serve(args: argparse.Namespace) -> int:
    config = settings.from_env()
    migrate.require_current(config.database)

    def create_app() -> Celery:
        # Imported here, after serve_worker has set the metrics folder.
        from services.notifier.app import create_app

        return create_app(config)

    return queueing.serve_worker(
        create_app,
        queue=queueing.NOTIFIER_QUEUE,
        concurrency=args.concurrency or config.notifier.concurrency,
        pool=args.pool or config.notifier.pool,
        log_level=config.log_level,
        var_dir=config.var_dir,
        metrics_bind=config.notifier.metrics_bind,
        metrics_setting="PF_NOTIFIER_METRICS_BIND",
    )
