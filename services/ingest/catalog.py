"""Which Source answers which webhook path, read from the stored resources.

The controller writes Sources to the database; ingest re-reads them at most every
``refresh_seconds`` so that a request costs no extra query while a change still shows
up within seconds. A path the cached copy does not know is looked up again before it
is refused: AlertManager does not retry a 404, and a Source stored a moment after the
last read (a new Source, or every Source at start-up) lost its first notifications
that way. The look-up is rate-limited per path (``MISS_RELOAD_SECONDS``), so that a
sender posting to a wrong path costs at most one query per second per path; the
number of paths remembered is bounded, so that random paths cannot grow memory.

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

import collections
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

# Seconds before a path that was not found may cause another read of the Sources.
MISS_RELOAD_SECONDS = 1.0
# Missed paths remembered for that limit; the oldest are forgotten first.
MISS_MEMORY = 1024


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
        # path -> when a miss on it last read the Sources again
        self._missed: collections.OrderedDict[str, float] = collections.OrderedDict()

    def refresh(self) -> int:
        """Read the Sources if the cached copy is stale; the number of paths served."""
        self._read_if_stale()
        return len(self._routes.sources)

    def by_path(self, path: str) -> Source | None:
        """The Source serving ``path``; None when there is none.

        Raises ``PathConflict`` (409) or ``SourceUnusable`` (503), see the module.
        """
        fresh = self._read_if_stale()
        try:
            path = domain_sources.normalize_path(path)
        except domain_sources.PathError:
            return None
        # A read just done counts as the look for this path (it starts its second).
        if self._unknown(path) and self._may_look_again(path) and not fresh:
            self._read()
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

    def _read_if_stale(self) -> bool:
        """Read the Sources if the copy is older than ``refresh_seconds``; True if read."""
        if self._loaded_at is not None and self._clock() - self._loaded_at < self._refresh_seconds:
            return False
        self._read()
        return True

    def _read(self) -> None:
        now = self._clock()
        routes = self._load()
        if routes.conflicts != self._routes.conflicts:
            for shared_path, claimants in routes.conflicts.items():
                log.error(
                    "several Sources claim one path; serving none of them",
                    extra={"path": shared_path, "sources": claimants},
                )
        self._routes = routes
        self._loaded_at = now

    def _unknown(self, path: str) -> bool:
        routes = self._routes
        return not (path in routes.sources or path in routes.conflicts or path in routes.unusable)

    def _may_look_again(self, path: str) -> bool:
        now = self._clock()
        last = self._missed.get(path)
        if last is not None and now - last < MISS_RELOAD_SECONDS:
            return False
        self._missed[path] = now
        self._missed.move_to_end(path)
        while len(self._missed) > MISS_MEMORY:
            self._missed.popitem(last=False)
        return True

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
