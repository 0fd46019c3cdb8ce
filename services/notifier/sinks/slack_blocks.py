"""What a Slack message says: the built-in Block Kit layout and the values it reads.

A Slack Sink's ``template`` (or ``DEFAULT_TEMPLATE``) is rendered in the sandbox
over the run's message namespace plus ``mentions`` and ``links``. The result is a
JSON list of blocks (or ``{"blocks": [...], "text": ...}``); anything that is not
JSON is sent as one mrkdwn section, so a template can be plain text.

Every string from the run reaches the template with Slack's three control
characters escaped (``&``, ``<``, ``>``), so an alert label cannot write a mention
(``<!channel>``) or a disguised link into the channel. ``links`` are built here
from the alert's ``generatorURL`` and ``runbook_url`` only when they are http(s)
URLs, with ``|`` encoded so that a URL cannot bring its own link text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from services.notifier import rendering
from services.notifier.core import messages
from shared.domain import interactions
from shared.errors import PermanentError

# Slack's limits: 50 blocks per message, 3000 characters per section text.
MAX_BLOCKS = 50
SECTION_LIMIT = 3000

DEFAULT_TEMPLATE = """\
{%- set a = alert -%}
{%- set title = a.name if a and a.name else run.workflow -%}
{%- set asking = approval.id is defined -%}
{%- set decided = approval.status | default("pending") -%}
{%- set state = "Resolved" if a and a.status == "resolved"
      else ("Approval " ~ decided if asking and decided not in (none, "pending")
      else ("Waiting for approval" if asking
      else ("Investigation failed" if run.phase == "Failed" else "Investigated"))) -%}
{%- set icon = ":white_check_mark:" if a and a.status == "resolved"
      else (":x:" if run.phase == "Failed" else ":rotating_light:") -%}
{%- set labels = a.labels | default({}) if a else {} -%}
{%- set where = [labels.namespace | default(""), labels.pod | default("")] | select | join("/") -%}
{%- set head -%}
{{ icon }} *{{ title }}*{% if a and a.severity %} `{{ a.severity }}`{% endif %} · {{ state }}
{%- if where %}
`{{ where }}`{% endif %}
{%- if a and (a.annotations | default({})).summary is defined %}
{{ a.annotations.summary }}{% endif %}
{%- if mentions %}
{{ mentions }}{% endif %}
{%- endset -%}
{%- set foot = [
      "Workflow `" ~ run.workflow ~ "` " ~ run.phase,
      ("<" ~ links.generator ~ "|Source>") if links.generator else "",
      ("<" ~ links.runbook ~ "|Runbook>") if links.runbook else "",
      ("<" ~ links.run ~ "|Run>") if links.run else "",
    ] | select | join(" · ") -%}
