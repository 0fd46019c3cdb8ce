"""What ``test_bad_input.py`` needs beside the e2e harness: a fresh database per
backend, the row counts of every table, a Slack-signing HTTP session, and the named
corpus of bad webhooks (each with the status it must get and the words its message
must contain).

The webhook builders and the wider corpus come from
``tests/functional/ingest/bad_webhooks.py`` and the gunicorn server from
``tests/functional/ingest/ingestserver.py``: nothing of them is copied here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from shared.db import migrate
from shared.db.engines import make_engine
from shared.settings import DatabaseSettings
from tests.functional.ingest import bad_webhooks as corpus
from tests.functional.ingest.conftest import TOKEN

POSTGRES_ADMIN_URL = os.environ.get(
    "PF_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# The server's default body limit (PF_INGEST_MAX_BODY_BYTES), which these tests keep.
MAX_BODY = 10 * 1024 * 1024
SIGNING_SECRET = "slack-signing-secret-for-tests"


def postgres_reachable() -> bool:
    engine = make_engine(DatabaseSettings(url=POSTGRES_ADMIN_URL))
    try:
        with engine.connect():
            return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


@contextlib.contextmanager
def fresh_database(backend: str, workdir: Path) -> Iterator[str]:
    """An empty database migrated to head: a SQLite file, or a PostgreSQL database
    of its own (``bi_...``) dropped at the end."""
    if backend == "sqlite":
        url = f"sqlite:///{workdir}/pf.db"
        engine = make_engine(DatabaseSettings(url=url))
        migrate.upgrade(engine)
        engine.dispose()
        yield url
        return
    name = f"bi_{uuid.uuid4().hex[:12]}"
    admin = make_engine(DatabaseSettings(url=POSTGRES_ADMIN_URL)).execution_options(
        isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        engine = make_engine(DatabaseSettings(url=url))
        migrate.upgrade(engine)
        engine.dispose()
        yield url
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def row_counts(engine: sa.Engine) -> dict[str, int]:
    """Rows of every table of the schema (not only the ones a webhook should write)."""
    names = sorted(sa.inspect(engine).get_table_names())
    with engine.connect() as connection:
        return {
            name: connection.execute(sa.text(f'SELECT count(*) FROM "{name}"')).scalar_one()  # noqa: S608
            for name in names
        }


def wait_for(what: str, condition: Any, timeout: float = 30.0) -> Any:
    """Poll ``condition()`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"waited {timeout}s for {what}"
        time.sleep(0.05)


def slack_signature(body: bytes, timestamp: str) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(SIGNING_SECRET.encode(), base, hashlib.sha256).hexdigest()


class SlackSigningSession(requests.Session):
    """Signs what it sends to ``/slack/interactions`` as Slack would.

    Schemathesis generates the body; only a signed one gets past the signature check
    to the code that parses it.
    """

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if (request.path_url or "").startswith("/slack/interactions"):
            body = request.body or b""
            raw = body.encode() if isinstance(body, str) else bytes(body)  # type: ignore[arg-type]
            timestamp = str(int(time.time()))
            request.headers["X-Slack-Request-Timestamp"] = timestamp
            request.headers["X-Slack-Signature"] = slack_signature(raw, timestamp)
        return super().send(request, **kwargs)


def slack_click(approval_id: str, action: str = "punchingfist_deny") -> dict[str, Any]:
    """A ``block_actions`` payload: one click on an approval's button."""
    return {
        "type": "block_actions",
        "user": {"id": "U0SCHEMA", "username": "schemathesis"},
        "team": {"id": "T0TEST"},
        "actions": [{"action_id": action, "block_id": "pf-approval", "value": approval_id}],
    }


@dataclasses.dataclass(frozen=True)
class BadRequest:
    """A request that must be refused with ``status`` and a message containing ``says``."""

    name: str
    body: bytes
    status: int
    says: str
    headers: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {TOKEN}",
        }
    )
    path: str = "/webhook/alertmanager"
    method: str = "POST"
    chunked: bool = False


def _headers(**changes: str | None) -> dict[str, str]:
    headers: dict[str, str | None] = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {TOKEN}",
        **changes,
    }
    return {name: value for name, value in headers.items() if value is not None}


def _one(name: str, **changes: Any) -> bytes:
    return corpus.encode(corpus.group(corpus.alert(name, **changes)))


def _without(document: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key not in keys}


def alerts_body(case: str, count: int) -> bytes:
    return corpus.encode(corpus.group(*(corpus.alert(case, n) for n in range(count))))


GOOD = _one("good")

BAD_REQUESTS: list[BadRequest] = [
    # malformed JSON
    BadRequest("truncated-json", b'{"version": "4", "alerts": [', 400, "not valid JSON"),
    BadRequest("empty-body", b"", 400, "not valid JSON"),
    BadRequest("single-quoted-json", b"{'version': '4'}", 400, "not valid JSON"),
    BadRequest("nan", GOOD.replace(b'"warning"', b"NaN", 1), 400, "not a JSON number"),
    # deep nesting
    BadRequest("100k-nested-arrays", b"[" * 100_000 + b"]" * 100_000, 400, "nested deeper"),
    BadRequest(
        "100k-nested-objects", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, 400, "nested deeper"
    ),
    BadRequest(
        "100k-nested-inside-an-alert",
        GOOD.replace(
            b'"status": "firing", "labels"',
            b'"x": ' + b"[" * 100_000 + b"]" * 100_000 + b', "status": "firing", "labels"',
            1,
        ),
        400,
        "nested deeper",
    ),
    # invalid UTF-8
    BadRequest("invalid-utf8", GOOD.replace(b"CorpusAlert", b"Corpus\xffAlert", 1), 400, "UTF-8"),
    BadRequest(
        "latin-1-body",
        GOOD.replace(b"CorpusAlert", "Caf\u00e9".encode("latin-1"), 1),
        400,
        "UTF-8",
    ),
    BadRequest(
        "overlong-utf8-slash", GOOD.replace(b"CorpusAlert", b"Corpus\xc0\xafAlert", 1), 400, "UTF-8"
    ),
    # wrong types
    BadRequest("body-is-a-list", b"[]", 422, "must be a JSON object"),
    BadRequest(
        "version-is-a-number",
        corpus.encode(corpus.group(corpus.alert("v"), version=4)),
        422,
        "version",
    ),
    BadRequest("alerts-is-a-string", corpus.encode(corpus.group(alerts="firing")), 422, "alerts"),
    BadRequest(
        "truncated-alerts-is-a-string",
        corpus.encode(corpus.group(corpus.alert("t"), truncatedAlerts="many")),
        422,
        "truncatedAlerts",
    ),
    BadRequest("label-value-is-a-number", _one("n", labels={"pod": 3}), 422, "labels.pod"),
    BadRequest("starts-at-is-a-number", _one("s", startsAt=1764129759), 422, "startsAt"),
    # missing fields
    BadRequest("empty-object", b"{}", 422, "version"),
    BadRequest(
        "no-alerts",
        corpus.encode(_without(corpus.group(corpus.alert("a")), "alerts")),
        422,
        "alerts",
    ),
    BadRequest(
        "no-status",
        corpus.encode(_without(corpus.group(corpus.alert("a")), "status")),
        422,
        "status",
    ),
    BadRequest(
        "alert-without-starts-at",
        corpus.encode(corpus.group(_without(corpus.alert("a"), "startsAt"))),
        422,
        "startsAt",
    ),
    BadRequest(
        "alert-without-labels",
        corpus.encode(corpus.group(_without(corpus.alert("a"), "labels"))),
        422,
        "labels",
    ),
    # enormous label values where a column bounds them
    BadRequest(
        "5-MiB-alertname",
        _one("big-name", labels={"alertname": "A" * (5 << 20)}),
        422,
        "at most 255",
    ),
    BadRequest(
        "1-MiB-severity",
        _one("big-severity", labels={"severity": "s" * (1 << 20)}),
        422,
        "at most 32",
    ),
    BadRequest(
        "1-MiB-label-name-with-nul", _one("big-nul", labels={"x" * (1 << 20): "\u0000"}), 422, "NUL"
    ),
    # huge bodies
    BadRequest(
        "11-MiB-body", _one("huge", labels={"blob": "x" * (11 << 20)}), 413, "larger than the limit"
    ),
    BadRequest(
        "11-MiB-body-chunked",
        _one("huge-chunked", labels={"blob": "x" * (11 << 20)}),
        413,
        "larger than the limit",
        chunked=True,
    ),
    BadRequest(
        "40000-alerts-over-the-limit", alerts_body("40000", 40_000), 413, "larger than the limit"
    ),
    # wrong or no token
    BadRequest("no-token", GOOD, 401, "bearer token", headers=_headers(Authorization=None)),
    BadRequest(
        "wrong-token", GOOD, 401, "bearer token", headers=_headers(Authorization="Bearer wrong")
    ),
    BadRequest(
        "token-with-suffix",
        GOOD,
        401,
        "bearer token",
        headers=_headers(Authorization=f"Bearer {TOKEN}x"),
    ),
    BadRequest(
        "basic-auth",
        GOOD,
        401,
        "bearer token",
        headers=_headers(Authorization="Basic YW06czNjcjN0"),
    ),
    BadRequest(
        "empty-bearer", GOOD, 401, "bearer token", headers=_headers(Authorization="Bearer ")
    ),
    # wrong content type
    BadRequest(
        "text-plain",
        GOOD,
        415,
        "application/json",
        headers=_headers(**{"Content-Type": "text/plain"}),
    ),
    BadRequest(
        "form-urlencoded",
        GOOD,
        415,
        "application/json",
        headers=_headers(**{"Content-Type": "application/x-www-form-urlencoded"}),
    ),
    BadRequest(
        "no-content-type", GOOD, 415, "application/json", headers=_headers(**{"Content-Type": None})
    ),
    # not a webhook endpoint
    BadRequest("unknown-source", GOOD, 404, "no Source listens", path="/webhook/nobody"),
    BadRequest("nul-in-path", GOOD, 404, "no Source listens", path="/webhook/alertmanager%00"),
    BadRequest("get-on-the-webhook", b"", 405, "method GET not allowed", method="GET"),
]
