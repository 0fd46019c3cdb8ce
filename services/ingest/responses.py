"""The bodies the ingest API answers with, as marshmallow schemas for its OpenAPI document.

The views build their answers as plain dicts (``api._alert_json``, ``shared.runs``,
``shared.approvals.view``); these schemas say what those dicts hold, and nothing
else reads them. They cannot drift unnoticed: every schema refuses unknown keys
(``additionalProperties: false`` in the document) and lists every key as required,
and the schemathesis run of ``tests/e2e/test_bad_input.py`` checks each answer of the
real server against the document, so a key added, dropped or retyped in a view
fails there.

What this module must not do: validate requests (``shared.domain.webhooks`` owns
the webhook body) or be used to build answers (one shape, written once, in the view).
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from shared.domain.alerts import AlertStatus


def _text(**kwargs: Any) -> ma.fields.String:
    return ma.fields.String(required=True, **kwargs)


def _maybe_text(**kwargs: Any) -> ma.fields.String:
    return ma.fields.String(required=True, allow_none=True, **kwargs)


def _uuid() -> ma.fields.UUID:
    return ma.fields.UUID(required=True)


def _time(nullable: bool = False) -> ma.fields.DateTime:
    return ma.fields.DateTime(required=True, allow_none=nullable)


def _object(nullable: bool = True) -> ma.fields.Dict:
    """Free-form JSON object (step outputs, an AI analysis, a Sink's answer)."""
    return ma.fields.Dict(required=True, allow_none=nullable)


def _strings() -> ma.fields.Dict:
    return ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String(), required=True)


class Error(ma.Schema):
    """Every refusal: ``error`` names the problem; some carry details."""

    class Meta:
        unknown = ma.INCLUDE  # views add details (fields, refused) where they have them

    error = _text(metadata={"description": "What is wrong, in a sentence."})
    # "fields" is the Schema's own attribute: the key is named by data_key.
    problems = ma.fields.Dict(
        data_key="fields",
        keys=ma.fields.String(),
        values=ma.fields.Raw(),
        metadata={"description": "Field path (alerts.0.startsAt) -> what is wrong with it."},
    )
    refused = ma.fields.Integer(metadata={"description": "Alerts refused (all of them)."})


class Refusal(ma.Schema):
    index = ma.fields.Integer(required=True, metadata={"description": "Position in alerts."})
    field = _text()
    code = _text(validate=ma.validate.OneOf(["invalid", "nul", "surrogate", "too_long"]))
    reason = _text()


class WebhookAccepted(ma.Schema):
    """What happened to each alert of an accepted notification."""

    event = ma.fields.UUID(required=True, metadata={"description": "The source event stored."})
    received = ma.fields.Integer(required=True)
    filtered = ma.fields.Integer(required=True)
    deduplicated = ma.fields.Integer(required=True)
    new = ma.fields.Integer(required=True)
    resolved = ma.fields.Integer(required=True)
    workflowsStarted = ma.fields.Integer(required=True)
    rateLimited = ma.fields.Integer(required=True)
    refused = ma.fields.Integer(required=True)
    alerts = ma.fields.List(ma.fields.UUID(), required=True)
    runs = ma.fields.List(ma.fields.UUID(), required=True)
    refusals = ma.fields.List(
        ma.fields.Nested(Refusal),
        required=True,
        metadata={"description": "The first 100 refused alerts; `refused` is the count."},
    )
    truncated = ma.fields.Integer(
        required=True,
        metadata={"description": "Alerts AlertManager left out of the group (truncatedAlerts)."},
    )


class Health(ma.Schema):
    status = _text(validate=ma.validate.Equal("ok"))


class Readiness(ma.Schema):
    ready = ma.fields.Boolean(required=True)
    checks = _strings()
    webhookPaths = ma.fields.Integer(
        metadata={"description": "Webhook paths served; absent when the database is down."}
    )


class AlertView(ma.Schema):
    id = _uuid()
    fingerprint = _text()
    status = _text(validate=ma.validate.OneOf([s.value for s in AlertStatus]))
    alertName = _text()
    severity = _text()
    summary = _maybe_text()
    description = _maybe_text()
    labels = _strings()
    annotations = _strings()
    source = _text()
    workflow = _maybe_text()
    generatorURL = _maybe_text()
    autoResolved = ma.fields.Boolean(required=True)
    aiAnalysis = _object()
    aiConfidence = ma.fields.Float(required=True, allow_none=True)
    timesSeen = ma.fields.Integer(required=True)
    startsAt = _time()
    endsAt = _time(nullable=True)
    receivedAt = _time()
    lastSeenAt = _time()
    triageStartedAt = _time(nullable=True)
    triageCompletedAt = _time(nullable=True)
    resolvedAt = _time(nullable=True)


