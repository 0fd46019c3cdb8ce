"""Slack interactions: the Approve / Deny buttons and what a click on one says.

Two deployables must agree on the buttons: the notifier renders them (an ``actions``
block whose buttons carry the approval id as their ``value``) and ingest reads the
click that Slack posts to ``/slack/interactions``. Both take the action ids and the
parsing from here.

What this module must not do: check the request's signature (ingest does, with
slack-sdk's verifier, before anything here reads the body) or decide the approval
(``shared.approvals``); it only turns a ``block_actions`` payload into clicks.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Mapping
from typing import Any

from shared.domain import texts
from shared.errors import ValidationError

APPROVE_ACTION = "punchingfist_approve"
DENY_ACTION = "punchingfist_deny"
DECISIONS = {APPROVE_ACTION: "approve", DENY_ACTION: "deny"}
# A payload far larger than any button click is not one.
MAX_PAYLOAD_CHARS = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Click:
    """One Approve or Deny click: which approval, which way, and who clicked."""

    approval_id: uuid.UUID
    decision: str  # "approve" | "deny"
    by: str  # "slack:<user id> (<user name>)"
    team: str | None


def buttons(approval_id: str, what: str) -> dict[str, Any]:
    """The ``actions`` block with Approve / Deny for one approval."""
    return {
        "type": "actions",
        "block_id": "pf-approval",
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE_ACTION,
                "style": "primary",
                "text": {"type": "plain_text", "text": "Approve"},
                "value": approval_id,
                "confirm": {
                    "title": {"type": "plain_text", "text": "Approve this change?"},
                    "text": {"type": "mrkdwn", "text": what[:300] or "the requested change"},
                    "confirm": {"type": "plain_text", "text": "Approve"},
                    "deny": {"type": "plain_text", "text": "Cancel"},
                },
            },
            {
                "type": "button",
                "action_id": DENY_ACTION,
                "style": "danger",
                "text": {"type": "plain_text", "text": "Deny"},
                "value": approval_id,
            },
        ],
    }


def _user(payload: Mapping[str, Any]) -> str:
    user = payload.get("user")
    if not isinstance(user, Mapping) or not isinstance(user.get("id"), str) or not user["id"]:
        raise ValidationError("payload.user.id: missing", messages={"user.id": ["missing"]})
    name = user.get("username") or user.get("name")
    by = f"slack:{user['id']}" + (f" ({name})" if isinstance(name, str) and name else "")
    problem = texts.unstorable(by)
    if problem:
        # Stored as who decided: PostgreSQL refused it with a 500.
        raise ValidationError(f"payload.user: {problem}", messages={"user": [problem]})
    return by


def parse(form_payload: str | None) -> list[Click]:
    """The Approve/Deny clicks in the ``payload`` form field of an interaction.

    Other interactions (a link button, a shortcut) carry no click of ours: an empty
    list. A payload that is not a JSON object, or a click without a user or an
    approval id, raises ValidationError naming the field.
    """
    if not form_payload:
        raise ValidationError("payload: missing form field", messages={"payload": ["missing"]})
    if len(form_payload) > MAX_PAYLOAD_CHARS:
        raise ValidationError("payload: too large", messages={"payload": ["too large"]})
    try:
        payload = json.loads(form_payload)
    except (ValueError, RecursionError) as exc:  # 64 KiB of "[" is too deep for the parser
        raise ValidationError(
            f"payload: not JSON: {exc}", messages={"payload": ["not JSON"]}
        ) from exc
    if not isinstance(payload, Mapping):
        raise ValidationError("payload: not a JSON object", messages={"payload": ["not object"]})
    if payload.get("type") != "block_actions":
        return []
    actions = payload.get("actions")
    if not isinstance(actions, list):
        return []
    ours = [
        action
        for action in actions
        if isinstance(action, Mapping) and action.get("action_id") in DECISIONS
    ]
    if not ours:
        return []
    by = _user(payload)
    team = payload.get("team")
    team_id = team.get("id") if isinstance(team, Mapping) else None
    clicks = []
    for action in ours:
        try:
            approval_id = uuid.UUID(str(action.get("value")))
        except ValueError as exc:
            raise ValidationError(
                f"actions.value: {action.get('value')!r} is not an approval id",
                messages={"actions.value": ["not an approval id"]},
            ) from exc
        decision = DECISIONS[str(action["action_id"])]
        clicks.append(
            Click(approval_id, decision, by, team_id if isinstance(team_id, str) else None)
        )
    return clicks
