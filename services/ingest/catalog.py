"""Which Source answers which webhook path, read from the stored resources.

The controller writes Sources to the database; ingest re-reads them at most every
``refresh_seconds`` so that a request costs no extra query while a change still shows
up within seconds.

Paths are compared in the one canonical form of ``shared.domain.sources`` on both
sides: the stored path and the request's. A path that two stored Sources claim is
served by neither (409) until one of them moves: the controller reports both not
ready, and guessing which one the sender meant is how an unauthenticated Source once
took the traffic of an authenticated one. A stored Source that cannot be used (no
``authentication`` block, written by an older version) answers 503 on its path, so
that AlertManager keeps the alerts and retries while the operator fixes it.

Both refusals are raised as HTTP exceptions, as Flask's own ``get_or_404`` helpers
do, so that the view has no branch for them; the app's HTTPException handler turns
their description into the JSON error. The answers do not name the Sources (the
caller may be anyone); the log does.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import Conflict, ServiceUnavailable

from shared.db import resources
from shared.domain import sources as domain_sources
from shared.domain.sources import Source

log = logging.getLogger(__name__)


class PathConflict(Conflict):
    """Two Sources claim the requested path; neither is served."""


class SourceUnusable(ServiceUnavailable):
    """The Source on the requested path is stored but cannot be served."""


@dataclasses.dataclass(frozen=True)
class _Routes:
    sources: dict[str, Source] = dataclasses.field(default_factory=dict)
    # path -> "namespace/name" of each Source that claims it (two or more)
    conflicts: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    # path -> why the Source stored there cannot be used
    unusable: dict[str, str] = dataclasses.field(default_factory=dict)


class SourceCatalog:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        refresh_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session_factory = session_factory
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._routes = _Routes()
        self._loaded_at: float | None = None

    def by_path(self, path: str) -> Source | None:
        """The Source serving ``path``; None when there is none.

        Raises ``PathConflict`` (409) or ``SourceUnusable`` (503), see the module.
        """
        now = self._clock()
        if self._loaded_at is None or now - self._loaded_at >= self._refresh_seconds:
            routes = self._load()
            if routes.conflicts != self._routes.conflicts:
                for shared_path, claimants in routes.conflicts.items():
                    log.error(
                        "several Sources claim one path; serving none of them",
                        extra={"path": shared_path, "sources": claimants},
                    )
            self._routes = routes
            self._loaded_at = now
        try:
            path = domain_sources.normalize_path(path)
        except domain_sources.PathError:
            return None
        routes = self._routes
        if path in routes.conflicts:
            log.error(
                "webhook refused: path claimed by several Sources",
                extra={"path": path, "sources": routes.conflicts[path]},
            )
            raise PathConflict(
                f"more than one Source claims {path}; none is served until the conflict "
                "is resolved (see the Sources' status)"
            )
        if path in routes.unusable:
            log.error(
                "webhook refused: stored Source is unusable",
                extra={"path": path, "error": routes.unusable[path]},
            )
            raise SourceUnusable(f"the Source on {path} is misconfigured; retry later")
        return routes.sources.get(path)

    def _load(self) -> _Routes:
        with self._session_factory() as session:
            specs = resources.list_specs(session, "Source")
        routes = _Routes()
        claims: dict[str, list[str]] = {}
        for namespace, name, spec in specs:
            try:
                path = domain_sources.webhook_path(name, spec)
            except domain_sources.PathError:
                log.error("stored Source has an unusable path", extra={"source": name})
                continue
            if path is None:
                continue
            claims.setdefault(path, []).append(f"{namespace}/{name}")
            try:
                routes.sources[path] = Source.from_spec(namespace, name, spec)
            except ValueError as exc:
                # The controller validated it: this is a spec stored by an older
                # version (or a schema mismatch). Its path answers 503 and says why
                # in the log at each refused request.
                routes.unusable[path] = f"Source {namespace}/{name}: {exc}"
        for path, claimants in claims.items():
            if len(claimants) > 1:
                routes.conflicts[path] = claimants
                routes.sources.pop(path, None)
        return routes
