"""The Source spec: where events come from and which Workflow they start.

One ``config`` block per Source type (``SOURCE_CONFIG_SCHEMAS``). ``chat`` is in the
seed's design but has no implementation yet; it is refused by name so that nobody
deploys a Source that silently receives nothing. ``shared.domain.sources`` reads the
normalized spec this schema produces.
"""

from __future__ import annotations

import zoneinfo
from typing import Any

import marshmallow as ma
from croniter import croniter  # type: ignore[import-untyped]

from shared.domain import sources as domain_sources
from shared.domain.matchers import MatcherError, parse_matcher
from shared.resources.fields import (
    LABEL_NAME,
    NAME,
    NAME_LENGTH,
    ByType,
    Dict,
    SecretRefSchema,
    StrictSchema,
    defaults_of,
    describe,
)

# Types the schema knows; the ones in RESERVED_TYPES are refused with their reason.
SOURCE_TYPES = ("webhook", "schedule", "chat")
RESERVED_TYPES = {
    "chat": "chat Sources are reserved for a later release; use webhook or schedule.",
}
WEBHOOK_PATH = ma.validate.Regexp(
    r"^/[A-Za-z0-9._~/-]*$",
    error="Must be an absolute URL path of letters, digits and '._~/-'.",
)


def _path(path: str) -> None:
    try:
        domain_sources.normalize_path(path)
    except domain_sources.PathError as exc:
        raise ma.ValidationError(str(exc)) from exc


def _matcher(text: str) -> None:
    try:
        parse_matcher(text)
    except MatcherError as exc:
        raise ma.ValidationError(str(exc)) from exc


def _cron(expression: str) -> None:
    if not croniter.is_valid(expression):
        raise ma.ValidationError(
            f"{expression!r} is not a cron expression (five fields: minute hour "
            "day-of-month month day-of-week, e.g. '*/15 * * * *')."
        )


def _timezone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ma.ValidationError(
            f"{name!r} is not an IANA time zone name (e.g. UTC, Europe/Paris)."
        ) from exc


class AuthenticationSchema(StrictSchema):
    # The API server applies the same rule (crds.object_schema renders cel_rules).
    cel_rules = (
        {
            "rule": "self.type == 'none' ? !has(self.secretRef) : has(self.secretRef)",
            "message": "bearer authentication needs secretRef; type none takes none",
            "fieldPath": ".secretRef",
            "reason": "FieldValueInvalid",
        },
    )

    type = ma.fields.String(
        load_default=domain_sources.AUTH_BEARER,
        validate=ma.validate.OneOf([domain_sources.AUTH_BEARER, domain_sources.AUTH_NONE]),
        metadata=describe(
            "How callers authenticate; bearer: 'Authorization: Bearer <token>'; "
            "none: anyone who can reach ingest (reported in status)."
        ),
    )
    secretRef = ma.fields.Nested(
        SecretRefSchema,
        metadata=describe("Secret key holding the expected token (bearer only)."),
    )

    @ma.validates_schema
    def _secret_for_bearer(self, data: dict[str, Any], **_: Any) -> None:
        has_secret = data.get("secretRef") is not None
        if data.get("type") == domain_sources.AUTH_NONE and has_secret:
            raise ma.ValidationError(
                "type none takes no secretRef; remove it, or use type bearer.", "secretRef"
            )
        if data.get("type") == domain_sources.AUTH_BEARER and not has_secret:
            raise ma.ValidationError(
                "Missing data for required field (the Secret key holding the bearer token).",
                "secretRef",
            )


class RateLimitSchema(StrictSchema):
    maxWorkflowStarts = ma.fields.Integer(
        load_default=100,
        validate=ma.validate.Range(min=1),
        metadata=describe(
            "Workflow runs this Source may start per window; more are recorded only."
        ),
    )
    windowSeconds = ma.fields.Integer(
        load_default=60,
        validate=ma.validate.Range(min=1),
        metadata=describe("Length of the rate-limit window, seconds."),
    )


