"""Slow clients against the real server, started as ``punchingfist ingest`` and ``run``.

Clients that trickle a request byte by byte (or send one byte and stall) must not
delay anyone else: with two sync workers, two of them held all intake and a webhook
waited 39 s. Here four times as many trickle while a real webhook is sent, and it
must be answered within about a second; the tricklers get 408 once
``PF_INGEST_READ_TIMEOUT`` has passed.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.db import migrate, resources
from shared.db.engines import make_engine, make_session_factory
from shared.settings import DatabaseSettings
from tests.functional.ingest import realserver
from tests.functional.ingest.conftest import TOKEN, source_spec
from tests.support.ports import free_port

pytestmark = pytest.mark.timeout(90)
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
WORKERS = 2
SLOW_CLIENTS = 4 * WORKERS
READ_TIMEOUT = 4.0
# What "answered at once" means on a shared two-core machine.
PROMPT = 1.5


def env_for(tmp_path: Path, secrets: Path) -> dict[str, str]:
    return realserver.env_for(
        tmp_path,
        PF_INGEST_READ_TIMEOUT=str(READ_TIMEOUT),
        PF_INGEST_WORKERS=str(WORKERS),
        PF_SECRETS_DIR=str(secrets),
    )


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """``punchingfist ingest`` with the webhook Source of the ingest tests."""
    (tmp_path / "secrets" / "am").mkdir(parents=True)
    (tmp_path / "secrets" / "am" / "token").write_text(TOKEN)
    engine = make_engine(DatabaseSettings(url=f"sqlite:///{tmp_path}/pf.db"))
    migrate.upgrade(engine)
    with make_session_factory(engine).begin() as session:
        resources.upsert(session, "Source", "default", "alertmanager", source_spec())
    engine.dispose()
    port = free_port()
    with realserver.serving(
        ["ingest", "--bind", f"127.0.0.1:{port}"],
        env_for(tmp_path, tmp_path / "secrets"),
        port,
        tmp_path / "ingest.log",
    ):
        yield port, TOKEN


@pytest.fixture
def run(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """``punchingfist run`` on the examples, as ``make run`` starts it."""
    port = free_port()
    token = (EXAMPLES / "secrets" / "alertmanager-webhook" / "token").read_text().strip()
    with realserver.serving(
        ["run", "--config-dir", str(EXAMPLES), "--bind", f"127.0.0.1:{port}"],
        env_for(tmp_path, EXAMPLES / "secrets"),
        port,
        tmp_path / "run.log",
    ):
        # The controller stores the examples' Source a moment after ingest is up,
        # and each worker caches Sources for PF_RESOURCE_REFRESH_SECONDS (2 s).
        realserver.wait_status(port, "/webhook/alertmanager", f"Bearer {token}", 200)
        time.sleep(2.5)
        yield port, token


def post_webhook(port: int, token: str) -> tuple[int, float]:
    status, _body, took = realserver.post(port, "/webhook/alertmanager", f"Bearer {token}")
    return status, took


class Trickler(threading.Thread):
    """A client that holds a connection the way ``mode`` says.

    head: the request line whole, then header bytes one at a time;
    one-byte: one byte, then nothing;
    body: the head whole (with the right token, so the app would read the body),
    then the body a byte at a time;
    linger: the whole request at once, then it neither reads nor closes.
    """

    def __init__(self, port: int, token: str, mode: str) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.token = token
        self.mode = mode
        self.answer = b""
        self.closed_after: float | None = None
        self.halt = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        payload = json.dumps({"version": "4", "alerts": []}).encode()
        head = (
            "POST /webhook/alertmanager HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\n"
            f"Authorization: Bearer {self.token}\r\n"
            f"Content-Length: {len(payload)}\r\n"
        ).encode()
        with contextlib.suppress(OSError):
            if self.mode == "linger":
                self.sock.sendall(head + b"\r\n" + payload)
                self.halt.wait(30)
            elif self.mode == "one-byte":
                self.sock.sendall(b"P")
                self._read_answer(30)
            else:
                first, slow = (head + b"\r\n", payload) if self.mode == "body" else (head, b"X")
                self.sock.sendall(first)
                while not self.halt.is_set() and not self.answer:
                    self.sock.sendall(slow[:1])
                    slow = slow[1:] or b"a"
                    self._read_answer(0.3)
        self.closed_after = time.monotonic() - started
        self.sock.close()

    def _read_answer(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        with contextlib.suppress(TimeoutError):
            self.answer += self.sock.recv(4096)


def slow_clients(port: int, token: str, count: int, mode: str = "head") -> list[Trickler]:
    clients = []
    for _ in range(count):
        # One at a time, so that every worker gets its share: a worker whose event
        # loop is free would take them all at once and leave the other one idle.
        clients.append(Trickler(port, token, mode))
        clients[-1].start()
        time.sleep(0.1)
    # Let every one of them get accepted and start trickling.
    time.sleep(0.5)
    return clients


def webhook_is_answered_at_once(port: int, token: str, clients: list[Trickler]) -> None:
    try:
        for _ in range(3):
            status, took = post_webhook(port, token)
            assert status == 200
            assert took < PROMPT, f"webhook waited {took:.1f}s behind {len(clients)} slow clients"
    finally:
        for client in clients:
            client.halt.set()


@pytest.mark.parametrize("mode", ["head", "one-byte", "body", "linger"])
def test_slow_clients_do_not_hold_up_ingest(ingest: tuple[int, str], mode: str) -> None:
    port, token = ingest
    clients = slow_clients(port, token, SLOW_CLIENTS, mode)
    webhook_is_answered_at_once(port, token, clients)


def test_slow_clients_do_not_hold_up_run(run: tuple[int, str]) -> None:
    port, token = run
    clients = slow_clients(port, token, SLOW_CLIENTS)
    webhook_is_answered_at_once(port, token, clients)


def test_a_client_too_slow_gets_408_after_the_read_timeout(ingest: tuple[int, str]) -> None:
    port, token = ingest
    (client,) = slow_clients(port, token, 1, "one-byte")
    client.join(READ_TIMEOUT + 5)
    assert client.closed_after is not None
    assert READ_TIMEOUT - 0.5 <= client.closed_after <= READ_TIMEOUT + 2.5
    assert client.answer.startswith(b"HTTP/1.1 408 ")
    assert b"PF_INGEST_READ_TIMEOUT" in client.answer
