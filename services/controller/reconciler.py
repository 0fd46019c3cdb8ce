"""One reconciliation: a resource as received -> stored spec and its status.

Both controller modes call ``Reconciler.apply`` with whatever they received (a
cluster object or a file's document), so a resource is judged, stored and reported
the same way in a cluster and in file mode. The rules are in ``shared.resources``;
this module orders them and does the I/O.

An invalid spec never replaces a valid one: the last valid generation stays in use
and the status says so, as a Deployment keeps its old pods when a new template
cannot be scheduled.

A valid Source is stored even when another Source claims its webhook path: ingest
reads every stored Source and serves neither of two on one path, and both are
reported not ready naming each other. Refusing the newcomer instead would let the
first to arrive keep a path that an operator may have meant for the other.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from services.controller import metrics as controller_metrics
from services.controller import store
from shared.db import resources as db_resources
from shared.db.models import utcnow
from shared.errors import ValidationError
from shared.resources import checks, schemas, status
from shared.resources.schemas import SOURCE, Resource

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What ``apply`` did: the status to report and whether the spec was written."""

    status: dict[str, Any]
    written: bool
    # Other Sources on this one's webhook path, as (kind, namespace, name): their
    # own status changes too, and file mode re-applies them in the same pass.
    conflicts: tuple[tuple[str, str, str], ...] = ()

    @property
    def ready(self) -> bool:
        return bool(self.status.get("ready"))


class Reconciler:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        secret_check: checks.SecretCheck,
        clock: Callable[[], dt.datetime] = utcnow,
        *,
        mode: str = controller_metrics.FILES,
        metrics: controller_metrics.ControllerMetrics | None = None,
    ) -> None:
        self._sessions = sessions
        self._secret_check = secret_check
        self._clock = clock
        self._mode = mode
        self._metrics = metrics or controller_metrics.metrics()
        # Storing a Source and reading who else claims its path must not interleave
        # with another Source doing the same, or two Sources written at once could
        # each miss the other (kopf runs handlers in threads; on PostgreSQL the
        # transaction alone would not serialize them). One active controller per
        # cluster (peering) makes a process lock enough.
        self._paths = threading.Lock()

    def apply(
        self,
        kind: str,
        namespace: str,
        name: str,
        raw_spec: object,
        *,
        generation: int,
        origin: str,
        previous_status: Mapping[str, Any] | None = None,
    ) -> Outcome:
        started = time.perf_counter()
        try:
            outcome = self._apply(
                kind,
                namespace,
                name,
                raw_spec,
                generation=generation,
                origin=origin,
                previous_status=previous_status,
            )
        except Exception as exc:
            self._count(kind, "error", started, exc)
            raise
        self._count(kind, "ready" if outcome.ready else "not_ready", started)
        return outcome

    def _count(
        self, kind: str, result: str, started: float, error: BaseException | None = None
    ) -> None:
        self._metrics.reconciles.labels(kind, self._mode, result).inc()
        self._metrics.duration.labels(kind, self._mode).observe(time.perf_counter() - started)
        if error is not None:
            self._metrics.errors.labels(kind, self._mode, type(error).__name__).inc()

    def _apply(
        self,
        kind: str,
        namespace: str,
        name: str,
        raw_spec: object,
        *,
        generation: int,
        origin: str,
        previous_status: Mapping[str, Any] | None,
    ) -> Outcome:
        invalid: status.Problem | None = None
        not_stored: status.Problem | None = None
        written = False
        try:
            spec = schemas.normalize(kind, name, raw_spec)
        except ValidationError as exc:
            invalid = status.Problem("Invalid", schemas.describe_errors(_flat(exc)))
            spec = None
        conflict: status.Problem | None = None
        claimants: list[tuple[str, str]] = []
        with self._paths, self._sessions.begin() as session:
            if spec is None:
                current = db_resources.get_spec(session, kind, namespace, name)
                not_stored = status.Problem(
                    "KeptPrevious" if current is not None else "Invalid",
                    f"generation {generation} is invalid; "
                    + (
                        "the last valid spec stays in use."
                        if current is not None
                        else "nothing is in use."
                    ),
                )
                resource = Resource(kind, namespace, name, current or {}, generation, origin)
            else:
                resource = Resource(kind, namespace, name, spec, generation, origin)
                written = self._write(session, resource)
            if resource.kind == SOURCE.name:
                claims = checks.path_claims(store.stored(session, SOURCE.name))
                path = checks.webhook_path(resource)
                claimants = claims.get(path, []) if path is not None else []
                conflict = checks.path_conflict(resource, claims)
        with self._sessions() as session:
            unresolved = (
                checks.unresolved(resource, self._exists(session), self._secret_check)
                if invalid is None
                else []
            )
            counters = store.counters(session, resource)
        facts = status.Facts(
            generation=generation,
            invalid=invalid,
            unresolved=unresolved,
            not_stored=not_stored or conflict,
            advisories=checks.advisories(resource) if resource.spec else (),
            undeliverable=checks.undeliverable(resource) if invalid is None else None,
            counters=counters,
        )
        built = status.build(facts, previous_status, self._clock())
        others = tuple(
            (SOURCE.name, other_namespace, other_name)
            for other_namespace, other_name in claimants
            if (other_namespace, other_name) != (namespace, name)
        )
        if conflict is not None:
            log.warning(
                "webhook path conflict",
                extra={"resource": str(resource), "problem": conflict.message},
            )
        return Outcome(built, written, others)

    def close(self) -> None:
        """Release the database connections."""
        bind = self._sessions.kw.get("bind")
        if bind is not None:
            bind.dispose()

    def remove(self, kind: str, namespace: str, name: str) -> bool:
        started = time.perf_counter()
        try:
            with self._sessions.begin() as session:
                removed = db_resources.delete(session, kind, namespace, name)
        except Exception as exc:
            self._count(kind, "error", started, exc)
            raise
        if removed:
            self._count(kind, "removed", started)
            log.info("resource removed", extra={"resource": f"{kind} {namespace}/{name}"})
        return removed

    def stored(self) -> list[Resource]:
        with self._sessions() as session:
            return store.stored(session)

    def _write(self, session: Session, resource: Resource) -> bool:
        current = db_resources.get_spec(session, resource.kind, resource.namespace, resource.name)
        if current == resource.spec:
            return False
        db_resources.upsert(
            session,
            resource.kind,
            resource.namespace,
            resource.name,
            resource.spec,
            generation=resource.generation,
            origin=resource.origin,
        )
        log.info(
            "resource stored",
            extra={
                "resource": str(resource),
                "generation": resource.generation,
                "origin": resource.origin,
            },
        )
        return True

    @staticmethod
    def _exists(session: Session) -> checks.Exists:
        def exists(kind: str, namespace: str, name: str) -> bool:
            return db_resources.get_spec(session, kind, namespace, name) is not None

        return exists


def _flat(exc: ValidationError) -> dict[str, list[str]]:
    return {
        path: [str(p) for p in problems] if isinstance(problems, list) else [str(problems)]
        for path, problems in exc.messages.items()
    }
