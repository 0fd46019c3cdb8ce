"""``POST /slack/interactions`` under gunicorn: Slack's signature is checked before
anything is read, and a signed Approve / Deny click reaches the approval function.

Signatures are made as Slack makes them: ``v0=`` + HMAC-SHA256 of
``v0:{timestamp}:{body}`` with the app's signing secret.
"""

from __future__ import annotations

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


def test_a_signed_click_is_accepted_and_reaches_the_approval_function(ingest: Ingest) -> None:
    approval = str(uuid.uuid4())
    body = click(approval, "punchingfist_deny")
    answer = post(ingest, body, sign(body, int(time.time())))
    assert answer.status == 200, answer.body
    [decision] = answer.body["decisions"]
    assert (decision["approval"], decision["decision"]) == (approval, "deny")
    assert decision["by"] == "slack:U0ALICE (alice)"
    # No such approval (or, before the approvals arrive, no approvals at all): not
    # decided, and said so to Slack with a 200 so that the clicker is not shown an error.
    assert decision["ok"] is False
    assert answer.body["ok"] is False
    assert "Slack approval click" in ingest.log() or "not decided" in ingest.log()


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
