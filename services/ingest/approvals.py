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

import marshmallow as ma
from flask import Blueprint, Response, jsonify, request

from services.ingest import api, state
from shared import approvals
from shared.db.models import utcnow
from shared.domain import texts, webhooks

log = logging.getLogger(__name__)
blueprint = Blueprint("approvals", __name__)


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ma.ValidationError("Must name who decides, not be blank.")


def _storable(value: str) -> None:
    problem = texts.unstorable(value)
    if problem:
        raise ma.ValidationError(f"Cannot be stored: it {problem}.")


class DecisionRequest(ma.Schema):
    """The body of ``POST /api/v1/approvals/<id>``; also the OpenAPI document's."""

    decision = ma.fields.String(
        required=True,
        validate=ma.validate.OneOf([d.value for d in approvals.Decision]),
        metadata={"description": "approve or deny."},
    )
    by = ma.fields.String(
        required=True,
        validate=[ma.validate.Length(min=1, max=approvals.MAX_BY), _not_blank, _storable],
        metadata={"description": "Who decides (kept on the approval)."},
    )
    comment = ma.fields.String(
        load_default="",
        validate=[ma.validate.Length(max=approvals.MAX_COMMENT), _storable],
    )


_DECISION = DecisionRequest()


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
    if request.mimetype != "application/json":
        return api._error(
            415, f"Content-Type must be application/json, got {request.mimetype or 'none'!r}"
        )
    try:
        # The webhook's loader: UTF-8, no NaN, bounded nesting (Flask's get_json let a
        # body of 100,000 nested arrays raise RecursionError, a 500).
        body: Any = webhooks.load_json(request.get_data(cache=False))
    except webhooks.MalformedBodyError as exc:
        return api._error(400, str(exc))
    if not isinstance(body, dict):
        return api._error(400, "body must be a JSON object with decision, by and comment")
    try:
        loaded = _DECISION.load(body)
    except ma.ValidationError as exc:
        fields = {
            name: " ".join(problems) if isinstance(problems, list) else str(problems)
            for name, problems in exc.normalized_messages().items()  # type: ignore[no-untyped-call]
        }
        detail = "; ".join(f"{name}: {problem}" for name, problem in sorted(fields.items()))
        return api._error(400, f"invalid decision: {detail}", fields=fields)
    decision = approvals.Decision(loaded["decision"])
    by, comment = loaded["by"], loaded["comment"]
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
