"""Notifier fixtures: the store harness, the Slack stand-in, an in-process runtime
(tasks called directly, no broker) and real worker processes on Redis."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery import Celery
from notifierkit import SLACK_TOKEN, Harness, NotifierProcess

from services.notifier.app import Runtime, create_app, runtime_for
from services.standins.slack import SlackAPI
from shared.settings import Settings
from tests.support import workers
from tests.support.ports import free_port
from tests.support.waiting import wait_for

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


@pytest.fixture
def harness(database_url: str, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(database_url, tmp_path / "secrets")
    h.put_secret("slack-bot", "token", SLACK_TOKEN)
    yield h
    h.close()


@pytest.fixture
def slack() -> Iterator[SlackAPI]:
    with SlackAPI(token=SLACK_TOKEN) as api:
        yield api


@pytest.fixture
def notifier_settings(
    make_settings: Callable[..., Settings], database_url: str
) -> Callable[..., Settings]:
    def build(**env: str) -> Settings:
        base = {
            "PF_DATABASE_URL": database_url,
            "PF_NOTIFIER_RETRY_BACKOFF": "0.05",
            "PF_NOTIFIER_RETRY_BACKOFF_MAX": "0.2",
            "PF_NOTIFIER_HTTP_TIMEOUT": "5",
            "PF_PUBLIC_URL": "http://pf.example:8080",
        }
        base.update(env)
        return make_settings(**base)

    return build


@pytest.fixture
def runtime(notifier_settings: Callable[..., Settings]) -> Iterator[Runtime]:
    """The notifier's runtime on the memory transport; tests call the task functions."""
    app: Celery = create_app(notifier_settings())
    rt = runtime_for(app)
    yield rt
    rt.close()


@pytest.fixture
def worker_env(database_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return workers.process_env(
        database_url,
        redis_url,
        tmp_path / "var",
        PF_SECRETS_DIR=str(tmp_path / "secrets"),
        PF_NOTIFIER_CONCURRENCY="2",
        PF_NOTIFIER_RETRY_BACKOFF="0.1",
        PF_NOTIFIER_HTTP_TIMEOUT="5",
        PF_NOTIFIER_LEASE_SECONDS="20",
        PF_NOTIFIER_RECOVERY_INTERVAL="0.5",
    )


@pytest.fixture
def notifier_process(worker_env: dict[str, str], tmp_path: Path) -> Iterator[NotifierProcess]:
    worker = NotifierProcess(worker_env, tmp_path / "notifier.log")
    yield worker
    worker.stop()


@pytest.fixture
def sender(notifier_settings: Callable[..., Settings], redis_url: str) -> Iterator[Celery]:
    """A notifier app on the test Redis, for sending; the worker is a separate process."""
    app = create_app(notifier_settings(PF_BROKER_URL=redis_url))
    yield app
    if getattr(app, "pf_runtime", None) is not None:
        app.pf_runtime.close()


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    if ALERTMANAGER is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus-alertmanager is not installed (.ci/run installs it)")
        pytest.skip("prometheus-alertmanager is not installed")
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text("route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n")
    process = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(url), 20, "AlertManager did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1):
            return True
    except OSError:
        return False
