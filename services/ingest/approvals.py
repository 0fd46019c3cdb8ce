"""HTTP views of the approval gate: list pending approvals, approve or deny one.

``GET /api/v1/approvals`` and ``POST /api/v1/approvals/<id>`` with
``{"decision": "approve" | "deny", "by": "...", "comment": "..."}``. They sit under
``/api/v1``, so the read API's bearer token guards them (``api._read_api_token``).
The decision itself is ``shared.approvals.decide`` (the notifier's Slack buttons call
the same function); these views only translate HTTP, commit, then publish the
engine's ``resume_step``.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import Blueprint, Response, jsonify, request

from services.ingest import api, state
from shared import approvals
from shared.db.models import utcnow

log = logging.getLogger(__name__)
blueprint = Blueprint("approvals", __name__)


@blueprint.get("/api/v1/approvals")
def list_pending() -> tuple[Response, int]:
    with state.current().read_sessions() as session:
        found = approvals.pending(session, utcnow(), limit=api.MAX_PAGE)
    return jsonify({"approvals": found}), 200


@blueprint.post("/api/v1/approvals/<approval_id>")
def decide(approval_id: str) -> tuple[Response, int]:
    try:
        key = uuid.UUID(approval_id)
    except ValueError:
        return api._error(400, "approval id must be a UUID")
    body: Any = request.get_json(silent=True)
    if not isinstance(body, dict):
        return api._error(400, "body must be a JSON object with decision, by and comment")
    unknown = sorted(set(body) - {"decision", "by", "comment"})
    if unknown:
        return api._error(400, f"unknown fields: {', '.join(unknown)}")
    try:
        decision = approvals.Decision(str(body.get("decision")))
    except ValueError:
        return api._error(400, 'decision must be "approve" or "deny"')
    by, comment = body.get("by"), body.get("comment", "")
    if not isinstance(by, str) or not by.strip() or len(by) > approvals.MAX_BY:
        return api._error(400, f"by must name who decides (1 to {approvals.MAX_BY} characters)")
    if not isinstance(comment, str) or len(comment) > approvals.MAX_COMMENT:
        return api._error(400, f"comment must be a string of at most {approvals.MAX_COMMENT}")
    ingest = state.current()
    try:
        with ingest.sessions.begin() as session:
            decided = approvals.decide(
                session,
                key,
                decision,
                by.strip(),
                comment,
                utcnow(),
                outbox_lease_seconds=ingest.settings.outbox.lease_seconds,
            )
    except approvals.ApprovalNotFoundError as exc:
        return api._error(404, str(exc))
    except approvals.AlreadyDecidedError as exc:
        return api._error(409, str(exc))
    ingest.publish(decided.tasks)
    log.info(
        "approval decided",
        extra={"approval_id": approval_id, "decision": decision.value, "by": by.strip()},
    )
    return jsonify(decided.approval), 200
