"""Wiring of the controller: settings in, a running controller out.

``run_files`` is file mode (``--config-dir``), ``run_kubernetes`` the kopf operator.
Both build the same Reconciler over the configured database; they differ in where
resources come from and in how secret references are checked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from services.controller import handlers
from services.controller import metrics as controller_metrics
from services.controller import secrets as secret_checks
from services.controller.configdir import ConfigDirectory
from services.controller.reconciler import Reconciler
from shared import kube
from shared.db.engines import make_engine, make_session_factory
from shared.resources import checks
from shared.settings import Settings

log = logging.getLogger(__name__)


def make_reconciler(config: Settings, secret_check: checks.SecretCheck, mode: str) -> Reconciler:
    engine = make_engine(config.database)
    return Reconciler(make_session_factory(engine), secret_check, mode=mode)


@contextlib.contextmanager
def _metrics_served(config: Settings) -> Iterator[None]:
    """/metrics on PF_CONTROLLER_METRICS_BIND (when set) while the controller runs."""
    if not config.controller.metrics_bind:
        yield
        return
    server = controller_metrics.serve(config.controller.metrics_bind)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def _stop_on_signals(stop: threading.Event) -> None:
    def handle(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _mark_ready(ready_file: Path | None) -> None:
    """Create ``ready_file``: the resources are stored (``punchingfist run`` waits for it)."""
    if ready_file is not None:
        ready_file.write_text(f"{os.getpid()}\n")
        log.info("controller ready", extra={"ready_file": str(ready_file)})


def run_files(
    config: Settings,
    directory: Path,
    stop: threading.Event | None = None,
    ready_file: Path | None = None,
) -> int:
    """File mode until ``stop`` is set (or SIGTERM/SIGINT when run as the process).

    ``ready_file`` is created once the first pass over the folder is stored.
    """
    reconciler = make_reconciler(
        config, secret_checks.folder_check(config.secrets_dir), controller_metrics.FILES
    )
    watcher = ConfigDirectory(reconciler, directory)
    if stop is None:
        stop = threading.Event()
        _stop_on_signals(stop)
    log.info(
        "controller started (file mode)",
        extra={"dir": str(directory), "secrets_dir": str(config.secrets_dir)},
    )
    with _metrics_served(config):
        watcher.run(
            stop,
            poll_interval=config.controller.poll_interval,
            refresh_interval=config.controller.status_interval,
            synced=lambda: _mark_ready(ready_file),
        )
    log.info("controller stopped")
    return 0


def run_kubernetes(
    config: Settings,
    *,
    standalone: bool = False,
    stop_flag: Any = None,
    ready_flag: Any = None,
    secret_check: checks.SecretCheck | None = None,
    ready_file: Path | None = None,
) -> int:
    """The kopf operator until it is stopped (signals, or ``stop_flag`` when embedded).

    ``ready_file`` is created when kopf reports the operator ready.
    """
    import kopf

    if ready_file is not None:
        flag = ready_flag if ready_flag is not None else threading.Event()
        ready_flag = flag

        def mark_when_ready() -> None:
            flag.wait()
            _mark_ready(ready_file)

        threading.Thread(target=mark_when_ready, name="ready-file", daemon=True).start()

    controller = config.controller
    api = None
    if secret_check is None:
        api = secret_checks.kubernetes_api()
        secret_check = secret_checks.kubernetes_check(api)
    reconciler = make_reconciler(config, secret_check, controller_metrics.KUBERNETES)
    # Equal priorities make kopf freeze every replica; a random one lets exactly one
    # (the highest) work while the others wait for it to go away.
    priority = controller.priority or secrets.randbelow(1_000_000) + 1
    registry = handlers.build_registry(reconciler, controller)
    log.info(
        "controller started (kubernetes)",
        extra={
            "namespaces": list(controller.namespaces) or "all",
            "peering": None if standalone else controller.peering,
            "priority": priority,
        },
    )
    settings = handlers.operator_settings(controller, priority, standalone=standalone)
    try:
        with _metrics_served(config):
            kopf.run(
                registry=registry,
                settings=settings,
                standalone=standalone,
                priority=priority,
                # A peering name makes kopf require the peering object: not when standalone.
                peering_name=None if standalone else controller.peering,
                clusterwide=not controller.namespaces,
                namespaces=controller.namespaces,
                stop_flag=stop_flag,
                ready_flag=ready_flag,
            )
    finally:
        if api is not None:
            kube.close(api.api_client)
        reconciler.close()
    return 0
