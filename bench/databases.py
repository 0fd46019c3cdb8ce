"""Private PostgreSQL databases for the benchmarks: created empty, dropped at the end.

Each is named ``<prefix><label><random>`` (``PF_BENCH_DATABASE_PREFIX``, default
``pf_bench_``) on the server of ``PF_BENCH_POSTGRES_URL`` (an admin URL; default the
local ``postgres``), so that a benchmark only ever drops a database it made. Nothing
here migrates or fills a database: each benchmark stores what it measures against.
"""

from __future__ import annotations

import os
import uuid

import sqlalchemy as sa

from shared.db.engines import make_engine
from shared.settings import DatabaseSettings

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _admin_url() -> str:
    return os.environ.get("PF_BENCH_POSTGRES_URL", DEFAULT_ADMIN_URL)


def _admin() -> sa.Engine:
    # CREATE and DROP DATABASE refuse to run inside a transaction.
    return make_engine(DatabaseSettings(url=_admin_url())).execution_options(
        isolation_level="AUTOCOMMIT"
    )


def create(label: str = "") -> str:
    """A new, empty database, and its URL. Raises sqlalchemy's OperationalError when
    the server does not answer (a benchmark may skip PostgreSQL then)."""
    name = f"{os.environ.get('PF_BENCH_DATABASE_PREFIX', 'pf_bench_')}{label}{uuid.uuid4().hex[:8]}"
    admin = _admin()
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        admin.dispose()
    return sa.make_url(_admin_url()).set(database=name).render_as_string(hide_password=False)


def drop(url: str) -> None:
    """Drop the PostgreSQL database at ``url``, whoever is still connected; nothing
    for a SQLite URL (its file goes with the benchmark's temporary folder)."""
    if not url.startswith("postgresql"):
        return
    admin = _admin()
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(
                f'DROP DATABASE IF EXISTS "{sa.make_url(url).database}" WITH (FORCE)'
            )
    finally:
        admin.dispose()
