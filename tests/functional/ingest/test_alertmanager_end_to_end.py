"""A real Prometheus AlertManager posts to `punchingfist ingest` under gunicorn.

Alerts are pushed into AlertManager's API v2; it groups them and sends its own webhooks
(with its bearer token) to the ingest API, which must record the firing alerts, start
one run each, and close them when AlertManager sends the resolve.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from shared.db import resources
from shared.db.engines import make_engine, make_session_factory
from shared.settings import DatabaseSettings
from tests.functional.ingest.conftest import API_TOKEN, TOKEN, source_spec
from tests.support.ports import free_port
from tests.support.waiting import wait_for

pytestmark = pytest.mark.alertmanager
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def _wait_http(url: str, timeout: float = 20.0) -> None:
    def answers() -> bool:
        with urllib.request.urlopen(url, timeout=1):
            return True

    wait_for(answers, timeout, f"{url} to answer", interval=0.1, ignoring=(OSError,))


@pytest.fixture
def ingest_server(database_url: str, tmp_path: Path, redis_url: str) -> Iterator[str]:
    (tmp_path / "secrets" / "am").mkdir(parents=True)
    (tmp_path / "secrets" / "am" / "token").write_text(TOKEN)
    (tmp_path / "api-token").write_text(API_TOKEN)
    engine = make_engine(DatabaseSettings(url=database_url))
    with make_session_factory(engine).begin() as session:
        resources.upsert(session, "Source", "default", "alertmanager", source_spec())
    engine.dispose()
    port = free_port()
    env = {
        **os.environ,
        "PF_DATABASE_URL": database_url,
        "PF_BROKER_URL": redis_url,
        "PF_SECRETS_DIR": str(tmp_path / "secrets"),
        "PF_VAR_DIR": str(tmp_path / "var"),
        "PF_LOG_FORMAT": "json",
        "PF_API_TOKEN_FILE": str(tmp_path / "api-token"),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "ingest",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
        ],
        env=env,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture
def alertmanager(ingest_server: str, tmp_path: Path) -> Iterator[str]:
    if ALERTMANAGER is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus-alertmanager is not installed (.ci/run installs it)")
        pytest.skip("prometheus-alertmanager is not installed")
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        f"""
route:
  receiver: punchingfist
  group_by: ['alertname', 'namespace']
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
  - name: punchingfist
    webhook_configs:
      - url: '{ingest_server}/webhook/alertmanager'
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: '{TOKEN}'
"""
    )
    process = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            f"--web.external-url=http://127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/-/ready")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


def _push(alertmanager: str, alerts: list[dict[str, Any]]) -> None:
    request = urllib.request.Request(
        f"{alertmanager}/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def _alerts(ingest: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        f"{ingest}/api/v1/alerts", headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        items: list[dict[str, Any]] = json.load(response)["items"]
        return items


def test_alertmanager_webhooks_are_recorded_and_resolved(
    alertmanager: str, ingest_server: str, database_url: str
) -> None:
    starts = dt.datetime.now(dt.UTC).replace(microsecond=0)
    labels = [
        {
            "alertname": "KubePodCrashLooping",
            "namespace": "prod",
            "pod": f"api-{n}",
            "severity": "critical",
        }
        for n in range(2)
    ]
    _push(
        alertmanager,
        [
            {
                "labels": label,
                "annotations": {"summary": f"{label['pod']} crashes"},
                "startsAt": starts.isoformat(),
            }
            for label in labels
        ],
    )
    firing = wait_for(
        lambda: len(_alerts(ingest_server)) == 2 and _alerts(ingest_server),
        30,
        "two firing alerts",
        interval=0.2,
    )
    assert {alert["labels"]["pod"] for alert in firing} == {"api-0", "api-1"}
    assert {alert["status"] for alert in firing} == {"received"}

    ends = dt.datetime.now(dt.UTC)
    _push(
        alertmanager,
        [
            {"labels": labels[0], "startsAt": starts.isoformat(), "endsAt": ends.isoformat()},
        ],
    )
    resolved = wait_for(
        lambda: [a for a in _alerts(ingest_server) if a["status"] == "resolved"],
        30,
        "the resolved alerts",
        interval=0.2,
    )
    assert [alert["labels"]["pod"] for alert in resolved] == ["api-0"]
    engine = make_engine(DatabaseSettings(url=database_url))
    with engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT count(*) FROM workflow_runs")).scalar_one()
        events = conn.execute(sa.text("SELECT count(*) FROM source_events")).scalar_one()
    engine.dispose()
    # One run per occurrence however often AlertManager re-sent the group.
    assert runs == 2
    assert events >= 2
