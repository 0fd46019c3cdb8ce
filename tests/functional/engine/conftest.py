"""Engine fixtures: the store harness, an in-process worker on the memory transport,
and real worker processes on Redis.

The Redis database is $PF_TEST_ENGINE_REDIS_URL, else $PF_TEST_REDIS_URL, else
database 13 (``enginekit.ENGINE_REDIS_URL``); it is flushed before and after each test
that asks for ``engine_redis_url``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery import Celery
from enginekit import ENGINE_REDIS_URL, Harness, WorkerProcess, inprocess_worker

from services.engine.app import create_app
from shared.settings import Settings
from tests.support import workers


@pytest.fixture
def harness(database_url: str) -> Iterator[Harness]:
    h = Harness(database_url)
    yield h
    h.close()


@pytest.fixture
def engine_settings(
    make_settings: Callable[..., Settings], database_url: str
) -> Callable[..., Settings]:
    def build(**env: str) -> Settings:
        base = {
            "PF_DATABASE_URL": database_url,
            "PF_ENGINE_RETRY_BACKOFF": "0.05",
            "PF_ENGINE_RETRY_BACKOFF_MAX": "0.2",
        }
        base.update(env)
        return make_settings(**base)

    return build


@pytest.fixture
def inproc(engine_settings: Callable[..., Settings]) -> Iterator[Celery]:
    """An engine app on the memory transport with a worker thread consuming it.

    The worker stops within a few tenths of a second instead of 4 s: see
    ``enginekit.PromptMemoryTransport``.
    """
    with inprocess_worker(create_app(engine_settings())) as app:
        yield app


@pytest.fixture
def engine_redis_url() -> Iterator[str]:
    with workers.flushed_redis(ENGINE_REDIS_URL) as url:
        yield url


@pytest.fixture
def worker_env(database_url: str, engine_redis_url: str, tmp_path: Path) -> dict[str, str]:
    return workers.process_env(
        database_url,
        engine_redis_url,
        tmp_path / "var",
        PF_ENGINE_CONCURRENCY="2",
        PF_ENGINE_RETRY_BACKOFF="0.05",
        PF_ENGINE_LEASE_SECONDS="3",
        PF_ENGINE_RECOVERY_INTERVAL="0.5",
        PF_OUTBOX_RELAY_INTERVAL="0.5",
    )


@pytest.fixture
def worker_process(worker_env: dict[str, str], tmp_path: Path) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(worker_env, tmp_path / "worker.log")
    yield worker
    worker.stop()


@pytest.fixture
def redis_app(engine_settings: Callable[..., Settings], engine_redis_url: str) -> Iterator[Celery]:
    """An engine app on the tests' Redis, for sending; the worker is a separate process."""
    app = create_app(engine_settings(PF_BROKER_URL=engine_redis_url))
    yield app
    if getattr(app, "pf_runtime", None) is not None:
        app.pf_runtime.close()