[
  {"type": "section", "text": {"type": "mrkdwn", "text": {{ head | truncate(2900) | tojson }}}}
  {%- for label, key in [("Summary", "summary"), ("Root cause", "rootCause"),
                         ("Confidence", "confidence"), ("Recommendations", "recommendations")]
        if outputs[key] is defined and outputs[key] not in ("", none) %},
  {"type": "section", "text": {"type": "mrkdwn",
    "text": {{ ("*" ~ label ~ "*\\n" ~ (outputs[key] | string)) | truncate(2900) | tojson }}}}
  {%- endfor %}
  {%- if asking %},
  {"type": "section", "block_id": "pf-approval-request", "text": {"type": "mrkdwn",
    "text": {{ ("*Proposed change:* `" ~ (approval.what | default("")) ~ "`\\n*Risk:* "
               ~ (approval.risk | default("not rated"))
               ~ ("\\n*Rationale:* " ~ approval.rationale
                  if approval.rationale | default("") else "")
               ~ "\\n_" ~ (approval.why | default("")) ~ "_") | truncate(2900) | tojson }}}}
  {%- endif %}
  {%- if event == "run_finished" and remediation %},
  {"type": "section", "block_id": "pf-remediation", "text": {"type": "mrkdwn",
    "text": {{ ("*Remediation*\\n" ~ remediation) | truncate(2900) | tojson }}}}
  {%- endif %}
  {%- if run.error %},
  {"type": "section", "text": {"type": "mrkdwn",
    "text": {{ ("*Error*\\n```" ~ (run.error | truncate(2800)) ~ "```") | tojson }}}}
  {%- endif %},
  {"type": "context", "elements": [{"type": "mrkdwn", "text": {{ foot | tojson }}}]}
]
"""


def escape(value: Any) -> Any:
    """``value`` with every string escaped for mrkdwn, recursively."""
    if isinstance(value, str):
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if isinstance(value, Mapping):
        return {key: escape(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [escape(item) for item in value]
    return value


def safe_link(url: Any) -> str | None:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return None
    return escape(url).replace("|", "%7C")  # type: ignore[no-any-return]


def mention_text(ids: list[str]) -> str:
    """``<@U1> <!subteam^S1>``: users by id, user groups (S...) by subteam."""
    return " ".join(f"<!subteam^{i}>" if i.startswith("S") else f"<@{i}>" for i in ids)


def fallback_text(message: Mapping[str, Any]) -> str:
    """The notification text (push notifications, screen readers)."""
    alert = message.get("alert") or {}
    run = message["run"]
    title = alert.get("name") or run["workflow"]
    severity = f" ({alert['severity']})" if alert.get("severity") else ""
    return str(escape(f"{title}{severity}: workflow {run['workflow']} {run['phase']}"))


def blocks_from(text: str, where: str) -> list[dict[str, Any]]:
    """Blocks from a rendered template: JSON blocks, or the text as one section."""
    stripped = text.strip()
    if not stripped:
        raise PermanentError(f"{where}: rendered an empty message")
    try:
        document = json.loads(stripped)
    except ValueError:
        return [{"type": "section", "text": {"type": "mrkdwn", "text": stripped[:SECTION_LIMIT]}}]
    if isinstance(document, Mapping):
        document = document.get("blocks")
    if not isinstance(document, list) or not all(
        isinstance(block, Mapping) and isinstance(block.get("type"), str) for block in document
    ):
        raise PermanentError(
            f"{where}: rendered JSON that is not a list of Block Kit blocks (each with a type)"
        )
    if not document or len(document) > MAX_BLOCKS:
        raise PermanentError(f"{where}: {len(document)} blocks (Slack takes 1 to {MAX_BLOCKS})")
    return [dict(block) for block in document]


def render(
    template: str | None, message: Mapping[str, Any], mentions: list[str], where: str
) -> dict[str, Any]:
    """``{"blocks", "text"}`` for one message."""
    alert = message.get("alert") or {}
    annotations = alert.get("annotations") or {}
    namespace = dict(escape(message))
    namespace.setdefault("approval", {})
    namespace["mentions"] = mention_text(mentions) if message["run"].get("escalates") else ""
    namespace["links"] = {
        "generator": safe_link(alert.get("generatorURL")),
        "runbook": safe_link(annotations.get("runbook_url")),
        "run": safe_link(message["run"].get("url")),
    }
    namespace.setdefault("event", "run_finished")
    namespace["remediation"] = remediation_text(message.get("approvals") or [])
    text = rendering.render(template or DEFAULT_TEMPLATE, namespace, where=where)
    blocks = blocks_from(text, where)
    approval = message.get("approval") or {}
    if approval.get("id"):
        # Whatever the template: a pending approval gets the buttons, whose value is
        # the approval id that /slack/interactions decides; a decided one says who
        # decided and when instead (the buttons are gone once the message is edited).
        if len(blocks) >= MAX_BLOCKS:
            blocks = blocks[: MAX_BLOCKS - 1]
        if approval.get("status", "pending") == "pending":
            blocks.append(
                interactions.buttons(str(approval["id"]), str(escape(approval.get("what") or "")))
            )
        else:
            blocks.append(decision_block(approval))
    return {"blocks": blocks, "text": fallback_text(message)}


_DECIDED = {
    "approved": (":white_check_mark:", "Approved"),
    "executing": (":white_check_mark:", "Approved"),
    "executed": (":white_check_mark:", "Approved"),
    "failed": (":x:", "Approved"),
    "unknown": (":warning:", "Approved"),
    "denied": (":no_entry:", "Denied"),
    "expired": (":hourglass:", "Expired"),
}


def who(by: Any) -> str:
    """A decider as Slack shows them: ``slack:U123 (ana)`` becomes a mention of U123."""
    text = str(by or "someone")
    if text.startswith("slack:"):
        user = text.removeprefix("slack:").split(" ", 1)[0]
        if user.isalnum() and user.isupper():
            return f"<@{user}>"
    return str(escape(text))


def decision_block(approval: Mapping[str, Any]) -> dict[str, Any]:
    """The line that replaces the buttons: who approved or denied, and when; for a
    change that failed or whose outcome is unknown, that a person must check."""
    status = str(approval.get("status") or "")
    icon, verb = _DECIDED.get(status, (":grey_question:", status.capitalize()))
    at = approval.get("decidedAt") or ""
    if status == "expired":
        text = f"{icon} *Expired* at {at}: nobody decided in time; the change was not made"
    else:
        text = f"{icon} *{verb}* by {who(approval.get('decidedBy'))} at {at}"
        if approval.get("comment"):
            text += f": {escape(str(approval['comment']))}"
        check = messages.needs_a_check(approval)
        if check is not None:
            text += f"\n*{check}.*"
            if approval.get("outcome"):
                text += f"\n{escape(str(approval['outcome']))}"
    return {
        "type": "context",
        "block_id": "pf-approval-decided",
        "elements": [{"type": "mrkdwn", "text": text[:SECTION_LIMIT]}],
    }


def remediation_text(approvals: list[Mapping[str, Any]]) -> str:
    """One line per decided change of the run: what, what became of it, and who said."""
    lines = []
    for approval in approvals:
        status = str(approval.get("status") or "")
        if status == "pending":
            continue
        what = escape(str(approval.get("what") or ""))
        if status == "executed":
            health = "verified healthy" if approval.get("verified") else "not verified healthy"
            outcome = f"made and {health}"
        elif (check := messages.needs_a_check(approval)) is not None:
            outcome = f"approved, but {check}"
        elif status == "denied":
            outcome = "not made: denied"
        elif status == "expired":
            outcome = "not made: nobody decided in time"
        else:
            outcome = status
        by = approval.get("decidedBy")
        line = f"• `{what}`: {outcome}"
        if by and status != "expired":
            line += f" (decided by {who(by)})"
        if approval.get("outcome"):
            line += f"\n  {escape(str(approval['outcome']))}"
        lines.append(line)
    return "\n".join(lines)


def resolved_blocks(
    original: list[dict[str, Any]], resolved_at: str | None, auto_resolved: bool
) -> list[dict[str, Any]]:
    """The parent's blocks with a "resolved" line on top (replacing an earlier one)."""
    how = "by the workflow (auto-resolved)" if auto_resolved else "in AlertManager"
    banner = {
        "type": "context",
        "block_id": "pf-resolved",
        "elements": [
            {"type": "mrkdwn", "text": f":white_check_mark: *Resolved* {how} at {resolved_at}"}
        ],
    }
    kept = [block for block in original if block.get("block_id") != "pf-resolved"]
    return [banner, *kept][:MAX_BLOCKS]
