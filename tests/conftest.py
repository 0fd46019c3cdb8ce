"""Fixtures shared by every test: databases on both backends, settings, Redis.

PostgreSQL and Redis are the real servers on 127.0.0.1 (``.ci/run`` starts them).
Each test gets an empty, migrated database: SQLite in a temporary folder, PostgreSQL
in a database created for this test session and truncated after each test.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared import settings as settings_module
from shared.db import migrate
from shared.db.engines import make_engine
from shared.db.models import Base
from shared.settings import DatabaseSettings, Settings
from tests.support import workers

POSTGRES_ADMIN_URL = os.environ.get(
    "PF_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("PF_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
FIXTURES = Path(__file__).parent / "fixtures"


def _postgres_reachable() -> bool:
    try:
        engine = make_engine(DatabaseSettings(url=POSTGRES_ADMIN_URL))
        with engine.connect():
            pass
        engine.dispose()
        return True
    except sa.exc.OperationalError:
        return False


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head."""
    if not _postgres_reachable():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}")
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL}")
    name = f"pf_test_{uuid.uuid4().hex[:10]}"
    admin = make_engine(DatabaseSettings(url=POSTGRES_ADMIN_URL)).execution_options(
        isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(DatabaseSettings(url=url))
    migrate.upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def _truncate(url: str) -> None:
    engine = make_engine(DatabaseSettings(url=url))
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {tables} CASCADE")
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, migrated database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/punchingfist.db"
        engine = make_engine(DatabaseSettings(url=url))
        migrate.upgrade(engine)
        engine.dispose()
        yield url
    else:
        url = request.getfixturevalue("postgres_database")
        yield url
        _truncate(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/punchingfist.db"
    engine = make_engine(DatabaseSettings(url=url))
    migrate.upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture
def redis_url() -> Iterator[str]:
    """$PF_TEST_REDIS_URL (else database 14), emptied before and after the test."""
    with workers.flushed_redis(REDIS_URL) as url:
        yield url


@pytest.fixture
def make_settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Build Settings for a test: defaults from an empty environment, then overrides."""

    def build(**env: str) -> Settings:
        base = {
            "PF_VAR_DIR": str(tmp_path / "var"),
            "PF_SECRETS_DIR": str(tmp_path / "secrets"),
            "PF_RESOURCE_REFRESH_SECONDS": "0",
            "PF_BROKER_URL": "memory://",
        }
        base.update(env)
        return settings_module.from_env(base)

    return build


def replace_settings(settings: Settings, **groups: object) -> Settings:
    return dataclasses.replace(settings, **groups)  # type: ignore[arg-type]
