"""Bad input against the real gunicorn ingest, on a fresh PostgreSQL database and on SQLite.

Three parts, each against ``punchingfist ingest`` as a user starts it (Redis broker,
the read API and Slack interactions switched on):

- a named corpus of bad webhooks (``badinput_support.BAD_REQUESTS``: malformed JSON,
  wrong types, missing fields, huge bodies, 100k-deep nesting, invalid UTF-8,
  enormous label values, wrong/no token, wrong content type) and every refusal of
  the functional corpus (``bad_webhooks.CASES``): each gets its 4xx, never a 5xx, a
  JSON body whose ``error`` names the problem, and the row count of every table is
  unchanged;
- 10,000 alerts in one notification: accepted whole. Ingest bounds a notification by
  its size (PF_INGEST_MAX_BODY_BYTES, 10 MiB: 40,000 alerts are a 413), not by a
  count: AlertManager already cut the group (``truncatedAlerts``), and refusing what
  fits would make it retry the same group forever. All or nothing: every alert, link
  and the one source event, or (the worker killed in the middle of the write, on
  PostgreSQL) not one row, and AlertManager's retry then records all of them;
- schemathesis generates requests (positive and negative) for every operation of
  the served ``/api/v1/openapi.json`` with the tokens supplied, and checks that no
  answer is a 5xx and every answer conforms to the document (status, content type,
  headers, body).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import requests
import schemathesis
import sqlalchemy as sa
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.ingest import openapi
from shared.db.engines import make_engine
from shared.db.models import Approval, SinkDelivery, StepRun, utcnow
from shared.settings import DatabaseSettings
from tests.e2e import badinput_support as support
from tests.functional.ingest import bad_webhooks as corpus
from tests.functional.ingest.conftest import API_TOKEN, TOKEN, source_spec
from tests.functional.ingest.ingestserver import Ingest, running_ingest
from tests.support.workers import flushed_redis

pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(300)]

REDIS_URL = os.environ.get("PF_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
SOURCES = {
    "alertmanager": source_spec(matchers=corpus.SOURCE_MATCHERS),
    # Its own start cap: the 10,000 alerts have used up the other's for a minute.
    "seed": source_spec(),
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Per operation and generation mode; bounded so that the whole run stays well under
# a minute per backend on two shared cores.
EXAMPLES = int(os.environ.get("PF_E2E_SCHEMATHESIS_EXAMPLES", "30"))


class Server:
    """A running ingest and the database it writes."""

    def __init__(self, ingest: Ingest, database_url: str, backend: str) -> None:
        self.ingest, self.url, self.backend = ingest, ingest.url, backend
        self.database_url = database_url
        self.engine = make_engine(DatabaseSettings(url=database_url))

    def counts(self) -> dict[str, int]:
        return support.row_counts(self.engine)

    def send(self, case: support.BadRequest) -> requests.Response:
        body: Any = case.body
        if case.chunked:
            body = (case.body[start : start + 65536] for start in range(0, len(case.body), 65536))
        return requests.request(
            case.method,
            self.url + case.path,
            data=body if case.body or case.chunked else None,
            headers=dict(case.headers),
            timeout=120,
        )

    def post(self, body: bytes, source: str = "alertmanager") -> requests.Response:
        return requests.post(
            self.url + f"/webhook/{source}",
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
            timeout=120,
        )


def _backends() -> list[Any]:
    return ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    with flushed_redis(REDIS_URL) as url:
        yield url


def _serving(backend: str, workdir: Path, broker: str, workers: int = 2) -> Iterator[Server]:
    if backend == "postgresql" and not support.postgres_reachable():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {support.POSTGRES_ADMIN_URL}")
        pytest.skip(f"PostgreSQL is not reachable at {support.POSTGRES_ADMIN_URL}")
    signing_secret = workdir / "slack-signing-secret"
    signing_secret.write_text(support.SIGNING_SECRET)
    with (
        support.fresh_database(backend, workdir) as database_url,
        running_ingest(
            database_url,
            workdir,
            broker,
            SOURCES,
            workers=workers,
            PF_SLACK_SIGNING_SECRET_FILE=str(signing_secret),
        ) as ingest,
    ):
        server = Server(ingest, database_url, backend)
        try:
            yield server
        finally:
            server.engine.dispose()


@pytest.fixture(scope="module", params=_backends())
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, broker: str
) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp(f"badinput-{request.param}")
    yield from _serving(request.param, workdir, broker)


def _no_traceback(server: Server) -> None:
    log = server.ingest.log()
    assert "Traceback" not in log, log[log.index("Traceback") - 2000 :][:6000]


def _refusal_problems(server: Server, case: support.BadRequest) -> list[str]:
    before = server.counts()
    answer = server.send(case)
    after = server.counts()
    problems = []
    if answer.status_code != case.status:
        problems.append(f"status {answer.status_code}, want {case.status}: {answer.text[:300]}")
    try:
        error = answer.json().get("error")
    except ValueError:
        problems.append(
            f"not a JSON answer: {answer.headers.get('Content-Type')} {answer.text[:200]}"
        )
    else:
        if not isinstance(error, str) or case.says not in error:
            problems.append(f"error {str(error)[:300]!r} does not say {case.says!r}")
    changed = {name: after[name] - before[name] for name in after if after[name] != before[name]}
    if changed:
        problems.append(f"a refused request wrote rows: {changed}")
    return problems


def test_every_bad_webhook_is_a_4xx_naming_the_problem_and_writes_nothing(server: Server) -> None:
    failures = {
        case.name: problems
        for case in support.BAD_REQUESTS
        if (problems := _refusal_problems(server, case))
    }
    assert failures == {}, "\n".join(f"{name}: {p}" for name, p in failures.items())
    _no_traceback(server)


def test_every_refusal_of_the_functional_corpus_writes_no_row_of_any_table(
    server: Server,
) -> None:
    refusals = [case for case in corpus.CASES if case.status >= 400]
    failures = {}
    for case in refusals:
        # The functional corpus says the status; the message must name what is wrong.
        says = {400: "body is not", 422: "webhook"}[case.status]
        if case.name in {"body-is-a-list", "body-is-a-string", "body-is-null", "body-is-a-number"}:
            says = "must be a JSON object"
        bad = support.BadRequest(case.name, case.body, case.status, says)
        if problems := _refusal_problems(server, bad):
            failures[case.name] = problems
    assert failures == {}, "\n".join(f"{name}: {p}" for name, p in failures.items())
    assert len(refusals) >= 40


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in after if after[name] != before[name]}


def test_10000_alerts_in_one_notification_are_recorded_whole(server: Server) -> None:
    body = support.alerts_body(f"ten-thousand-{server.backend}", 10_000)
    assert len(body) < support.MAX_BODY
    before = server.counts()
    answer = server.post(body)
    assert answer.status_code == 200, answer.text[:500]
    result = answer.json()
    delta = _delta(before, server.counts())
    assert (result["received"], result["new"], result["refused"]) == (10_000, 10_000, 0)
    # The Source's start cap (100 a minute by default, shared with the other tests of
    # the module) starts at most 100 runs; the rest are recorded as rate limited.
    assert 0 < result["workflowsStarted"] <= 100
    assert result["workflowsStarted"] + result["rateLimited"] == 10_000
    assert delta["alerts"] == 10_000
    assert delta["alert_source_events"] == 10_000
    assert delta["source_events"] == 1
    assert delta["workflow_runs"] == result["workflowsStarted"]
    assert len(set(result["alerts"])) == 10_000
    # The same notification again (AlertManager's repeat_interval): all deduplicated.
    again = server.post(body).json()
    assert (again["new"], again["deduplicated"], again["workflowsStarted"]) == (0, 10_000, 0)
    _no_traceback(server)


def test_10000_alerts_with_one_bad_record_the_9999_and_name_the_one(server: Server) -> None:
    alerts = [corpus.alert(f"9999-{server.backend}", n) for n in range(10_000)]
    alerts[7_777]["labels"]["pod"] = "api-\u0000"
    before = server.counts()
    answer = server.post(corpus.encode(corpus.group(*alerts)))
    assert answer.status_code == 200, answer.text[:500]
    result = answer.json()
    assert (result["new"], result["refused"]) == (9_999, 1)
    assert result["refusals"] == [
        {
            "index": 7_777,
            "field": "alerts.7777.labels.pod",
            "code": "nul",
            "reason": "alerts.7777.labels.pod: the value contains a NUL character",
        }
    ]
    delta = _delta(before, server.counts())
    assert (delta["alerts"], delta["source_events"]) == (9_999, 1)


def test_an_enormous_label_value_is_stored_whole_not_cut(server: Server) -> None:
    blob = "x" * (5 << 20)
    body = corpus.encode(
        corpus.group(corpus.alert(f"blob-{server.backend}", labels={"blob": blob}))
    )
    answer = server.post(body)
    assert answer.status_code == 200, answer.text[:300]
    alert_id = answer.json()["alerts"][0]
    stored = server.ingest.get(f"/api/v1/alerts/{alert_id}").body
    assert stored["labels"]["blob"] == blob


def _pg_ingest_waiting_on(engine: sa.Engine, table: str) -> bool:
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock' AND query ILIKE :insert"
    )
    with engine.connect() as connection:
        return bool(connection.execute(query, {"insert": f"INSERT INTO {table}%"}).scalar_one())


def _pg_open_transactions(engine: sa.Engine) -> int:
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND state <> 'idle'"
    )
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def _worker_pids(ingest: Ingest) -> list[int]:
    """The gunicorn workers: children of the master (``punchingfist ingest``)."""
    master = ingest.process.pid
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


@pytest.mark.postgres
def test_a_worker_killed_in_the_middle_of_10000_alerts_leaves_no_row(
    tmp_path: Path, broker: str
) -> None:
    """All or nothing, proved: the write is held (a test transaction locks
    workflow_runs, inserted last) after the alerts and links are written, the workers
    are SIGKILLed, and not one row remains; the retry then records everything."""
    server_context = _serving("postgresql", tmp_path, broker, workers=1)
    server = next(server_context)
    try:
        body = support.alerts_body("killed", 10_000)
        before = server.counts()
        answers: list[Any] = []

        def send() -> None:
            try:
                answers.append(server.post(body))
            except requests.RequestException as exc:
                answers.append(exc)

        with server.engine.connect() as holder:
            holder.execute(sa.text("LOCK TABLE workflow_runs IN EXCLUSIVE MODE"))
            sender = threading.Thread(target=send)
            sender.start()
            support.wait_for(
                "ingest to block on INSERT INTO workflow_runs",
                lambda: _pg_ingest_waiting_on(server.engine, "workflow_runs"),
            )
            for pid in _worker_pids(server.ingest):
                os.kill(pid, signal.SIGKILL)
            sender.join(timeout=60)
            holder.rollback()
        assert len(answers) == 1
        assert not isinstance(answers[0], requests.Response), answers[0].text[:300]
        support.wait_for(
            "the killed transaction to end", lambda: _pg_open_transactions(server.engine) == 0
        )
        assert server.counts() == before
        # AlertManager retries what got no answer: now everything is recorded.
        retried = support.wait_for("a new worker", lambda: _answer_or_none(server, body))
        assert retried.status_code == 200, retried.text[:300]
        assert retried.json()["new"] == 10_000
        assert _delta(before, server.counts())["alerts"] == 10_000
    finally:
        server_context.close()


def _answer_or_none(server: Server, body: bytes) -> requests.Response | None:
    try:
        return server.post(body)
    except requests.ConnectionError:
        return None


def _seed(server: Server) -> dict[str, str]:
    """An alert, its run with a step and a delivery, and two pending approvals, so
    that the read API answers with real objects (not only 404) for the conformance
    check."""
    answer = server.post(corpus.encode(corpus.group(corpus.alert("seed"))), source="seed")
    assert answer.status_code == 200, answer.text
    result = answer.json()
    approvals = {"approval_id": uuid.uuid4(), "slack_approval_id": uuid.uuid4()}
    with server.engine.begin() as connection:
        connection.execute(
            sa.insert(Approval.__table__),
            [
                {
                    "id": key,
                    "run_id": uuid.UUID(result["runs"][0]),
                    "step_index": 0,
                    "step_name": "investigate",
                    "status": "pending",
                    "request": {"action": "restart", "kind": "Deployment", "name": "web"},
                    "what": "restart-rollout deployment shop/web",
                    "requested_by": "agent",
                    "why": "OOMKilled",
                    "created_at": utcnow(),
                    "expires_at": utcnow() + dt.timedelta(days=1),
                }
                for key in approvals.values()
            ],
        )
    now, run_id = utcnow(), uuid.UUID(result["runs"][0])
    with server.engine.begin() as connection:
        connection.execute(
            sa.insert(StepRun.__table__),
            {
                "run_id": run_id,
                "index": 0,
                "name": "investigate",
                "type": "agent",
                "phase": "Succeeded",
                "attempts": 1,
                "output": {"category": "memory", "confidence": 0.8},
                "started_at": now - dt.timedelta(seconds=3),
                "completed_at": now,
            },
        )
        connection.execute(
            sa.insert(SinkDelivery.__table__),
            {
                "run_id": run_id,
                "sink_name": "slack",
                "phase": "Delivered",
                "attempts": 1,
                "response": {"channel": "C0ALERTS", "ts": "1764129759.000100"},
                "sent_at": now,
            },
        )
    return {
        "alert_id": result["alerts"][0],
        "run_id": result["runs"][0],
        **{name: str(key) for name, key in approvals.items()},
    }


def _seeded_cases(operation: Any, seeded: dict[str, str]) -> list[schemathesis.Case]:
    """Requests about the seeded alert, run and approvals, which exist."""
    headers = _auth(operation.path)
    if operation.path == openapi.SLACK_PATH:
        return [
            operation.Case(
                headers=headers,
                body={"payload": json.dumps(support.slack_click(seeded["slack_approval_id"]))},
                media_type="application/x-www-form-urlencoded",
            )
        ]
    if operation.path == "/api/v1/approvals/{approval_id}":
        return [
            operation.Case(
                path_parameters={"approval_id": seeded["approval_id"]},
                headers=headers,
                body={"decision": "approve", "by": "schemathesis", "comment": "ok"},
                media_type="application/json",
            )
        ]
    return [
        operation.Case(path_parameters={name: seeded[name]}, headers=headers)
        for name in ("alert_id", "run_id")
        if "{" + name + "}" in operation.path
    ]


def _auth(path: str) -> dict[str, str]:
    token = API_TOKEN if path.startswith("/api/") else TOKEN
    return {"Authorization": f"Bearer {token}"}


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(server: Server) -> None:
    seeded = _seed(server)
    schema = schemathesis.openapi.from_url(
        server.url + openapi.DOCUMENT_PATH, headers=_auth(openapi.DOCUMENT_PATH)
    )
    session = support.SlackSigningSession()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    # Schemathesis leaves out the operation that serves the document it tests with.
    documented = {
        f"{method.upper()} {path}"
        for path, item in openapi.document(support.MAX_BODY)["paths"].items()
        for method in item
    }
    tested = {operation.label for operation in operations}
    assert documented - tested == {f"GET {openapi.DOCUMENT_PATH}"}
    for operation in operations:
        fixed: dict[str, Any] = {"headers": _auth(operation.path)}
        if operation.path == openapi.WEBHOOK_PATH:
            fixed["path_parameters"] = {"source": "alertmanager"}
        # The seeded objects first, then what hypothesis makes up.
        for case in _seeded_cases(operation, seeded):
            failures.extend(_check(case, server, session))
        failures.extend(_hostile_values(operation, server, session, seeded))
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode, **fixed)

            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=os.environ.get("PF_E2E_RANDOM") is None,
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                suppress_health_check=list(hypothesis.HealthCheck),
            )
            @hypothesis.given(case=strategy)
            def run(case: schemathesis.Case) -> None:
                failures.extend(_check(case, server, session))

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                # Nothing to make invalid: an operation without parameters or body.
                assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
    assert failures == [], "\n\n".join(sorted(set(failures))[:20])
    _no_traceback(server)


# Values schemathesis's generators rarely or never make, and which once reached the
# database or the parser's recursion: NUL (PostgreSQL refuses it in any text),
# a lone UTF-16 surrogate (no driver can encode it), nesting 100,000 deep.
HOSTILE_STRINGS = ("\u0000", "a\ud800")
DEEP = "[" * 100_000 + "]" * 100_000
VALID_BODIES: dict[str, Any] = {
    openapi.WEBHOOK_PATH: corpus.group(corpus.alert("hostile")),
    "/api/v1/approvals/{approval_id}": {"decision": "deny", "by": "schemathesis", "comment": ""},
}


def _hostile_values(
    operation: Any, server: Server, session: requests.Session, seeded: dict[str, str]
) -> list[str]:
    """Each parameter and each top-level string of the body set to a hostile value in
    an otherwise valid request; each body replaced by 100,000 nested arrays."""
    valid_path = {"source": "alertmanager", **seeded}
    path_values = {name: valid_path.get(name, "x") for name in _parameter_names(operation, "path")}
    requests_to_send: list[tuple[str, dict[str, Any]]] = []
    for name in _parameter_names(operation, "query"):
        requests_to_send += [
            (f"query {name}", {"params": {name: "\x00"}}),
            # Over gunicorn's request line (414, found by schemathesis).
            (f"query {name} of 5,000 characters", {"params": {name: "a" * 5000}}),
        ]
    for name in path_values:
        requests_to_send += [(f"path {name}", {"path": {**path_values, name: "%00"}})]
    base = VALID_BODIES.get(operation.path)
    if base is not None:
        requests_to_send.append(("deep body", {"data": DEEP}))
        for key, value in base.items():
            if isinstance(value, str):
                requests_to_send += [
                    (f"body {key}={bad!r}", {"data": json.dumps({**base, key: bad})})
                    for bad in HOSTILE_STRINGS
                ]
    if operation.path == openapi.SLACK_PATH:
        click = support.slack_click(seeded["slack_approval_id"])
        for bad in HOSTILE_STRINGS:
            click["user"]["username"] = bad
            requests_to_send.append((f"user {bad!r}", {"form": json.dumps(click)}))
        requests_to_send.append(("deep payload", {"form": "[" * 60_000}))
    failures = []
    for what, change in requests_to_send:
        path = operation.path.format(**change.get("path", path_values))
        headers = {**_auth(operation.path), "Content-Type": "application/json"}
        data = change.get("data")
        if "form" in change:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            data = urllib.parse.urlencode({"payload": change["form"]})
        response = session.request(
            operation.method.upper(),
            server.url + path,
            params=change.get("params"),
            data=data,
            headers=headers,
            timeout=60,
        )
        case = operation.Case(headers=headers)
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as exc:  # schemathesis reports every failed check as one error
            failures.append(f"{operation.label} with {what}: {exc}"[:3000])
    return failures


def _parameter_names(operation: Any, location: str) -> list[str]:
    return [
        parameter["name"]
        for parameter in operation.definition.raw.get("parameters", [])
        if parameter["in"] == location
    ]


def _check(case: schemathesis.Case, server: Server, session: requests.Session) -> list[str]:
    response = case.call(base_url=server.url, session=session, timeout=60)
    try:
        case.validate_response(response, checks=CHECKS)
    except Exception as exc:  # schemathesis reports every failed check as one error
        return [f"{case.operation.label}: {exc}"[:3000]]
    return []
