"""``POST /slack/interactions``: the Approve / Deny clicks Slack posts to ingest.

Slack signs every request with the app's signing secret: ``X-Slack-Signature`` is
``v0=`` + HMAC-SHA256 of ``v0:{X-Slack-Request-Timestamp}:{raw body}``. The
signature is checked by slack-sdk's ``SignatureVerifier`` (constant-time compare,
timestamp within five minutes, so a captured request cannot be replayed later)
before anything reads the body; a missing, forged or stale signature is a 401 and
nothing is decided. The clicks (``shared.domain.interactions``) then go to the one
approval function the approvals API calls too (``shared.approvals.decide``).

Slack shows the clicker an error for any answer but a 2xx within three seconds, so
a click that cannot be decided (already decided, expired, unknown) is a 200 whose
JSON says why; the log says it too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import urllib.parse
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify, request
from slack_sdk.signature import SignatureVerifier

from services.ingest import state
from shared import approvals, outbox
from shared.db.models import utcnow
from shared.domain import interactions
from shared.errors import ValidationError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
blueprint = Blueprint("slack_interactions", __name__)


@dataclasses.dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str
    tasks: list[outbox.PendingTask] = dataclasses.field(default_factory=list)


def decide(
    session: Session, click: interactions.Click, now: dt.datetime, lease_seconds: float
) -> Outcome:
    """Approve or deny with ``shared.approvals.decide``, in the caller's transaction,
    as ``POST /api/v1/approvals/<id>`` does; a refusal (unknown, already decided,
    expired) is an Outcome that says why, not an error."""
    try:
        decided = approvals.decide(
            session,
            click.approval_id,
            approvals.Decision(click.decision),
            click.by[: approvals.MAX_BY],
            "decided in Slack",
            now,
            outbox_lease_seconds=lease_seconds,
        )
    except approvals.ApprovalError as exc:
        return Outcome(False, str(exc))
    return Outcome(True, f"{click.decision}d by {click.by}", list(decided.tasks))


def _answer(status: int, **document: Any) -> tuple[Response, int]:
    response = jsonify(document)
    response.status_code = status
    return response, status


@blueprint.post("/slack/interactions")
def slack_interactions() -> tuple[Response, int]:
    ingest = state.current()
    if ingest.slack_verifier is None:
        return _answer(
            403,
            error="Slack interactions are disabled: start ingest with "
            "PF_SLACK_SIGNING_SECRET_FILE set",
        )
    body = request.get_data(cache=False)
    if not _signed(ingest.slack_verifier, body):
        log.warning(
            "Slack interaction refused: bad, missing or stale signature",
            extra={"timestamp": request.headers.get("X-Slack-Request-Timestamp")},
        )
        return _answer(401, error="invalid or stale Slack signature")
    try:
        # The body that was signed, parsed here: not request.form, which could be
        # read from anything but these bytes.
        form = urllib.parse.parse_qs(body.decode("utf-8", errors="replace"))
        payload = form.get("payload")
        clicks = interactions.parse(payload[0] if payload else None)
    except ValidationError as exc:
        log.warning("Slack interaction refused", extra={"error": str(exc)})
        return _answer(400, error=str(exc))
    if not clicks:
        return _answer(200, ok=True, decisions=[])
    decisions: list[dict[str, Any]] = []
    tasks: list[outbox.PendingTask] = []
    with ingest.sessions.begin() as session:
        for click in clicks:
            outcome = decide(session, click, utcnow(), ingest.settings.outbox.lease_seconds)
            tasks.extend(outcome.tasks)
            decisions.append(_decision(click, outcome))
    if tasks:
        ingest.publish(tasks)
    for decision in decisions:
        # "message" is a LogRecord attribute: logging refuses it as an extra key.
        log.info(
            "Slack approval click",
            extra={
                **{k: v for k, v in decision.items() if k != "message"},
                "outcome": decision["message"],
            },
        )
    return _answer(200, ok=all(d["ok"] for d in decisions), decisions=decisions)


def _signed(verifier: SignatureVerifier, body: bytes) -> bool:
    try:
        return verifier.is_valid_request(body, dict(request.headers))
    except ValueError:  # a timestamp that is not a number
        return False


def _decision(click: interactions.Click, outcome: Outcome) -> dict[str, Any]:
    return {
        "approval": str(click.approval_id),
        "decision": click.decision,
        "by": click.by,
        "ok": outcome.ok,
        "message": outcome.message,
    }
