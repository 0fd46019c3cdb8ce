"""The investigation result: one marshmallow schema for the step's output.

Both investigators (the model's and the rules') produce this, and the model's answer
is validated with it: the model is shown the same schema (rendered as JSON Schema by
the CRD generator's renderer) as the parameters of its ``submit_result`` tool, so
there is one definition of what a result is. Sinks read it as
``steps.<name>.output.<field>``.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma

CATEGORIES = (
    "crashloop",
    "oom",
    "cpu",
    "memory",
    "network",
    "image",
    "config",
    "degradation",
    "unknown",
)
RISKS = ("low", "medium", "high")
TOOL_STATUSES = ("ok", "error", "empty", "denied", "approval_required")


class _Strict(ma.Schema):
    class Meta:
        unknown = ma.RAISE
        ordered = True


class FindingSchema(_Strict):
    title = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=300))
    detail = ma.fields.String(load_default="", validate=ma.validate.Length(max=4000))
    evidence = ma.fields.String(load_default="", validate=ma.validate.Length(max=4000))


class RecommendationSchema(_Strict):
    action = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=500))
    rationale = ma.fields.String(load_default="", validate=ma.validate.Length(max=2000))
    risk = ma.fields.String(load_default="low", validate=ma.validate.OneOf(RISKS))
    requiresApproval = ma.fields.Boolean(load_default=True)


class ToolCallSchema(_Strict):
    tool = ma.fields.String(required=True)
    arguments = ma.fields.Dict(load_default=dict)
    status = ma.fields.String(required=True, validate=ma.validate.OneOf(TOOL_STATUSES))
    seconds = ma.fields.Float(load_default=0.0)


class AnswerSchema(_Strict):
    """What the model must submit: its conclusions, not the bookkeeping."""

    summary = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=4000))
    findings = ma.fields.List(
        ma.fields.Nested(FindingSchema), load_default=list, validate=ma.validate.Length(max=30)
    )
    rootCause = ma.fields.String(load_default="", validate=ma.validate.Length(max=4000))
    category = ma.fields.String(required=True, validate=ma.validate.OneOf(CATEGORIES))
    confidence = ma.fields.Float(required=True, validate=ma.validate.Range(min=0, max=1))
    recommendations = ma.fields.List(
        ma.fields.Nested(RecommendationSchema),
        load_default=list,
        validate=ma.validate.Length(max=20),
    )
    canAutoFix = ma.fields.Boolean(load_default=False)
    escalate = ma.fields.Boolean(load_default=False)
    escalationNotes = ma.fields.String(load_default="", validate=ma.validate.Length(max=4000))


class ResultSchema(AnswerSchema):
    """The step's output: the answer plus what the engine knows for certain."""

    mode = ma.fields.String(required=True, validate=ma.validate.OneOf(["llm", "rules"]))
    actionsTaken = ma.fields.List(ma.fields.Dict(), load_default=list)
    toolCalls = ma.fields.List(ma.fields.Nested(ToolCallSchema), load_default=list)
    # What could not be checked (a tool that answered error or was not offered).
    unchecked = ma.fields.List(ma.fields.String(), load_default=list)
    template = ma.fields.String(load_default="generic")
    iterations = ma.fields.Integer(load_default=0)


def answer_json_schema() -> dict[str, Any]:
    """The answer as JSON Schema, for the model's ``submit_result`` tool."""
    from shared.resources.crds import object_schema

    schema = object_schema(AnswerSchema, defaults=False)
    schema["additionalProperties"] = False
    return schema


def validate_answer(raw: Any) -> dict[str, Any]:
    """The model's answer loaded with defaults; ma.ValidationError names each bad field."""
    if not isinstance(raw, dict):
        raise ma.ValidationError({"_schema": ["The answer must be a JSON object."]})
    loaded: dict[str, Any] = AnswerSchema().load(raw)
    return loaded


def finish(answer: dict[str, Any], **engine_fields: Any) -> dict[str, Any]:
    """A complete result (validated) from an answer and the engine's own fields."""
    dumped: dict[str, Any] = ResultSchema().load({**answer, **engine_fields})
    return dumped
