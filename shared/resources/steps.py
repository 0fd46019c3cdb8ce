"""Workflow step schemas, one per step type, keyed by the CRD ``type`` string.

These schemas are the single definition of what a step may say: the Workflow schema
validates each step with the schema of its type, the CRD generator renders them into
the manifest, and the engine reads the normalized result. The engine's executors in
``services/engine/steps/`` are registered under the same type strings.

Each schema also says which of its fields are templates or expressions
(``templated``), so that the Workflow schema compiles every one of them with the
engine's sandbox and checks the steps they read.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import marshmallow as ma

from shared.domain import durations, shellscripts
from shared.resources.fields import Dict


def env_name_not_reserved(name: str) -> None:
    """PF_T1, PF_T2, ... are the shell templates' own (a step's env must not mask them)."""
    if shellscripts.RESERVED_NAME.match(name):
        raise ma.ValidationError(
            f"{name}: PF_T1, PF_T2, ... carry the values of shell templates; use another name."
        )


# The agent's tools (services/engine/tools/), as data: shared imports no service, and
# a test checks that the two lists agree.
AGENT_TOOLS = ("kubectl", "promql", "curl", "script", "remediate")
STEP_NAME = ma.validate.Regexp(
    r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$",
    error="Must be lowercase letters, digits, '-' or '_', starting and ending alphanumeric.",
)


class Syntax(enum.Enum):
    """How a templated field is compiled (and, in the engine, rendered)."""

    TEMPLATE = "template"  # Templates.render
    SHELL = "shell"  # a shell: true command (values go in PF_T<n>, shared.domain.shellscripts)
    EXPRESSION = "expression"  # Templates.evaluate


@dataclasses.dataclass(frozen=True)
class Templated:
    """One field of a step that the engine renders: where it is and what it says."""

    path: tuple[str | int, ...]
    source: str
    syntax: Syntax = Syntax.TEMPLATE


def _positive_duration(value: str) -> None:
    try:
        seconds = durations.seconds(value)
    except ValueError:
        return  # the Regexp validator beside this one says what is wrong
    if seconds <= 0:
        raise ma.ValidationError("Must be longer than zero.")


class StepSchema(ma.Schema):
    """Fields every step has, whatever its type."""

    class Meta:
        unknown = ma.RAISE
        ordered = True

    # Fields of which a step may give one at most; the CRD renders the same rule.
    ONE_OF: ClassVar[tuple[tuple[str, ...], ...]] = (
        ("timeout", "timeoutMinutes", "timeoutSeconds"),
    )

    name = ma.fields.String(required=True, validate=[ma.validate.Length(max=63), STEP_NAME])
    type = ma.fields.String(required=True)
    # Time limit for one attempt: a Go duration (5m, 1h30m, 30s), or minutes as in
    # the seed, or seconds. Normalized to timeoutSeconds, which the engine reads.
    timeout = ma.fields.String(
        validate=[
            ma.validate.Length(max=32),
            ma.validate.Regexp(durations.PATTERN, error=durations.MESSAGE),
            _positive_duration,
        ]
    )
    timeoutMinutes = ma.fields.Float(validate=ma.validate.Range(min=0, min_inclusive=False))
    timeoutSeconds = ma.fields.Float(validate=ma.validate.Range(min=0, min_inclusive=False))
    # Further attempts after a temporary failure, with exponential backoff.
    retries = ma.fields.Integer(load_default=0, validate=ma.validate.Range(min=0, max=10))
    # A failed step does not fail the run when true.
    continueOnError = ma.fields.Boolean(load_default=False)

    @ma.validates_schema
    def _one_of(self, data: dict[str, Any], **_: Any) -> None:
        for group in self.ONE_OF:
            given = [field for field in group if field in data]
            if len(given) > 1:
                raise ma.ValidationError(
                    f"Give at most one of {', '.join(group)} (this step gives {', '.join(given)}).",
                    given[-1],
                )

    @ma.post_load
    def _timeout_in_seconds(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if "timeout" in data:
            data["timeoutSeconds"] = durations.seconds(data.pop("timeout"))
        elif "timeoutMinutes" in data:
            data["timeoutSeconds"] = data.pop("timeoutMinutes") * 60.0
        return data

    @staticmethod
    def templated(step: Mapping[str, Any]) -> Iterator[Templated]:
        """The fields of ``step`` (as loaded) that the engine renders or evaluates."""
        return iter(())


class CliStepSchema(StepSchema):
    """Run a command: an argv list, or a string for the shell when ``shell: true``.

    Values from templates are data (``shared.domain.shellscripts``): a shell string
    that puts a ``{{ }}`` where its value cannot be passed safely, and an argv whose
    ``sh -c`` script holds a template, are refused here, with where and how.
    """

    command = ma.fields.Raw(required=True)
    shell = ma.fields.Boolean(load_default=False)
    env = Dict(
        keys=ma.fields.String(validate=env_name_not_reserved),
        values=ma.fields.String(),
        load_default=dict,
    )
    # A value from a template that starts an argument and begins with '-' fails the
    # step (it would be read as an option: kubectl delete pod --all), unless a
    # literal '--' comes before it or this is true.
    allowOptionLikeValues = ma.fields.Boolean(load_default=False)
    # "text" keeps stdout as a string; "json" also parses stdout into output fields.
    output = ma.fields.String(load_default="text", validate=ma.validate.OneOf(["text", "json"]))
    # Where the command runs: this worker, or a Kubernetes Job from runtime.image.
    runner = ma.fields.String(
        load_default="local", validate=ma.validate.OneOf(["local", "kubernetes"])
    )

    @ma.validates_schema
    def _command_shape(self, data: dict[str, Any], **_: Any) -> None:
        command = data.get("command")
        if data.get("shell"):
            if not isinstance(command, str) or not command.strip():
                raise ma.ValidationError("With shell: true, command is one string.", "command")
            problems = shellscripts.problems_of(command)
        elif not (
            isinstance(command, list) and command and all(isinstance(part, str) for part in command)
        ):
            raise ma.ValidationError(
                "Must be a list of strings (argv); use shell: true to give a shell string.",
                "command",
            )
        else:
            problems = shellscripts.argv_problems(command)
        if problems:
            raise ma.ValidationError(problems, "command")

    @staticmethod
    def templated(step: Mapping[str, Any]) -> Iterator[Templated]:
        command = step["command"]
        if step.get("shell"):
            yield Templated(("command",), command, Syntax.SHELL)
        else:
            for index, part in enumerate(command):
                yield Templated(("command", index), part)
        for key, value in (step.get("env") or {}).items():
            yield Templated(("env", key), value)


def _duration(default: str) -> ma.fields.String:
    return ma.fields.String(
        load_default=default,
        validate=[
            ma.validate.Length(max=32),
            ma.validate.Regexp(durations.PATTERN, error=durations.MESSAGE),
            _positive_duration,
        ],
    )


class AgentStepSchema(StepSchema):
    """An investigation that calls tools: a model's loop with ``runtime.llmConfig``,
    the rule-based investigator without (``services/engine/steps/agent.py``)."""

    goal = ma.fields.String(required=True, validate=ma.validate.Length(min=1))
    # Tools offered to the step; none: every read-only tool. remediate only if named.
    tools = ma.fields.List(
        ma.fields.String(validate=ma.validate.OneOf(AGENT_TOOLS)), load_default=list
    )
    maxIterations = ma.fields.Integer(load_default=10, validate=ma.validate.Range(min=1, max=100))
    # Tools that change the cluster wait for a human unless this is false.
    approvalRequired = ma.fields.Boolean(load_default=True)
    # Extra instructions appended to the agent's system prompt.
    prompt = ma.fields.String()
    # The investigation template to use instead of the one the alert's name chooses.
    template = ma.fields.String(
        validate=[ma.validate.Length(min=1, max=63), STEP_NAME],
    )
    # An undecided approval is denied after this long (a Go duration).
    approvalTimeout = _duration("30m")
    # After an approved change, how long its workload may take to become healthy.
    verifyTimeout = _duration("2m")

    @staticmethod
    def templated(step: Mapping[str, Any]) -> Iterator[Templated]:
        yield Templated(("goal",), step["goal"])
        if "prompt" in step:
            yield Templated(("prompt",), step["prompt"])


class BranchSchema(ma.Schema):
    """What a conditional does on one side: run or skip named steps, or stop the run."""

    class Meta:
        unknown = ma.RAISE
        ordered = True

    run = ma.fields.List(ma.fields.String())
    skip = ma.fields.List(ma.fields.String())
    stop = ma.fields.String(validate=ma.validate.OneOf(["succeeded", "failed"]))
    message = ma.fields.String()


class ConditionalStepSchema(StepSchema):
    """Evaluate a sandboxed expression over the context and choose a branch."""

    condition = ma.fields.String(required=True, validate=ma.validate.Length(min=1))
    then = ma.fields.Nested(BranchSchema, load_default=dict)
    # ``else`` is a Python keyword, hence data_key.
    else_ = ma.fields.Nested(BranchSchema, data_key="else", load_default=dict)

    @staticmethod
    def templated(step: Mapping[str, Any]) -> Iterator[Templated]:
        yield Templated(("condition",), step["condition"], Syntax.EXPRESSION)


STEP_SCHEMAS: dict[str, type[StepSchema]] = {
    "cli": CliStepSchema,
    "agent": AgentStepSchema,
    "conditional": ConditionalStepSchema,
}
