"""``punchingfist``: one command line for every deployable.

Each service contributes its subcommands through a ``cli`` module with
``register(subparsers)``; this module only collects them, and ``run`` starts every
deployable that exists as child processes on the embedded default.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from shared import commands, queueing, settings
from shared.errors import WorkerNotAliveError

log = logging.getLogger("punchingfist")

# Modules with a register(subparsers) function; each adds its own subcommands.
COMMAND_MODULES = (
    "services.controller.cli",
    "services.ingest.cli",
    "services.engine.cli",
    "services.notifier.cli",
)

# What `punchingfist run` starts, in order: (name, argv after `punchingfist`).
# Each entry is a deployable that exists; later issues append theirs.
RUN_COMPONENTS: tuple[tuple[str, Sequence[str]], ...] = (
    # First: it loads $PF_CONFIG_DIR into the database the others read.
    ("controller", ("controller",)),
    ("ingest", ("ingest",)),
    ("engine", ("engine",)),
    ("scheduler", ("scheduler",)),
    ("notifier", ("notifier",)),
)


def _migrate(args: argparse.Namespace) -> int:
    from shared.db import migrate
    from shared.db.engines import make_engine

    config = settings.from_env()
    engine = make_engine(config.database)
    before = migrate.current_revision(engine)
    migrate.upgrade(engine)
    log.info(
        "database migrated",
        extra={"from": before, "to": migrate.current_revision(engine), "url": _safe(config)},
    )
    return 0


# The Celery workers a liveness check can ask: subcommand -> its queue (node name).
WORKER_QUEUES = {"engine": queueing.ENGINE_QUEUE, "notifier": queueing.NOTIFIER_QUEUE}


def _healthcheck(args: argparse.Namespace) -> int:
    """Exit 0 when this host's worker answers a ping, else 1 with one line saying why."""
    config = settings.from_env()
    node = args.node or queueing.node_name(WORKER_QUEUES[args.worker])
    try:
        queueing.ping_worker(config, node, args.timeout)
    except WorkerNotAliveError as exc:
        print(f"punchingfist healthcheck: {exc}", file=sys.stderr)
        return 1
    return 0


def _safe(config: settings.Settings) -> str:
    import sqlalchemy as sa

    return sa.make_url(config.database.url).render_as_string(hide_password=True)


def _run(args: argparse.Namespace) -> int:
    """Start every deployable as a child process and stop them all together."""
    env = dict(os.environ)
    if args.config_dir:
        env["PF_CONFIG_DIR"] = str(Path(args.config_dir).resolve())
    if args.bind:
        env["PF_INGEST_BIND"] = args.bind
    config = settings.from_env(env)
    # Create the schema once, before any component (and gunicorn) forks.
    _migrate(args)
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    exit_code = 0
    with tempfile.TemporaryDirectory(prefix="punchingfist-run-") as scratch:
        ready_file = Path(scratch) / "controller.ready"
        for name, component_argv in RUN_COMPONENTS:
            argv = [*_ARGV0, *component_argv]
            if name == "controller":
                argv += ["--ready-file", str(ready_file)]
            child = subprocess.Popen(argv, env=env)
            children.append((name, child))
            log.info("started", extra={"component": name, "pid": child.pid})
            if name == "controller" and not _wait_ready(child, ready_file, lambda: stopping):
                # Stopped, or the controller failed; its exit is reported below.
                break
        else:
            log.info(
                "punching fist is running",
                extra={"ingest": f"http://{config.ingest.bind}", "database": _safe(config)},
            )
        while True:
            for name, child in children:
                code = child.poll()
                if code is not None and not stopping:
                    log.error(
                        "component exited; stopping the rest",
                        extra={"component": name, "code": code},
                    )
                    exit_code = code or 1
                    stopping = True
            if stopping:
                break
            time.sleep(0.2)
        _stop_all(children)
    return exit_code


_ARGV0 = (sys.executable, "-m", "services.cli")


def _wait_ready(
    controller: subprocess.Popen[bytes], ready_file: Path, stopping: Callable[[], bool]
) -> bool:
    """Wait until the controller has stored the resources: ingest then serves them
    from its first request (before this wait, webhooks right after start were 404)."""
    while not ready_file.exists():
        if stopping() or controller.poll() is not None:
            return False
        time.sleep(0.05)
    return True


def _stop_all(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _name, child in children:
        if child.poll() is None:
            child.terminate()
    for name, child in children:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            log.warning("component did not stop in time; killed", extra={"component": name})
            child.kill()
            child.wait()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="punchingfist",
        description=(
            "Incident response for Kubernetes: receives AlertManager webhooks, runs "
            "investigation workflows, reports the results. Settings come from PF_* "
            "environment variables (see README)."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="every deployable in one go on the embedded default (SQLite, no services)",
        description="Start every deployable as child processes; Ctrl-C stops them all.",
    )
    run.add_argument(
        "--config-dir",
        metavar="DIR",
        help="folder of Source/Workflow/Sink YAML files (default: $PF_CONFIG_DIR)",
    )
    run.add_argument(
        "--bind",
        metavar="HOST:PORT",
        help="ingest API address (default: $PF_INGEST_BIND, else 127.0.0.1:8080)",
    )
    run.set_defaults(handler=_run)

    migrate = sub.add_parser(
        "migrate",
        help="bring $PF_DATABASE_URL to the newest schema",
        description="Run the Alembic migrations up to head on $PF_DATABASE_URL.",
    )
    migrate.set_defaults(handler=_migrate)

    healthcheck = sub.add_parser(
        "healthcheck",
        help="liveness of this host's engine or notifier worker (exit 0: it answered)",
        description=(
            "Ask the local Celery worker (node <queue>@<hostname>, as the worker names "
            "itself) over $PF_BROKER_URL to answer a ping. Exit 0 when it does; exit 1 "
            "with one line saying why when it does not (no answer, broker unreachable). "
            "The livenessProbe of the k8s Deployments and the compose healthchecks."
        ),
    )
    healthcheck.add_argument("worker", choices=sorted(WORKER_QUEUES), help="which worker")
    healthcheck.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the answer (default: 10)",
    )
    healthcheck.add_argument(
        "--node", metavar="NAME", help="ask this node instead (default: <worker>@<this host>)"
    )
    healthcheck.set_defaults(handler=_healthcheck)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return commands.run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
