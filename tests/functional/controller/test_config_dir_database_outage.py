"""A database outage after start-up does not end a ``controller --config-dir`` process:
the pass that fails is logged, and the files are synced once the database is back.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared.db import migrate
from shared.db import resources as db_resources
from shared.db.engines import make_engine, make_session_factory
from shared.settings import DatabaseSettings
from tests.conftest import POSTGRES_ADMIN_URL
from tests.functional.controller.test_config_dir import SINK, SOURCE, WORKFLOW, write
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def private_database() -> Iterator[tuple[str, str]]:
    """(name, url) of a database of this test's own: it is closed to connections."""
    name = f"pf_outage_{uuid.uuid4().hex[:10]}"
    admin = make_engine(DatabaseSettings(url=POSTGRES_ADMIN_URL)).execution_options(
        isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable: {exc}")
    url = sa.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(DatabaseSettings(url=url))
    migrate.upgrade(engine)
    engine.dispose()
    yield name, url
    with admin.connect() as conn:
        conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def set_open(name: str, allowed: bool) -> None:
    admin = make_engine(DatabaseSettings(url=POSTGRES_ADMIN_URL)).execution_options(
        isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            conn.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
    admin.dispose()


def test_controller_outlives_a_database_outage(
    private_database: tuple[str, str], tmp_path: Path
) -> None:
    name, url = private_database
    config = tmp_path / "config"
    config.mkdir()
    secrets = tmp_path / "secrets"
    (secrets / "hook").mkdir(parents=True)
    (secrets / "hook" / "token").write_text("t0k3n\n")
    write(config, "sink.yaml", SINK)
    write(config, "workflow.yaml", WORKFLOW)
    write(config, "source.yaml", SOURCE.format(name="first", path="/webhook/first"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PF_")}
    env.update(
        {
            "PF_DATABASE_URL": url,
            "PF_SECRETS_DIR": str(secrets),
            "PF_CONTROLLER_POLL_INTERVAL": "0.1",
            "PF_CONTROLLER_STATUS_INTERVAL": "3600",
        }
    )
    ready = tmp_path / "ready"
    log_path = tmp_path / "controller.log"
    argv = ["controller", "--config-dir", str(config), "--ready-file", str(ready)]
    with log_path.open("wb") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "services.cli", *argv],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    sessions = make_session_factory(make_engine(DatabaseSettings(url=url)))

    def sources() -> list[str]:
        with sessions() as session:
            return sorted(n for _ns, n, _spec in db_resources.list_specs(session, "Source"))

    try:
        wait_for(ready.exists, 30, "the controller's first pass")
        set_open(name, allowed=False)
        write(config, "second.yaml", SOURCE.format(name="second", path="/webhook/second"))
        wait_for(
            lambda: "config dir sync failed" in log_path.read_text(),
            30,
            "the failed pass to be logged",
        )
        assert child.poll() is None, log_path.read_text()
        set_open(name, allowed=True)
        wait_for(lambda: sources() == ["first", "second"], 30, "the new Source once back")
        assert child.poll() is None, log_path.read_text()
    finally:
        child.terminate()
        child.wait(10)
        sessions.kw["bind"].dispose()