class AlertPage(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(AlertView), required=True)
    next = _maybe_text(metadata={"description": "Cursor of the next page; null on the last."})


class SourceEventView(ma.Schema):
    id = _uuid()
    receivedAt = _time()
    source = _text()
    alertStatus = _text()
    alertsTruncated = ma.fields.Integer(required=True)


class WorkflowRef(ma.Schema):
    name = _text()
    namespace = _text()


class StepView(ma.Schema):
    index = ma.fields.Integer(required=True)
    name = _text()
    type = _text()
    phase = _text()
    attempts = ma.fields.Integer(required=True)
    output = _object()
    error = _maybe_text()
    startedAt = _time(nullable=True)
    completedAt = _time(nullable=True)
    durationSeconds = ma.fields.Float(required=True, allow_none=True)


class ApprovalView(ma.Schema):
    id = _uuid()
    runId = _uuid()
    step = _text()
    status = _text(
        metadata={
            "description": "pending, approved, denied, expired, executing, executed, failed, "
            "or unknown (its worker was lost mid-change: never tried again)."
        }
    )
    action = _maybe_text()
    risk = _maybe_text(metadata={"description": "low, medium or high, as the policy rates it."})
    what = _text()
    reason = _maybe_text(metadata={"description": "Why the agent asked for the change."})
    request = _object(nullable=False)
    requestedBy = _text()
    why = _text()
    createdAt = _time()
    expiresAt = _time()
    decidedAt = _time(nullable=True)
    decidedBy = _maybe_text()
    comment = _maybe_text()
    completedAt = _time(nullable=True)
    result = _object()


class RunView(ma.Schema):
    id = _uuid()
    workflow = ma.fields.Nested(WorkflowRef, required=True)
    source = _maybe_text()
    alertId = ma.fields.UUID(required=True, allow_none=True)
    trigger = _text()
    phase = _text()
    stepsCompleted = ma.fields.Integer(required=True)
    totalSteps = ma.fields.Integer(required=True)
    currentStep = _maybe_text()
    outputs = _object()
    error = _maybe_text()
    message = _maybe_text()
    createdAt = _time()
    startedAt = _time(nullable=True)
    completedAt = _time(nullable=True)
    durationSeconds = ma.fields.Float(required=True, allow_none=True)
    steps = ma.fields.List(ma.fields.Nested(StepView), required=True)
    approvals = ma.fields.List(ma.fields.Nested(ApprovalView), required=True)


class DeliveryView(ma.Schema):
    id = _uuid()
    sink = _text()
    event = _text(metadata={"description": "run_finished, or approval_requested."})
    eventId = _maybe_text(metadata={"description": "The approval's id for approval_requested."})
    type = _maybe_text(metadata={"description": "The Sink's type now; null when it is gone."})
    phase = _text()
    attempts = ma.fields.Integer(required=True)
    error = _maybe_text()
    reference = _object()
    createdAt = _time()
    sentAt = _time(nullable=True)
    nextAttemptAt = _time(nullable=True)


class RunDetail(RunView):
    deliveries = ma.fields.List(ma.fields.Nested(DeliveryView), required=True)


class AlertDetail(AlertView):
    sourceEvents = ma.fields.List(ma.fields.Nested(SourceEventView), required=True)
    workflowRuns = ma.fields.List(ma.fields.Nested(RunView), required=True)


class ApprovalList(ma.Schema):
    approvals = ma.fields.List(ma.fields.Nested(ApprovalView), required=True)


class SlackDecision(ma.Schema):
    approval = _uuid()
    decision = _text(validate=ma.validate.OneOf(["approve", "deny"]))
    by = _text()
    ok = ma.fields.Boolean(required=True)
    message = _text()


class SlackAnswer(ma.Schema):
    ok = ma.fields.Boolean(required=True)
    decisions = ma.fields.List(ma.fields.Nested(SlackDecision), required=True)
