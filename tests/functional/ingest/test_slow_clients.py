"""Slow clients against the real server, started as ``punchingfist ingest`` and ``run``.

Clients that trickle a request byte by byte (or send one byte and stall) must not
delay anyone else: with two sync workers, two of them held all intake and a webhook
waited 39 s. Here four times as many trickle while a real webhook is sent, and it
must be answered within about a second; the tricklers get 408 once
``PF_INGEST_READ_TIMEOUT`` has passed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.db import migrate, resources
from shared.db.engines import make_engine, make_session_factory
from shared.settings import DatabaseSettings
from tests.functional.ingest.conftest import FIXTURES, TOKEN, source_spec

pytestmark = pytest.mark.timeout(90)
PUNCHINGFIST = [sys.executable, "-m", "services.cli"]
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
WORKERS = 2
SLOW_CLIENTS = 4 * WORKERS
READ_TIMEOUT = 4.0
# What "answered at once" means on a shared two-core machine.
PROMPT = 1.5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def base_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PF_DATABASE_URL": f"sqlite:///{tmp_path}/pf.db",
        "PF_VAR_DIR": str(tmp_path / "var"),
        "PF_INGEST_READ_TIMEOUT": str(READ_TIMEOUT),
        "PF_INGEST_WORKERS": str(WORKERS),
        "PF_LOG_FORMAT": "text",
    }


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
    env = {**base_env(tmp_path), "PF_SECRETS_DIR": str(tmp_path / "secrets")}
    process = subprocess.Popen([*PUNCHINGFIST, "ingest", "--bind", f"127.0.0.1:{port}"], env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield port, TOKEN
    finally:
        stop(process)


@pytest.fixture
def run(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """``punchingfist run`` on the examples, as ``make run`` starts it."""
    port = free_port()
    env = {**base_env(tmp_path), "PF_SECRETS_DIR": str(EXAMPLES / "secrets")}
    process = subprocess.Popen(
        [*PUNCHINGFIST, "run", "--config-dir", str(EXAMPLES), "--bind", f"127.0.0.1:{port}"],
        env=env,
    )
    token = (EXAMPLES / "secrets" / "alertmanager-webhook" / "token").read_text().strip()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        # The controller stores the examples' Source a moment after ingest is up.
        deadline = time.monotonic() + 30
        while post_webhook(port, token)[0] == 404:
            assert time.monotonic() < deadline, "the examples' Source never arrived"
            time.sleep(0.2)
        # Each worker caches the Sources for PF_RESOURCE_REFRESH_SECONDS (2 s).
        time.sleep(2.5)
        yield port, token
    finally:
        stop(process)


def post_webhook(port: int, token: str) -> tuple[int, float]:
    body = (FIXTURES / "01-firing-single.json").read_bytes()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhook/alertmanager",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, time.monotonic() - started


class Trickler(threading.Thread):
    """A client that sends its request a byte at a time (``body``: the head is whole)."""

    def __init__(
        self, port: int, token: str = "", *, body: bool = False, stall: bool = False
    ) -> None:
        super().__init__(daemon=True)
        # With the right token, the app would read the body (not refuse the head).
        self.token = token
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.body = body
        self.stall = stall
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
        if self.body:
            self.sock.sendall(head + b"\r\n")
            slow = payload
        else:
            slow = b"X-Slow: " + b"a" * 200
        self.sock.settimeout(0.3)
        for index in range(len(slow)):
            if self.halt.is_set():
                break
            try:
                self.sock.send(slow[index : index + 1])
            except OSError:
                break
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            self.answer += data
            if not data or self.stall:
                break
            if b"\r\n\r\n" in self.answer:
                break
        if self.stall:
            self.sock.settimeout(30)
            try:
                self.answer += self.sock.recv(4096)
            except OSError:
                pass
        self.closed_after = time.monotonic() - started
        self.sock.close()


def slow_clients(port: int, token: str, count: int, **kind: bool) -> list[Trickler]:
    clients = [Trickler(port, token, **kind) for _ in range(count)]
    for client in clients:
        client.start()
    # Let every one of them get accepted and start trickling.
    time.sleep(1.0)
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


@pytest.mark.parametrize(
    "kind", [{}, {"stall": True}, {"body": True}], ids=["head-trickle", "one-byte", "body-trickle"]
)
def test_slow_clients_do_not_hold_up_ingest(ingest: tuple[int, str], kind: dict[str, bool]) -> None:
    port, token = ingest
    clients = slow_clients(port, token, SLOW_CLIENTS, **kind)
    webhook_is_answered_at_once(port, token, clients)


def test_slow_clients_do_not_hold_up_run(run: tuple[int, str]) -> None:
    port, token = run
    clients = slow_clients(port, token, SLOW_CLIENTS)
    webhook_is_answered_at_once(port, token, clients)


def test_a_client_too_slow_gets_408_after_the_read_timeout(ingest: tuple[int, str]) -> None:
    port, token = ingest
    (client,) = slow_clients(port, token, 1, stall=True)
    client.join(READ_TIMEOUT + 5)
    assert client.closed_after is not None
    assert READ_TIMEOUT - 0.5 <= client.closed_after <= READ_TIMEOUT + 2.5
    assert client.answer.startswith(b"HTTP/1.1 408 ")
    assert b"PF_INGEST_READ_TIMEOUT" in client.answer
