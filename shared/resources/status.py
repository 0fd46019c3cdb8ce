"""What the controller reports in a resource's ``status``, and how it is computed.

The status schemas are rendered into the CRDs like the specs. ``build`` is pure: the
controller gathers the facts (validation, references, counters read from the
database) and this module turns them into ``ready`` and Kubernetes-style
``conditions``, keeping ``lastTransitionTime`` when a condition did not change so
that status patches stay quiet.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import marshmallow as ma

from shared.resources.fields import describe

# Condition types, in the order they are reported.
VALID = "Valid"
RESOLVED = "Resolved"
STORED = "Stored"
READY = "Ready"
# Reported beside the others without affecting Ready (a Source's caller check).
AUTHENTICATED = "Authenticated"


class ConditionSchema(ma.Schema):
    type = ma.fields.String(
        required=True,
        metadata=describe("Valid, Resolved, Stored, Ready; Sources also Authenticated."),
    )
    status = ma.fields.String(
        required=True, validate=ma.validate.OneOf(["True", "False", "Unknown"])
    )
    reason = ma.fields.String(metadata=describe("CamelCase reason for the status."))
    message = ma.fields.String(metadata=describe("What is wrong, naming the field."))
    observedGeneration = ma.fields.Integer(metadata=describe("Generation this was computed for."))
    lastTransitionTime = ma.fields.DateTime(metadata=describe("When status last changed."))


class CommonStatusSchema(ma.Schema):
    ready = ma.fields.Boolean(metadata=describe("Valid, references resolved, and in use."))
    observedGeneration = ma.fields.Integer(metadata=describe("Last generation handled."))
    conditions = ma.fields.List(ma.fields.Nested(ConditionSchema))


class SourceStatusSchema(CommonStatusSchema):
    lastEventTime = ma.fields.DateTime(metadata=describe("When the last event was received."))
    eventsProcessed = ma.fields.Integer(metadata=describe("Events received so far."))


class WorkflowStatusSchema(CommonStatusSchema):
    steps = ma.fields.Integer(metadata=describe("Number of steps."))
    lastRunTime = ma.fields.DateTime(metadata=describe("When the last run was created."))
    lastRunPhase = ma.fields.String(metadata=describe("Phase of the last run."))
    runsTotal = ma.fields.Integer(metadata=describe("Runs so far."))


class SinkStatusSchema(CommonStatusSchema):
    lastSentTime = ma.fields.DateTime(metadata=describe("When the last message was sent."))
    messagesSent = ma.fields.Integer(metadata=describe("Messages sent so far."))
    lastError = ma.fields.String(metadata=describe("Error of the last delivery, if it failed."))


@dataclasses.dataclass(frozen=True)
class Problem:
    """Why a resource is not ready: a condition reason and a message naming the field."""

    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Advisory:
    """A condition that informs without making the resource not ready.

    ``problem`` None means the condition holds (status True).
    """

    type: str
    problem: Problem | None
    ok_reason: str
    ok_message: str


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the controller found out about one resource generation."""

    generation: int
    invalid: Problem | None = None
    unresolved: Sequence[Problem] = ()
    # Set when the spec is not in use by the services: not written (invalid), or
    # written but not served (a webhook path another Source also claims).
    not_stored: Problem | None = None
    advisories: Sequence[Advisory] = ()
    # Counters from the database, already named as in the status schema.
    counters: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def _condition(
    type_: str, problem: Problem | None, ok_reason: str, ok_message: str, generation: int
) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "False" if problem else "True",
        "reason": problem.reason if problem else ok_reason,
        "message": problem.message if problem else ok_message,
        "observedGeneration": generation,
    }


def _joined(problems: Sequence[Problem]) -> Problem | None:
    if not problems:
        return None
    return Problem(problems[0].reason, "; ".join(problem.message for problem in problems))


def build(facts: Facts, previous: Mapping[str, Any] | None, now: dt.datetime) -> dict[str, Any]:
    """The full status for ``facts``; ``previous`` is the status as it is now."""
    unresolved = _joined(facts.unresolved)
    conditions = [
        _condition(VALID, facts.invalid, "Valid", "Spec is valid.", facts.generation),
        _condition(RESOLVED, unresolved, "Resolved", "All references resolve.", facts.generation),
        _condition(STORED, facts.not_stored, "Stored", "In use by the services.", facts.generation),
    ]
    first_problem = facts.invalid or facts.not_stored or unresolved
    conditions.append(_condition(READY, first_problem, "Ready", "Ready.", facts.generation))
    for advisory in facts.advisories:
        conditions.append(
            _condition(
                advisory.type,
                advisory.problem,
                advisory.ok_reason,
                advisory.ok_message,
                facts.generation,
            )
        )
    old = {
        condition.get("type"): condition
        for condition in (previous or {}).get("conditions") or []
        if isinstance(condition, Mapping)
    }
    stamp = now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for condition in conditions:
        before = old.get(condition["type"])
        if (
            before
            and before.get("status") == condition["status"]
            and before.get("lastTransitionTime")
        ):
            condition["lastTransitionTime"] = before["lastTransitionTime"]
        else:
            condition["lastTransitionTime"] = stamp
    return {
        "ready": first_problem is None,
        "observedGeneration": facts.generation,
        "conditions": conditions,
        **facts.counters,
    }


def changed(new: Mapping[str, Any], previous: Mapping[str, Any] | None) -> bool:
    """Whether patching ``new`` over ``previous`` would change anything."""
    previous = previous or {}
    return any(previous.get(key) != value for key, value in new.items())


def timestamp(value: dt.datetime | None) -> str | None:
    """RFC 3339 in UTC, as Kubernetes writes times (no fractions)."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
