"""Which Source answers which webhook path, read from the stored resources.

The controller writes Sources to the database; ingest re-reads them at most every
``refresh_seconds`` so that a request costs no extra query while a change still shows
up within seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from shared.db import resources
from shared.domain.sources import Source

log = logging.getLogger(__name__)


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
        self._by_path: dict[str, Source] = {}
        self._loaded_at: float | None = None

    def by_path(self, path: str) -> Source | None:
        now = self._clock()
        if self._loaded_at is None or now - self._loaded_at >= self._refresh_seconds:
            self._by_path = self._load()
            self._loaded_at = now
        return self._by_path.get(path.rstrip("/") or "/")

    def _load(self) -> dict[str, Source]:
        with self._session_factory() as session:
            specs = resources.list_specs(session, "Source")
        by_path: dict[str, Source] = {}
        for namespace, name, spec in specs:
            try:
                source = Source.from_spec(namespace, name, spec)
            except ValueError:
                # The controller validated it; a bad row here means a schema mismatch
                # between versions. Skip it loudly rather than fail every request.
                log.exception("stored Source is unusable", extra={"source": name})
                continue
            if source.type != "webhook" or source.path is None:
                continue
            path = source.path.rstrip("/") or "/"
            if path in by_path:
                log.error(
                    "two Sources claim one path; keeping the first",
                    extra={"path": path, "kept": by_path[path].name, "ignored": name},
                )
                continue
            by_path[path] = source
        return by_path
