"""Read and write stored custom resources (the ``resources`` table).

The controller (or, without a cluster, the file loader) is the only writer; ingest,
engine and notifier read resources from here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from shared.db.models import Resource, utcnow

_RESOURCES = cast(sa.Table, Resource.__table__)


def upsert(
    session: Session,
    kind: str,
    namespace: str,
    name: str,
    spec: Mapping[str, Any],
    *,
    generation: int = 1,
    origin: str = "",
) -> None:
    existing = session.execute(
        sa.select(_RESOURCES.c.id).where(
            _RESOURCES.c.kind == kind,
            _RESOURCES.c.namespace == namespace,
            _RESOURCES.c.name == name,
        )
    ).scalar_one_or_none()
    values = {
        "spec": dict(spec),
        "generation": generation,
        "origin": origin,
        "updated_at": utcnow(),
    }
    if existing is None:
        session.execute(
            sa.insert(_RESOURCES).values(kind=kind, namespace=namespace, name=name, **values)
        )
    else:
        session.execute(sa.update(_RESOURCES).where(_RESOURCES.c.id == existing).values(**values))


def delete(session: Session, kind: str, namespace: str, name: str) -> bool:
    result = session.execute(
        sa.delete(_RESOURCES).where(
            _RESOURCES.c.kind == kind,
            _RESOURCES.c.namespace == namespace,
            _RESOURCES.c.name == name,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def list_specs(session: Session, kind: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(namespace, name, spec) of every stored resource of ``kind``."""
    rows = session.execute(
        sa.select(_RESOURCES.c.namespace, _RESOURCES.c.name, _RESOURCES.c.spec)
        .where(_RESOURCES.c.kind == kind)
        .order_by(_RESOURCES.c.namespace, _RESOURCES.c.name)
    ).all()
    return [(row.namespace, row.name, row.spec) for row in rows]


def get_spec(session: Session, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    return session.execute(
        sa.select(_RESOURCES.c.spec).where(
            _RESOURCES.c.kind == kind,
            _RESOURCES.c.namespace == namespace,
            _RESOURCES.c.name == name,
        )
    ).scalar_one_or_none()
