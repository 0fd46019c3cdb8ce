"""``POST /slack/interactions`` under gunicorn: Slack's signature is checked before
anything is read, and a signed Approve / Deny click reaches the approval function.

Signatures are made as Slack makes them: ``v0=`` + HMAC-SHA256 of
``v0:{timestamp}:{body}`` with the app's signing secret.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from shared.db.engines import make_engine
from shared.db.models import Approval, WorkflowRun, utcnow
from shared.settings import DatabaseSettings
from tests.functional.ingest.conftest import source_spec
from tests.functional.ingest.ingestserver import Answer, Ingest, running_ingest

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def sign(body: bytes, timestamp: int, secret: str = SECRET) -> dict[str, str]:
    base = f"v0:{timestamp}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def click(approval_id: str, action: str = "punchingfist_approve") -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": "U0ALICE", "username": "alice", "team_id": "T0TEST"},
        "team": {"id": "T0TEST", "domain": "example"},
        "actions": [
            {
                "type": "button",
                "action_id": action,
                "block_id": "pf-approval",
                "value": approval_id,
                "action_ts": f"{time.time():.6f}",
            }
        ],
        "response_url": "https://hooks.slack.invalid/actions/T0/1/x",
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def post(ingest: Ingest, body: bytes, headers: dict[str, str]) -> Answer:
    return ingest.request("POST", "/slack/interactions", body, headers)


@pytest.fixture
def ingest(database_url: str, tmp_path: Path, redis_url: str) -> Iterator[Ingest]:
    secret_file = tmp_path / "slack-signing-secret"
    secret_file.write_text(SECRET + "\n")
    with running_ingest(
        database_url,
        tmp_path,
        redis_url,
        {"alertmanager": source_spec()},
        workers=1,
        PF_SLACK_SIGNING_SECRET_FILE=str(secret_file),
    ) as server:
        yield server


def _pending_approval(database_url: str) -> uuid.UUID:
    """A run waiting for approval and its pending approval, as the engine writes them."""
    engine = make_engine(DatabaseSettings(url=database_url))
    run_id, approval_id, now = uuid.uuid4(), uuid.uuid4(), utcnow()
    with engine.begin() as conn:
        conn.execute(
            sa.insert(WorkflowRun.__table__).values(
                id=run_id,
                workflow_name="triage",
                namespace="default",
                trigger="alert",
                phase="WaitingApproval",
                input_context={},
                context={},
            )
        )
        conn.execute(
            sa.insert(Approval.__table__).values(
                id=approval_id,
                run_id=run_id,
                step_index=0,
                step_name="fix",
                status="pending",
                request={"action": "delete_pod", "namespace": "prod", "name": "api-0"},
                what="delete pod prod/api-0",
                requested_by="agent",
                why="stuck in CrashLoopBackOff",
                created_at=now,
                expires_at=now + dt.timedelta(minutes=10),
            )
        )
    engine.dispose()
    return approval_id


def _approval(database_url: str, approval_id: uuid.UUID) -> Any:
    engine = make_engine(DatabaseSettings(url=database_url))
    with engine.connect() as conn:
        table = Approval.__table__
        row = conn.execute(sa.select(table).where(table.c.id == approval_id)).one()
        resumes = conn.execute(
            sa.text("SELECT count(*) FROM outbox WHERE task_name = 'engine.resume_step'")
        ).scalar_one()
    engine.dispose()
    return row, resumes


def test_a_signed_click_decides_the_approval_once(ingest: Ingest, database_url: str) -> None:
    approval = _pending_approval(database_url)
    body = click(str(approval), "punchingfist_approve")
    answer = post(ingest, body, sign(body, int(time.time())))
    assert answer.status == 200, answer.body
    [decision] = answer.body["decisions"]
    assert (decision["approval"], decision["decision"]) == (str(approval), "approve")
    assert (decision["by"], decision["ok"]) == ("slack:U0ALICE (alice)", True)
    row, resumes = _approval(database_url, approval)
    assert (row.status, row.decided_by, row.comment) == (
        "approved",
        "slack:U0ALICE (alice)",
        "decided in Slack",
    )
    assert resumes == 1  # the engine is told to make the change, through the outbox
    # A second click (another person, or Slack retrying) decides nothing more, and
    # is answered 200 so that the clicker is not shown an error.
    deny = click(str(approval), "punchingfist_deny")
    again = post(ingest, deny, sign(deny, int(time.time())))
    assert again.status == 200
    assert again.body["ok"] is False
    assert again.body["decisions"][0]["ok"] is False
    assert _approval(database_url, approval) == (row, 1)
    assert "Slack approval click" in ingest.log()


def test_a_click_for_an_unknown_approval_is_answered_not_decided(ingest: Ingest) -> None:
    body = click(str(uuid.uuid4()), "punchingfist_deny")
    answer = post(ingest, body, sign(body, int(time.time())))
    assert answer.status == 200, answer.body
    assert answer.body["ok"] is False
    assert answer.body["decisions"][0]["decision"] == "deny"


def test_an_interaction_that_is_not_a_click_of_ours_is_accepted_and_ignored(
    ingest: Ingest,
) -> None:
    body = urllib.parse.urlencode({"payload": json.dumps({"type": "shortcut"})}).encode()
    answer = post(ingest, body, sign(body, int(time.time())))
    assert (answer.status, answer.body) == (200, {"ok": True, "decisions": []})


@pytest.mark.parametrize(
    ("headers_for", "why"),
    [
        (lambda body: sign(body, int(time.time()), secret="not-the-secret"), "forged"),
        (lambda body: sign(body, int(time.time()) - 301), "stale"),
        (lambda body: sign(body, int(time.time()) + 301), "from the future"),
        (lambda body: {"Content-Type": "application/x-www-form-urlencoded"}, "unsigned"),
        (
            lambda body: {**sign(body, int(time.time())), "X-Slack-Request-Timestamp": "soon"},
            "timestamp not a number",
        ),
    ],
)
def test_a_forged_or_stale_request_is_refused(ingest: Ingest, headers_for: Any, why: str) -> None:
    body = click(str(uuid.uuid4()))
    answer = post(ingest, body, headers_for(body))
    assert answer.status == 401, why
    assert answer.body == {"error": "invalid or stale Slack signature"}
    assert "Slack interaction refused" in ingest.log()


def test_a_body_changed_after_signing_is_refused(ingest: Ingest) -> None:
    body = click(str(uuid.uuid4()), "punchingfist_deny")
    headers = sign(body, int(time.time()))
    tampered = body.replace(b"punchingfist_deny", b"punchingfist_approve")
    assert post(ingest, tampered, headers).status == 401


def test_a_signed_payload_that_is_not_json_is_a_400(ingest: Ingest) -> None:
    body = b"payload=%7Bnot-json"
    answer = post(ingest, body, sign(body, int(time.time())))
    assert answer.status == 400
    assert answer.body["error"].startswith("payload: not JSON")


def test_without_a_signing_secret_the_endpoint_is_off(
    database_url: str, tmp_path: Path, redis_url: str
) -> None:
    with running_ingest(
        database_url, tmp_path, redis_url, {"alertmanager": source_spec()}, workers=1
    ) as server:
        body = click(str(uuid.uuid4()))
        answer = post(server, body, sign(body, int(time.time())))
    assert answer.status == 403
    assert "PF_SLACK_SIGNING_SECRET_FILE" in answer.body["error"]
