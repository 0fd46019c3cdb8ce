"""What a person starting a command sees: one line for a missing database, text logs
with their fields, no library chatter."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_ADMIN_URL
from tests.support.ports import free_port

PUNCHINGFIST = [sys.executable, "-m", "services.cli"]


def run_command(
    args: list[str], env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PUNCHINGFIST, *args],
        check=False,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.postgres
@pytest.mark.parametrize(
    "command", [["migrate"], ["ingest", "--bind", "127.0.0.1:0"], ["scheduler"], ["notifier"]]
)
def test_a_missing_postgres_database_is_one_line_with_the_fix(
    command: list[str], postgres_database: str, tmp_path: Path
) -> None:
    import sqlalchemy as sa

    missing = f"pf_missing_{uuid.uuid4().hex[:8]}"
    url = sa.make_url(POSTGRES_ADMIN_URL).set(database=missing).render_as_string(False)
    result = run_command(command, {"PF_DATABASE_URL": url, "PF_VAR_DIR": str(tmp_path)})
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    problem = [line for line in lines if line.startswith("punchingfist:")]
    assert len(problem) == 1, result.stderr
    assert f'database "{missing}" does not exist' in problem[0]
    assert f"createdb -h 127.0.0.1 -U postgres {missing}" in problem[0]
    assert "Traceback" not in result.stderr


def test_migrate_does_not_announce_alembic_plugins(tmp_path: Path) -> None:
    result = run_command(
        ["migrate"],
        {"PF_DATABASE_URL": f"sqlite:///{tmp_path}/pf.db", "PF_LOG_FORMAT": "text"},
    )
    assert result.returncode == 0, result.stderr
    assert "setup plugin" not in result.stderr
    assert "database migrated" in result.stderr


def test_text_logs_carry_the_fields_json_logs_carry(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "broken.yaml").write_text("apiVersion: punchingfist.io/v1alpha1\nkind: Nonsense\n")
    child = subprocess.Popen(
        [*PUNCHINGFIST, "controller", "--config-dir", str(config)],
        env={
            **os.environ,
            "PF_DATABASE_URL": f"sqlite:///{tmp_path}/pf.db",
            "PF_LOG_FORMAT": "text",
            "PF_VAR_DIR": str(tmp_path / "var"),
        },
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert (
            run_command(["migrate"], {"PF_DATABASE_URL": f"sqlite:///{tmp_path}/pf.db"}).returncode
            == 0
        )
        deadline = time.monotonic() + 30
        line = ""
        assert child.stderr is not None
        while time.monotonic() < deadline:
            line = child.stderr.readline()
            if "invalid resource file" in line:
                break
        assert "invalid resource file" in line
        assert f"file={config / 'broken.yaml'}" in line
        assert "error=" in line
        assert "Nonsense" in line
    finally:
        child.terminate()
        child.communicate(timeout=15)


def test_run_serves_ingest_on_pf_ingest_bind(tmp_path: Path) -> None:
    import signal
    import urllib.request

    port = free_port()
    examples = Path(__file__).resolve().parents[3] / "examples"
    child = subprocess.Popen(
        [*PUNCHINGFIST, "run", "--config-dir", str(examples)],
        env={
            **os.environ,
            "PF_INGEST_BIND": f"127.0.0.1:{port}",
            "PF_VAR_DIR": str(tmp_path / "var"),
            "PF_DATABASE_URL": f"sqlite:///{tmp_path}/pf.db",
            "PF_BROKER_URL": f"sqla+sqlite:///{tmp_path}/broker.db",
            "PF_SECRETS_DIR": str(examples / "secrets"),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 40
        status = None
        while time.monotonic() < deadline and status is None:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/healthz", timeout=2
                ) as answer:
                    status = answer.status
            except OSError:
                time.sleep(0.3)
        assert status == 200
    finally:
        child.send_signal(signal.SIGINT)
        child.wait(timeout=30)
