"""``punchingfist ingest``: the ingest API under gunicorn.

Workers are ``services.ingest.workers`` (gunicorn's threaded worker that reads each
request whole in its event loop before one request thread runs it): a client that
sends slowly holds a socket for at most ``PF_INGEST_READ_TIMEOUT`` seconds, never a
worker. One request at a time per worker process, as with the sync workers before,
because SQLite serialises writers anyway. The schema is migrated once in the master
before workers fork; each worker runs an outbox relay thread so that work accepted
while the broker was down is published when it is back.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from typing import Any

from shared import settings

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ingest",
        help="the AlertManager webhook API (gunicorn)",
        description=(
            "Serve the ingest API: POST webhooks on each Source's path, the read API "
            "under /api/v1, /healthz, /readyz and /metrics."
        ),
    )
    parser.add_argument(
        "--bind",
        metavar="HOST:PORT",
        help="address to listen on (default: $PF_INGEST_BIND or 127.0.0.1:8080)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes, one request at a time each (default: $PF_INGEST_WORKERS or 2)",
    )
    parser.set_defaults(handler=serve)


def serve(args: argparse.Namespace) -> int:
    config = settings.from_env()
    bind = args.bind or config.ingest.bind
    workers = args.workers or config.ingest.workers
    if workers < 1:
        parser_error = f"--workers must be at least 1, got {workers}"
        raise SystemExit(parser_error)

    from services.ingest.tokens import load_api_token, load_slack_signing_secret

    # Checked here, once, so that an unusable token file stops the command with its
    # message instead of failing every gunicorn worker's boot.
    if load_api_token(config.ingest.api_token_file) is None:
        log.warning(
            "read API disabled: /api/v1 answers 403 until PF_API_TOKEN_FILE names a token file"
        )
    if load_slack_signing_secret(config.ingest.slack_signing_secret_file) is None:
        log.info(
            "Slack interactions disabled: /slack/interactions answers 403 until "
            "PF_SLACK_SIGNING_SECRET_FILE names the app's signing secret"
        )

    from shared.db import migrate
    from shared.db.engines import make_engine

    engine = make_engine(config.database)
    migrate.upgrade(engine)
    engine.dispose()

    # prometheus_client picks its multiprocess value class at import, so the folder
    # must be set before any worker imports it.
    metrics_dir = config.var_dir / "metrics" / f"ingest-{os.getpid()}"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    from gunicorn import glogging
    from gunicorn.app.base import BaseApplication

    from services.ingest import workers as ingest_workers

    worker_class = ingest_workers.worker_class(
        read_timeout=config.ingest.read_timeout, max_body_bytes=config.ingest.max_body_bytes
    )

    class RootLogger(glogging.Logger):  # type: ignore[misc]
        """gunicorn's own lines (workers booting, timeouts) through the root handler,
        so that they are formatted like every other line (JSON by default) instead
        of by gunicorn's text handler on the same stderr."""

        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for gunicorn_log in (self.error_log, self.access_log):
                for handler in list(gunicorn_log.handlers):
                    gunicorn_log.removeHandler(handler)
                gunicorn_log.propagate = True

    class IngestServer(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", [bind])
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", worker_class)
            # One request thread: the request path is written for one request at a
            # time per process (the sync workers' model); the event loop does the
            # waiting on clients.
            self.cfg.set("threads", 1)
            # Every request on a new connection, buffered whole before it runs.
            self.cfg.set("keepalive", 0)
            self.cfg.set("timeout", 60)
            self.cfg.set("graceful_timeout", 20)
            self.cfg.set("post_worker_init", _post_worker_init)
            self.cfg.set("child_exit", _child_exit)
            self.cfg.set("worker_exit", _worker_exit)
            self.cfg.set("proc_name", "punchingfist-ingest")
            self.cfg.set("logger_class", RootLogger)
            # gunicorn 23+ opens a control socket for gunicornc at one path per user
            # ($HOME/.gunicorn/gunicorn.ctl), shared by every instance on the machine.
            # Nothing here uses it; the arbiter is driven by signals.
            self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            from services.ingest.app import create_app

            return create_app(settings.from_env(), multiprocess_metrics=True)

    log.info(
        "ingest starting",
        extra={"bind": bind, "workers": workers, "read_timeout": config.ingest.read_timeout},
    )
    arbiter_pid = os.getpid()
    try:
        IngestServer().run()
    finally:
        # The arbiter leaves by sys.exit: without the finally the folder stayed. A
        # worker is a fork of this frame and leaves by sys.exit too: only the arbiter
        # removes the folder, or the first worker to exit took it from the others
        # (one still booting then failed on the missing folder).
        if os.getpid() == arbiter_pid:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _post_worker_init(worker: Any) -> None:
    from services.ingest.state import EXTENSION

    ingest_state = worker.wsgi.extensions[EXTENSION]
    ingest_state.start_background_publisher()
    ingest_state.start_relay()


def _worker_exit(_server: Any, worker: Any) -> None:
    """Write the batched publish marks before the worker goes (else: resent later)."""
    from services.ingest.state import EXTENSION

    # A worker that left while booting has no application.
    wsgi = getattr(worker, "wsgi", None)
    ingest_state = wsgi.extensions[EXTENSION] if wsgi else None
    if ingest_state is not None:
        if ingest_state.background is not None:
            ingest_state.background.stop()
            ingest_state.background.join(timeout=5)
        try:
            ingest_state.published.flush(ingest_state.sessions)
        except Exception:  # a dying worker must not hang on the store
            log.exception("could not mark published outbox entries on exit")


def _child_exit(_server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