class WebhookConfigSchema(StrictSchema):
    path = ma.fields.String(
        validate=[ma.validate.Length(min=1, max=253), WEBHOOK_PATH, _path],
        metadata=describe(
            "URL path served by ingest; default /webhook/<name>. Stored without a trailing "
            "or doubled '/'; unique across Sources."
        ),
    )
    filters = Dict(
        keys=ma.fields.String(validate=LABEL_NAME),
        values=ma.fields.List(ma.fields.String(), validate=ma.validate.Length(min=1)),
        load_default=dict,
        metadata=describe(
            "Label name to allowed values; an alert passes when each label has one of them."
        ),
    )
    matchers = ma.fields.List(
        ma.fields.String(validate=_matcher),
        load_default=list,
        validate=ma.validate.Length(max=64),
        metadata=describe('AlertManager matchers, e.g. namespace=~"prod|staging"; all must hold.'),
    )
    authentication = ma.fields.Nested(
        AuthenticationSchema,
        required=True,
        # marshmallow formats its messages: the braces of {type: none} are escaped.
        error_messages={
            "required": domain_sources.NO_AUTHENTICATION.replace("{", "{{").replace("}", "}}")
        },
        metadata=describe("How callers authenticate: a bearer token, or explicitly type none."),
    )
    rateLimit = ma.fields.Nested(
        RateLimitSchema,
        load_default=defaults_of(RateLimitSchema),
        metadata=describe("Cap on workflow starts, against alert storms."),
    )


class ScheduleConfigSchema(StrictSchema):
    cron = ma.fields.String(
        required=True,
        validate=[ma.validate.Length(min=1, max=128), _cron],
        metadata=describe("Cron expression (five fields) of when to start the Workflow."),
    )
    timezone = ma.fields.String(
        load_default="UTC",
        validate=_timezone,
        metadata=describe("IANA time zone the cron expression is read in."),
    )


class ChatConfigSchema(ma.Schema):
    """Placeholder so the type has a config block; the type itself is refused."""

    class Meta:
        unknown = ma.INCLUDE


SOURCE_CONFIG_SCHEMAS: dict[str, type[ma.Schema]] = {
    "webhook": WebhookConfigSchema,
    "schedule": ScheduleConfigSchema,
    "chat": ChatConfigSchema,
}


class SourceSpecSchema(StrictSchema):
    type = ma.fields.String(
        required=True,
        validate=ma.validate.OneOf(SOURCE_TYPES),
        metadata=describe("webhook (AlertManager), schedule (cron) or chat (reserved)."),
    )
    config = ByType(SOURCE_CONFIG_SCHEMAS, metadata=describe("Settings of this Source's type."))
    triggerWorkflow = ma.fields.String(
        validate=[NAME_LENGTH, NAME],
        metadata=describe("Workflow (same namespace) started for each accepted event."),
    )
    context = Dict(
        keys=ma.fields.String(),
        load_default=dict,
        metadata=describe("Free-form values handed to every run as source.context."),
    )

    @ma.pre_load
    def _config_present(self, data: Any, **_: Any) -> Any:
        # Load an absent config through its type's schema, so required fields
        # (schedule's cron) are reported and defaults are applied.
        if isinstance(data, dict) and data.get("config") is None:
            return {**data, "config": {}}
        return data

    @ma.validates("type")
    def _not_reserved(self, value: str, **_: Any) -> None:
        if value in RESERVED_TYPES:
            raise ma.ValidationError(RESERVED_TYPES[value])


def fill_defaults(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Defaults that depend on the resource's name (a webhook's path)."""
    if spec.get("type") == "webhook":
        config = spec.setdefault("config", {})
        # Stored in its canonical form, the form every comparison uses.
        config["path"] = domain_sources.webhook_path(name, spec)
    return spec
