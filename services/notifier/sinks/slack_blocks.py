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
from shared.errors import PermanentError

# Slack's limits: 50 blocks per message, 3000 characters per section text.
MAX_BLOCKS = 50
SECTION_LIMIT = 3000

DEFAULT_TEMPLATE = """\
{%- set a = alert -%}
{%- set title = a.name if a and a.name else run.workflow -%}
{%- set state = "Resolved" if a and a.status == "resolved"
      else ("Investigation failed" if run.phase == "Failed" else "Investigated") -%}
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
    namespace["mentions"] = mention_text(mentions) if message["run"].get("escalates") else ""
    namespace["links"] = {
        "generator": safe_link(alert.get("generatorURL")),
        "runbook": safe_link(annotations.get("runbook_url")),
        "run": safe_link(message["run"].get("url")),
    }
    text = rendering.render(template or DEFAULT_TEMPLATE, namespace, where=where)
    return {"blocks": blocks_from(text, where), "text": fallback_text(message)}


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
