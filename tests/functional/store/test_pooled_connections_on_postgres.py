"""Pooled PostgreSQL connections: one the server dropped is replaced before use, and a
healthy one is reused without a ping (a round trip per transaction otherwise)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from shared.db.engines import make_engine
from shared.settings import DatabaseSettings
from tests.conftest import POSTGRES_ADMIN_URL

pytestmark = pytest.mark.postgres


@pytest.fixture
def engines(postgres_database: str) -> Iterator[tuple[sa.Engine, sa.Engine]]:
    """The engine under test, and an administrator's beside it."""
    engine = make_engine(DatabaseSettings(url=postgres_database))
    admin = make_engine(DatabaseSettings(url=POSTGRES_ADMIN_URL)).execution_options(
        isolation_level="AUTOCOMMIT"
    )
    yield engine, admin
    engine.dispose()
    admin.dispose()


def _backend(engine: sa.Engine) -> int:
    with engine.begin() as conn:
        return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def _last_query_at(admin: sa.Engine, pid: int) -> object:
    with admin.connect() as conn:
        return conn.execute(
            sa.text("SELECT query_start FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        ).scalar_one()


def test_a_connection_the_server_terminated_is_replaced_at_checkout(
    engines: tuple[sa.Engine, sa.Engine],
) -> None:
    engine, admin = engines
    before = _backend(engine)
    with admin.connect() as conn:
        assert conn.execute(
            sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": before}
        ).scalar_one()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the backend is gone once the server says so
        with admin.connect() as conn:
            gone = not conn.execute(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": before}
            ).scalar_one()
        if gone:
            break
        time.sleep(0.02)
    # No error for the caller: the dead connection never reaches it.
    assert _backend(engine) != before


def test_a_healthy_pooled_connection_is_reused_without_a_ping(
    engines: tuple[sa.Engine, sa.Engine],
) -> None:
    engine, admin = engines
    pid = _backend(engine)
    seen = _last_query_at(admin, pid)
    with engine.connect() as conn:  # checked out from the pool, nothing sent yet
        assert conn.connection.dbapi_connection is not None
        assert _last_query_at(admin, pid) == seen
    assert _backend(engine) == pid
