"""The Sink spec and one config schema per sink type (``SINK_SCHEMAS``).

The notifier registers its sink implementations under the same type strings; a type
may be in this registry before its implementation exists, so that resources written
for it validate today and start working when it arrives.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from shared.resources.fields import ByType, Dict, SecretRefSchema, StrictSchema, describe

# Go-style durations as AlertManager takes them: 30m, 1h, 1h30m, 2d.
DURATION = ma.validate.Regexp(
    r"^([0-9]+(ms|s|m|h|d|w))+$", error="Must be a duration such as 30m, 1h or 1h30m."
)
URL = ma.validate.URL(schemes={"http", "https"}, require_tld=False)
# Slack user (U..., W... on Enterprise Grid) and user group (S...) ids.
SLACK_ID = ma.validate.Regexp(
    r"^[UWS][A-Z0-9]{2,20}$", error="Must be a Slack user (U...) or user group (S...) id."
)


class SlackConfigSchema(StrictSchema):
    channel = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=80),
        metadata=describe("Channel name (#incidents) or id to post to."),
    )
    tokenSecretRef = ma.fields.Nested(
        SecretRefSchema, required=True, metadata=describe("Secret key holding the bot token.")
    )
    threadUpdates = ma.fields.Boolean(
        load_default=True,
        metadata=describe("Post later updates of the same alert as replies in its thread."),
    )
    template = ma.fields.String(
        validate=ma.validate.Length(min=1, max=64 * 1024),
        metadata=describe(
            "Jinja2 template over the run (alert, run, outputs, steps): a JSON list of "
            "Block Kit blocks, or plain mrkdwn text; a built-in layout when absent."
        ),
    )
    mentions = ma.fields.List(
        ma.fields.String(validate=SLACK_ID),
        load_default=list,
        validate=ma.validate.Length(max=20),
        metadata=describe("User (U...) or user group (S...) ids to mention when a run escalates."),
    )
    apiUrl = ma.fields.String(
        validate=URL,
        metadata=describe(
            "Slack Web API base URL ending in /api/ (default https://slack.com/api/); "
            "for stand-ins in development."
        ),
    )


class AlertManagerConfigSchema(StrictSchema):
    url = ma.fields.String(required=True, validate=URL, metadata=describe("AlertManager base URL."))
    actions = ma.fields.List(
        ma.fields.String(validate=ma.validate.OneOf(["annotate", "silence"])),
        load_default=lambda: ["annotate"],
        validate=ma.validate.Length(min=1, max=2),
        metadata=describe(
            "annotate: re-post the alert with ai_summary, ai_root_cause and ai_confidence "
            "annotations (replaced by Prometheus' next resend); silence: silence its "
            "labels for silenceDuration, expired when the alert resolves."
        ),
    )
    silenceDuration = ma.fields.String(
        load_default="1h", validate=DURATION, metadata=describe("How long a silence lasts.")
    )


class StdoutConfigSchema(StrictSchema):
    format = ma.fields.String(
        load_default="text",
        validate=ma.validate.OneOf(["text", "json"]),
        metadata=describe("text for people, json for log collectors."),
    )


class WebhookConfigSchema(StrictSchema):
    url = ma.fields.String(required=True, validate=URL, metadata=describe("URL to POST to."))
    headers = Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(),
        load_default=dict,
        metadata=describe("Extra request headers."),
    )
    secretRef = ma.fields.Nested(
        SecretRefSchema,
        metadata=describe("Secret key sent as 'Authorization: Bearer <value>'."),
    )


SINK_SCHEMAS: dict[str, type[ma.Schema]] = {
    "slack": SlackConfigSchema,
    "alertmanager": AlertManagerConfigSchema,
    "stdout": StdoutConfigSchema,
    "webhook": WebhookConfigSchema,
}


class SinkSpecSchema(StrictSchema):
    type = ma.fields.String(
        required=True,
        validate=ma.validate.OneOf(list(SINK_SCHEMAS)),
        metadata=describe("Where results go."),
    )
    config = ByType(SINK_SCHEMAS, metadata=describe("Settings of this Sink's type."))
    condition = ma.fields.String(
        validate=ma.validate.Length(min=1, max=1024),
        metadata=describe(
            'Send only when this expression holds, e.g. run.phase == "Failed"; event is '
            "run_finished (the run ended) or approval_requested (it waits for a human)."
        ),
    )

    @ma.pre_load
    def _config_present(self, data: Any, **_: Any) -> Any:
        if isinstance(data, dict) and data.get("config") is None:
            return {**data, "config": {}}
        return data
