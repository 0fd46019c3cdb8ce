"""File mode: the controller without a cluster, fed from a folder of YAML files.

The folder's YAML files (not its subfolders, as ``kubectl apply -f DIR``) hold the
same resources a cluster would. They are validated exactly as in a cluster, stored
in the database the services read, and reloaded when a file changes (polling
modification times: no inotify dependency, and a second of delay is fine for a
human editing a file). Removing a resource from the files removes it from the
database; a file that fails to load keeps what it had stored before, so a typo
does not tear down a working Source.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from services.controller import store
from services.controller.reconciler import Outcome, Reconciler
from shared.errors import ConfigError
from shared.resources import files
from shared.resources.schemas import SINK, SOURCE, WORKFLOW, Resource
from shared.resources.status import AUTHENTICATED

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]
_APPLY_ORDER = (SINK.name, WORKFLOW.name, SOURCE.name)


@dataclasses.dataclass
class SyncReport:
    applied: int = 0
    removed: int = 0
    errors: int = 0
    not_ready: list[str] = dataclasses.field(default_factory=list)


class ConfigDirectory:
    def __init__(self, reconciler: Reconciler, directory: Path) -> None:
        if not directory.is_dir():
            raise ConfigError(f"config dir {directory} is not a folder")
        self.directory = directory
        self._reconciler = reconciler
        self._last_ready: dict[tuple[str, str, str], bool] = {}
        self._last_warnings: dict[tuple[str, str, str], tuple[str, ...]] = {}

    def fingerprint(self) -> Fingerprint:
        entries = []
        for path in files.yaml_files([self.directory]):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            entries.append((str(path), stat.st_mtime_ns, stat.st_size))
        return tuple(entries)

    def sync(self) -> SyncReport:
        """Make the database hold what the files say; report what is not ready."""
        report = SyncReport()
        loaded = files.load_files([self.directory])
        for error in loaded.errors:
            log.error(
                "invalid resource file",
                extra={
                    "file": error.file,
                    "document": error.document,
                    "field": error.path,
                    "error": error.message,
                    "resource": error.resource,
                },
            )
        report.errors = len(loaded.errors)
        wanted = {resource.key for resource in loaded.resources}
        # Removals first: a Source renamed in place must free its path before the
        # new name claims it.
        for resource in self._reconciler.stored():
            if (
                resource.origin != store.KUBERNETES
                and resource.key not in wanted
                and resource.origin not in loaded.failed_files
                and self._reconciler.remove(*resource.key)
            ):
                report.removed += 1
                self._last_ready.pop(resource.key, None)
                self._last_warnings.pop(resource.key, None)
        # What is referred to first, so that references resolve in one pass.
        ordered = sorted(loaded.resources, key=lambda r: _APPLY_ORDER.index(r.kind))
        by_key = {resource.key: resource for resource in ordered}
        outcomes: dict[tuple[str, str, str], Outcome] = {}
        partners: set[tuple[str, str, str]] = set()
        for resource in ordered:
            outcome = outcomes[resource.key] = self._apply(resource)
            report.applied += int(outcome.written)
            partners.update(outcome.conflicts)
        # A Source applied before the one that now shares its path was judged alone:
        # judge it again so that both are reported in this pass, not at a refresh.
        for key in partners:
            if key in outcomes and outcomes[key].ready:
                outcomes[key] = self._apply(by_key[key])
        for key, outcome in outcomes.items():
            self._report(key, outcome.status)
            if not outcome.ready:
                report.not_ready.append(str(by_key[key]))
        return report

    def _apply(self, resource: Resource) -> Outcome:
        return self._reconciler.apply(
            resource.kind,
            resource.namespace,
            resource.name,
            resource.spec,
            generation=resource.generation,
            origin=resource.origin,
        )

    def _report(self, key: tuple[str, str, str], status: dict[str, object]) -> None:
        conditions = status.get("conditions") or []
        conditions = conditions if isinstance(conditions, list) else []
        kind, namespace, name = key
        extra: dict[str, object] = {"resource": f"{kind} {namespace}/{name}"}
        warnings = tuple(
            str(condition.get("message"))
            for condition in conditions
            if condition.get("type") == AUTHENTICATED and condition.get("status") == "False"
        )
        if warnings and self._last_warnings.get(key) != warnings:
            log.warning(
                "resource accepts unauthenticated webhooks", extra={**extra, "problem": warnings[0]}
            )
        self._last_warnings[key] = warnings
        ready = bool(status.get("ready"))
        if self._last_ready.get(key) == ready:
            return
        self._last_ready[key] = ready
        if ready:
            log.info("resource ready", extra=extra)
            return
        for condition in conditions:
            if condition.get("type") == "Ready":
                extra.update(reason=condition.get("reason"), problem=condition.get("message"))
        log.warning("resource not ready", extra=extra)

    def run(
        self,
        stop: threading.Event,
        poll_interval: float,
        refresh_interval: float,
        synced: Callable[[], None] | None = None,
    ) -> None:
        """Sync now, then on every file change and every ``refresh_interval`` seconds.

        ``synced`` is called once, after the first sync has stored the resources.
        """
        # The state is taken before reading, never after: a file edited while a sync
        # reads the folder must look changed at the next poll.
        seen = self.fingerprint()
        report = self.sync()
        log.info(
            "config dir loaded",
            extra={"dir": str(self.directory), **dataclasses.asdict(report)},
        )
        if synced is not None:
            synced()
        since_refresh = 0.0
        while not stop.wait(poll_interval):
            since_refresh += poll_interval
            current = self.fingerprint()
            if current == seen and since_refresh < refresh_interval:
                continue
            changed = current != seen
            seen = current
            since_refresh = 0.0
            try:
                report = self.sync()
            except sa.exc.OperationalError as exc:
                # A database restart must not end the controller: the next poll
                # syncs again (the files are taken as changed until one succeeds).
                log.error(
                    "config dir sync failed, retrying", extra={"error": str(exc).splitlines()[0]}
                )
                seen = ()
                continue
            if changed:
                log.info(
                    "config dir reloaded",
                    extra={"dir": str(self.directory), **dataclasses.asdict(report)},
                )
