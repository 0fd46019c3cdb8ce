"""Approval decisions that the database cannot store, or that nest too deep, are 4xx.

Found by the schemathesis run of ``tests/e2e/test_bad_input.py``; each was a 500:

- ``POST /api/v1/approvals/<id>`` with a NUL in ``by`` or ``comment`` (PostgreSQL:
  psycopg2 refuses the string), or a lone surrogate (no driver can encode it);
- the same with a body of 100,000 nested arrays (RecursionError in Flask's get_json);
- ``POST /slack/interactions`` (signed) whose user name holds a NUL, or whose payload
  is 60,000 ``[``: the same two failures on Slack's side.

Each is now refused with a message naming the problem, and the approval stays
pending: nothing was decided.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from services.ingest.app import create_app
from shared.db.models import Approval, utcnow
from shared.settings import Settings
from tests.functional.ingest.conftest import API_TOKEN, load_fixture

SECRET = "signing-secret-of-this-test"


@pytest.fixture
def app(
    make_settings: Callable[..., Settings],
    database_url: str,
    tmp_path: Path,
    put_source: Callable[..., None],
) -> Flask:
    put_source()
    (tmp_path / "secrets" / "am").mkdir(parents=True, exist_ok=True)
    (tmp_path / "secrets" / "am" / "token").write_text("s3cr3t-test-token\n")
    (tmp_path / "api-token").write_text(API_TOKEN + "\n")
    (tmp_path / "slack-secret").write_text(SECRET + "\n")
    settings = make_settings(
        PF_DATABASE_URL=database_url,
        PF_API_TOKEN_FILE=str(tmp_path / "api-token"),
        PF_SLACK_SIGNING_SECRET_FILE=str(tmp_path / "slack-secret"),
    )
    return create_app(settings)


@pytest.fixture
def approval_id(client: FlaskClient, post: Callable[..., Any], engine: sa.Engine) -> str:
    answer = post(load_fixture("01-firing-single.json"))
    assert answer.status_code == 200, answer.json
    key = uuid.uuid4()
    with engine.begin() as connection:
        connection.execute(
            sa.insert(Approval.__table__),
            {
                "id": key,
                "run_id": uuid.UUID(answer.json["runs"][0]),
                "step_index": 0,
                "step_name": "remediate",
                "status": "pending",
                "request": {"action": "restart"},
                "what": "restart-rollout deployment shop/web",
                "requested_by": "agent",
                "why": "policy",
                "expires_at": utcnow() + dt.timedelta(hours=1),
            },
        )
    return str(key)


def _status(engine: sa.Engine, approval_id: str) -> str:
    with engine.connect() as connection:
        return str(
            connection.execute(
                sa.select(Approval.status).where(Approval.id == uuid.UUID(approval_id))
            ).scalar_one()
        )


def _decide(client: FlaskClient, approval_id: str, data: bytes | str) -> Any:
    return client.post(
        f"/api/v1/approvals/{approval_id}",
        data=data,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_TOKEN}"},
    )


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"decision": "approve", "by": "ana\u0000"}, "by", "NUL"),
        ({"decision": "approve", "by": "ana\ud800"}, "by", "surrogate"),
        ({"decision": "deny", "by": "ana", "comment": "no\u0000"}, "comment", "NUL"),
        ({"decision": "deny", "by": "ana", "comment": "\udc00"}, "comment", "surrogate"),
    ],
)
def test_a_decision_the_database_cannot_store_is_a_400_naming_the_field(  # noqa: PLR0917  fixtures
    client: FlaskClient,
    engine: sa.Engine,
    approval_id: str,
    body: dict[str, str],
    field: str,
    says: str,
) -> None:
    answer = _decide(client, approval_id, json.dumps(body))
    assert answer.status_code == 400, answer.json
    assert field in answer.json["fields"]
    assert says in answer.json["error"]
    assert _status(engine, approval_id) == "pending"


def test_a_decision_nested_100000_deep_is_a_400(
    client: FlaskClient, engine: sa.Engine, approval_id: str
) -> None:
    answer = _decide(client, approval_id, "[" * 100_000 + "]" * 100_000)
    assert answer.status_code == 400, answer.json
    assert "nested deeper" in answer.json["error"]
    assert _status(engine, approval_id) == "pending"


def test_a_decision_that_is_not_json_is_a_415(
    client: FlaskClient, engine: sa.Engine, approval_id: str
) -> None:
    answer = client.post(
        f"/api/v1/approvals/{approval_id}",
        data='{"decision": "approve", "by": "ana"}',
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    assert answer.status_code == 415, answer.json
    assert "application/json" in answer.json["error"]
    assert _status(engine, approval_id) == "pending"


def _signed_click(client: FlaskClient, payload: str) -> Any:
    body = urllib.parse.urlencode({"payload": payload}).encode()
    timestamp = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256)
    return client.post(
        "/slack/interactions",
        data=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": f"v0={digest.hexdigest()}",
        },
    )


def test_a_slack_click_by_a_user_name_with_nul_is_a_400(
    client: FlaskClient, engine: sa.Engine, approval_id: str
) -> None:
    payload = {
        "type": "block_actions",
        "user": {"id": "U0ALICE", "username": "ali\u0000ce"},
        "actions": [{"action_id": "punchingfist_approve", "value": approval_id}],
    }
    answer = _signed_click(client, json.dumps(payload))
    assert answer.status_code == 400, answer.json
    assert "NUL" in answer.json["error"]
    assert _status(engine, approval_id) == "pending"


def test_a_slack_payload_nested_too_deep_is_a_400(client: FlaskClient) -> None:
    answer = _signed_click(client, "[" * 60_000)
    assert answer.status_code == 400, answer.json
    assert "not JSON" in answer.json["error"]
