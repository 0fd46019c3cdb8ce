"""The writes of one transaction sent as one statement on PostgreSQL.

A step's writes are a compare-and-set on its row followed by writes that must
happen only if it matched (the run's context, later steps skipped). On SQLite a
statement costs microseconds and these run one after the other; on PostgreSQL each
is a round trip to the server, which waits for the server process to be scheduled
on a busy machine: per step that was most of the engine's overhead
(docs/performance.md). There they go out as one statement of data-modifying CTEs:
every part sees the same snapshot and commits or rolls back together, as the
separate statements did in their one transaction, and a part that depends on the
compare-and-set says so with ``EXISTS (SELECT FROM guard)``.

The statements given are built once by the callers, with bind parameters, and
their combination is built once per set of statements (``_combined``): building a
statement and its cache key costs more client time than the round trip it saves.

What this module must not do: decide what to write. Its callers build the
statements; it only chooses how many round trips they take.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

# Combined statements kept per process: one per shape of a step's writes.
COMBINED_STATEMENTS = 128


def one_statement(session: Session) -> bool:
    """Whether several writes of this session go out as one statement."""
    return session.get_bind().dialect.name == "postgresql"


def guarded(
    session: Session,
    guard: sa.Update,
    then: Sequence[sa.Update],
    params: Mapping[str, Any],
) -> bool:
    """``guard`` (a compare-and-set UPDATE of one row) and, only if it matched,
    ``then`` in order; whether it matched. ``params`` fills the bind parameters of
    all of them (so their names must not clash).

    The last of ``then`` must match one row whenever ``guard`` did (the run a step
    belongs to): its row count is the answer on PostgreSQL.
    """
    if not one_statement(session):
        if session.execute(guard, params).rowcount != 1:  # type: ignore[attr-defined]
            return False
        for statement in then:
            session.execute(statement, params)
        return True
    combined = _combined(guard, tuple(then))
    return bool(session.execute(combined, params).rowcount == 1)  # type: ignore[attr-defined]


def together(
    session: Session, statements: Sequence[sa.Insert | sa.Update], params: Mapping[str, Any]
) -> None:
    """``statements`` in order, in one round trip on PostgreSQL. They depend on no
    one's result: the caller holds the lock that makes them safe."""
    if not one_statement(session):
        for statement in statements:
            session.execute(statement, params)
        return
    session.execute(_combined(None, tuple(statements)), params)


@functools.lru_cache(maxsize=COMBINED_STATEMENTS)
def _combined(
    guard: sa.Update | None, statements: tuple[sa.Insert | sa.Update, ...]
) -> sa.Insert | sa.Update:
    """The last statement with the guard and the others as CTEs before it."""
    ctes = []
    if guard is not None:
        table = guard.table
        assert isinstance(table, sa.Table)
        claimed = guard.returning(table.c.id).cte("guard")
        matched = sa.exists(sa.select(claimed.c.id))
        statements = tuple(_where(statement, matched) for statement in statements)
        ctes.append(claimed)
    *riders, last = statements
    ctes += [rider.cte(f"write_{i}") for i, rider in enumerate(riders)]
    return last.add_cte(*ctes)


def _where(statement: sa.Insert | sa.Update, condition: sa.Exists) -> sa.Update:
    if not isinstance(statement, sa.Update):
        raise TypeError("only UPDATEs can depend on a guard")
    return statement.where(condition)
