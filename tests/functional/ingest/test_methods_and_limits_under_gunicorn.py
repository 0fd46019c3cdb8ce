"""Status codes the real server gives for a wrong method and for a body too large.

- ``GET /api/v1/runs`` (no such route) answered ``405 method GET not allowed here``,
  because the webhook route takes POST on every path; it is a 404, and 405 stays for
  paths that exist (a route with other methods, or a Source's path).
- A chunked body over ``PF_INGEST_MAX_BODY_BYTES`` (no Content-Length to refuse it by)
  answered ``400 body is not valid JSON: Unterminated string``: the body was cut at
  the limit and parsed. It is a 413.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.functional.ingest.conftest import load_fixture, source_spec
from tests.functional.ingest.ingestserver import Ingest, running_ingest

pytestmark = pytest.mark.timeout(120)
LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingest]:
    from shared.db import migrate
    from shared.db.engines import make_engine
    from shared.settings import DatabaseSettings

    workdir = tmp_path_factory.mktemp("ingest")
    url = f"sqlite:///{workdir}/pf.db"
    engine = make_engine(DatabaseSettings(url=url))
    migrate.upgrade(engine)
    engine.dispose()
    with running_ingest(
        url,
        workdir,
        f"sqla+sqlite:///{workdir}/broker.db",
        {"alertmanager": source_spec()},
        PF_INGEST_MAX_BODY_BYTES=str(LIMIT),
    ) as server:
        yield server


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/runs"),
        ("GET", "/api/v1/sources"),
        ("GET", "/nothing/here"),
        ("DELETE", "/api/v1/runs"),
        ("GET", "/webhook/nobody"),
    ],
)
def test_an_unknown_path_is_404_whatever_the_method(ingest: Ingest, method: str, path: str) -> None:
    answer = ingest.request(method, path, headers={"Authorization": "Bearer api-test-token"})
    assert answer.status == 404, answer.body
    assert "no such endpoint" in answer.body["error"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/webhook/alertmanager", "POST"),  # a Source's path
        ("PUT", "/api/v1/alerts", "GET"),
        ("DELETE", "/healthz", "GET"),
    ],
)
def test_a_wrong_method_on_a_path_that_exists_is_405(
    ingest: Ingest, method: str, path: str, allowed: str
) -> None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        ingest.url + path, method=method, headers={"Authorization": "Bearer api-test-token"}
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=30)
    assert raised.value.code == 405
    assert allowed in raised.value.headers["Allow"]
    assert f"method {method} not allowed" in raised.value.read().decode()


def _chunked_post(ingest: Ingest, body_bytes: int) -> bytes:
    host, port = ingest.url.removeprefix("http://").rsplit(":", 1)
    head = (
        b"POST /webhook/alertmanager HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer s3cr3t-test-token\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"a" * 65536
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(head + b'1\r\n"\r\n')
        try:
            for _ in range(body_bytes // len(chunk)):
                conn.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            conn.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may answer and close before the whole body is sent
        answer = b""
        while data := conn.recv(65536):
            answer += data
    return answer


def test_a_chunked_body_over_the_limit_is_413(ingest: Ingest) -> None:
    answer = _chunked_post(ingest, 11 * LIMIT)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"PF_INGEST_MAX_BODY_BYTES" in answer
    # A chunked body within the limit is still read whole and judged.
    valid = _chunked_valid(ingest)
    assert valid.startswith(b"HTTP/1.1 200"), valid[:300]


def _chunked_valid(ingest: Ingest) -> bytes:
    import json

    body = json.dumps(load_fixture("01-firing-single.json")).encode()
    host, port = ingest.url.removeprefix("http://").rsplit(":", 1)
    half = len(body) // 2
    request = (
        b"POST /webhook/alertmanager HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer s3cr3t-test-token\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % half
        + body[:half]
        + b"\r\n"
        + b"%x\r\n" % (len(body) - half)
        + body[half:]
        + b"\r\n0\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(request)
        answer = b""
        while data := conn.recv(65536):
            answer += data
    return answer


def test_nothing_in_the_log_raised(ingest: Ingest) -> None:
    assert "Traceback" not in ingest.log()
