"""Notifier fixtures: the store harness, the Slack stand-in, an in-process runtime
(tasks called directly, no broker) and real worker processes on Redis."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery import Celery
from notifierkit import REPO, SLACK_TOKEN, Harness, NotifierProcess

from services.notifier.app import Runtime, create_app, runtime_for
from shared.settings import Settings
from tests.support.slack_api import SlackAPI


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
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PF_") and key != "CELERY_BROKER_URL"
    }
    env.update(
        {
            "PF_DATABASE_URL": database_url,
            "PF_BROKER_URL": redis_url,
            "PF_VAR_DIR": str(tmp_path / "var"),
            "PF_SECRETS_DIR": str(tmp_path / "secrets"),
            "PF_LOG_FORMAT": "json",
            "PF_NOTIFIER_CONCURRENCY": "2",
            "PF_NOTIFIER_RETRY_BACKOFF": "0.1",
            "PF_NOTIFIER_HTTP_TIMEOUT": "5",
            "PF_NOTIFIER_LEASE_SECONDS": "20",
            "PF_NOTIFIER_RECOVERY_INTERVAL": "0.5",
            "PYTHONPATH": str(REPO),
        }
    )
    return env


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
