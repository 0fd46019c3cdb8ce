"""The controller's Secret check gives up on an API server that never answers.

Before, ``read_namespaced_secret`` ran without ``_request_timeout``: one API server
that accepted the connection and then said nothing held the status refresh forever.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from services.controller.secrets import kubernetes_check


@pytest.fixture
def silent_api_server() -> Iterator[str]:
    """Accepts connections and reads requests, but never answers one."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=2)
    for connection in held:
        connection.close()
    server.close()


@pytest.mark.timeout(30)
def test_secret_check_times_out_on_a_silent_api_server(silent_api_server: str) -> None:
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = silent_api_server
    configuration.retries = 0  # one attempt: the test measures one request's bound
    api_client = client.ApiClient(configuration)
    try:
        started = time.monotonic()
        problem = kubernetes_check(client.CoreV1Api(api_client))("monitoring", "am", "token")
        elapsed = time.monotonic() - started
    finally:
        api_client.close()  # type: ignore[no-untyped-call]
    assert problem is not None
    assert "Secret monitoring/am cannot be read" in problem
    assert elapsed < 15
