"""With Redis down, ingest still answers 2xx; the relay publishes once Redis is back.

Runs its own redis-server on a free port so that stopping it disturbs nobody else.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from services.ingest.app import create_app
from services.ingest.state import EXTENSION
from tests.functional.ingest.conftest import TOKEN, load_fixture
from tests.support.waiting import wait_for

pytestmark = pytest.mark.redis


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        wait_for(client.ping, 5, "redis-server to start", ignoring=(redis.ConnectionError,))

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=10)

    def messages(self, queue: str) -> list[dict[str, Any]]:
        raw = redis.Redis(port=self.port).lrange(queue, 0, -1)
        return [json.loads(item) for item in raw]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    if server.process and server.process.poll() is None:
        server.stop()


@pytest.fixture
def ingest_app(
    make_settings: Callable[..., Any],
    database_url: str,
    put_source: Callable[..., None],
    private_redis: RedisServer,
    tmp_path: Path,
) -> Callable[..., Any]:
    """Build an ingest app on ``private_redis`` with extra PF_* settings."""

    def build(**env: str) -> Any:
        secret = tmp_path / "secrets" / "am"
        secret.mkdir(parents=True, exist_ok=True)
        (secret / "token").write_text(TOKEN)
        put_source()
        return create_app(
            make_settings(PF_DATABASE_URL=database_url, PF_BROKER_URL=private_redis.url, **env)
        )

    return build


def _task_of(message: dict[str, Any]) -> tuple[str, list[Any]]:
    body = json.loads(base64.b64decode(message["body"]))
    return message["headers"]["task"], body[0]


def test_publish_after_commit_then_relay_after_outage(
    ingest_app: Callable[..., Any], private_redis: RedisServer
) -> None:
    app = ingest_app(PF_OUTBOX_LEASE_SECONDS="0.2", PF_BROKER_PUBLISH_BACKOFF="0")
    client = app.test_client()
    state = app.extensions[EXTENSION]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    first = client.post(
        "/webhook/alertmanager",
        data=json.dumps(load_fixture("01-firing-single.json")),
        headers=headers,
    )
    assert first.status_code == 200
    [message] = private_redis.messages("engine")
    # One message per webhook, carrying the ids of the runs it created.
    assert _task_of(message) == ("engine.start_workflows", [first.json["runs"]])

    private_redis.stop()
    second = client.post(
        "/webhook/alertmanager",
        data=json.dumps(load_fixture("03-firing-group-of-2.json")),
        headers=headers,
    )
    assert second.status_code == 200
    assert second.json["workflowsStarted"] == 2
    with state.read_sessions() as session:
        unpublished = session.execute(
            sa.text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        ).scalar_one()
    assert unpublished == 2  # the first webhook's entry awaits its batched mark, too
    # While Redis is down the relay fails softly and keeps the entries.
    time.sleep(0.3)
    assert state.relay_once() == 0

    private_redis.start()
    time.sleep(0.3)  # past the lease that the failed pass took
    assert state.relay_once() == 1
    published = [_task_of(m) for m in private_redis.messages("engine")]
    assert published[-1] == ("engine.start_workflows", [second.json["runs"]])
    with state.read_sessions() as session:
        rows = session.execute(sa.text("SELECT published_at, attempts FROM outbox")).all()
    assert all(row.published_at is not None for row in rows)
    # Nothing is sent twice once marked. (This Redis keeps nothing on disk, so the
    # first message died with it: production Redis needs appendonly, see docs.)
    assert state.relay_once() == 0
    assert len(private_redis.messages("engine")) == 1
    assert all(uuid.UUID(run_id) for _, args in published for run_id in args[0])


def test_relay_thread_publishes_without_a_request(
    ingest_app: Callable[..., Any], private_redis: RedisServer
) -> None:
    app = ingest_app(
        PF_OUTBOX_LEASE_SECONDS="0.2",
        PF_OUTBOX_RELAY_INTERVAL="0.1",
        PF_BROKER_PUBLISH_BACKOFF="0",
    )
    private_redis.stop()
    response = app.test_client().post(
        "/webhook/alertmanager",
        data=json.dumps(load_fixture("01-firing-single.json")),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    private_redis.start()
    relay = app.extensions[EXTENSION].start_relay()
    try:
        wait_for(lambda: private_redis.messages("engine"), 10, "the relay to publish")
    finally:
        relay.stop()
        relay.join(timeout=5)
    assert [_task_of(m)[1] for m in private_redis.messages("engine")] == [[response.json["runs"]]]


def test_background_publisher_sends_and_marks(
    ingest_app: Callable[..., Any], private_redis: RedisServer
) -> None:
    """The production path: requests hand entries to a publisher thread."""
    app = ingest_app()
    state = app.extensions[EXTENSION]
    background = state.start_background_publisher()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    client = app.test_client()
    runs = []
    for name in ("01-firing-single.json", "03-firing-group-of-2.json"):
        runs.append(
            client.post(
                "/webhook/alertmanager", data=json.dumps(load_fixture(name)), headers=headers
            ).json["runs"]
        )
    wait_for(lambda: background.published >= 2, 10, "the publisher to send both")
    background.stop()
    background.join(timeout=5)
    assert sorted(_task_of(m)[1][0] for m in private_redis.messages("engine")) == sorted(runs)
    state.published.flush(state.sessions)
    with state.read_sessions() as session:
        unpublished = session.execute(
            sa.text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        ).scalar_one()
    assert unpublished == 0
