"""What gunicorn refuses before Flask sees it is answered in JSON too.

A request line over 4094 bytes (414), a header over 8190 bytes (431) and a
malformed request line (400) were answered with gunicorn's HTML page, while every
other refusal of the API is JSON whose ``error`` names the problem (found by the
bad-input suite, tests/e2e/test_bad_input.py). Status and reason stay gunicorn's.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.db import migrate
from shared.db.engines import make_engine
from shared.settings import DatabaseSettings
from tests.functional.ingest.conftest import source_spec
from tests.functional.ingest.ingestserver import Ingest, running_ingest

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def ingest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingest]:
    workdir: Path = tmp_path_factory.mktemp("ingest")
    url = f"sqlite:///{workdir}/pf.db"
    engine = make_engine(DatabaseSettings(url=url))
    migrate.upgrade(engine)
    engine.dispose()
    with running_ingest(
        url, workdir, f"sqla+sqlite:///{workdir}/broker.db", {"alertmanager": source_spec()}
    ) as server:
        yield server


def _raw(ingest: Ingest, request: bytes) -> tuple[str, dict[str, str], bytes]:
    host, port = ingest.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)
    }
    return status, headers, body


@pytest.mark.parametrize(
    ("request_bytes", "status", "says"),
    [
        (
            b"GET /webhook/" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            "HTTP/1.1 414 URI Too Long",
            "Request Line is too large",
        ),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n",
            "HTTP/1.1 431 Request Header Fields Too Large",
            "Error parsing headers",
        ),
        (b"GET\r\n\r\n", "HTTP/1.1 400 Bad Request", "Invalid Request Line"),
    ],
    ids=["request-line-too-long", "header-too-large", "malformed-request-line"],
)
def test_a_request_gunicorn_refuses_gets_a_json_error(
    ingest: Ingest, request_bytes: bytes, status: str, says: str
) -> None:
    answer_status, headers, body = _raw(ingest, request_bytes)
    assert answer_status == status, body[:300]
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    assert says in json.loads(body)["error"]
