"""A Workflow as the engine runs it, parsed from its stored (normalized) spec.

The spec was validated by ``shared.resources`` when it was stored, but the engine
still parses it defensively: a spec written by an older controller may lack a
default, and a run must fail with a message naming the field rather than with a
``KeyError`` deep in a task. What is checked here is what the engine relies on:
unique step names, known step types, and conditional branches that only refer to
later steps (a branch cannot jump backwards, so a run always ends).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from shared.errors import ConfigError

DEFAULT_MAX_CONCURRENT_RUNS = 10
DEFAULT_MAX_RUNS_PER_FINGERPRINT = 1
DEFAULT_FINGERPRINT_WINDOW_SECONDS = 3600
STOP_OUTCOMES = ("succeeded", "failed")


class WorkflowError(ConfigError):
    """The Workflow cannot be run as written; the message names the field."""


@dataclasses.dataclass(frozen=True)
class Branch:
    """One side of a conditional: steps to run or skip, or stop the run."""

    run: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    stop: str | None = None
    message: str | None = None


@dataclasses.dataclass(frozen=True)
class Step:
    index: int
    name: str
    type: str
    # Seconds one attempt may take; None means the engine's default.
    timeout_seconds: float | None
    retries: int
    continue_on_error: bool
    # The whole step as stored, for the executor of its type.
    config: Mapping[str, Any]
    # Conditionals only.
    then: Branch | None = None
    otherwise: Branch | None = None


@dataclasses.dataclass(frozen=True)
class Output:
    name: str
    value: str


@dataclasses.dataclass(frozen=True)
class Limits:
    max_concurrent_runs: int = DEFAULT_MAX_CONCURRENT_RUNS
    max_runs_per_fingerprint: int = DEFAULT_MAX_RUNS_PER_FINGERPRINT
    fingerprint_window_seconds: int = DEFAULT_FINGERPRINT_WINDOW_SECONDS


@dataclasses.dataclass(frozen=True)
class Runtime:
    image: str | None = None
    environment: Mapping[str, str] = dataclasses.field(default_factory=dict)
    llm_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # For runner: kubernetes (shared.resources.workflows.RuntimeSchema).
    service_account_name: str | None = None
    automount_service_account_token: bool = False
    resources: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Workflow:
    namespace: str
    name: str
    runtime: Runtime
    steps: tuple[Step, ...]
    outputs: tuple[Output, ...]
    sinks: tuple[str, ...]
    limits: Limits

    def index_of(self, name: str) -> int:
        for step in self.steps:
            if step.name == name:
                return step.index
        raise KeyError(name)


def parse(
    namespace: str, name: str, spec: Mapping[str, Any], known_types: Collection[str]
) -> Workflow:
    """Build a Workflow from a stored spec; raise WorkflowError naming the bad field."""
    where = f"Workflow {namespace}/{name}"
    if not isinstance(spec, Mapping):
        raise WorkflowError(f"{where}: spec must be a mapping")
    raw_steps = spec.get("steps") or []
    if not isinstance(raw_steps, Sequence) or isinstance(raw_steps, str):
        raise WorkflowError(f"{where}: steps must be a list")
    steps = tuple(
        _parse_step(where, index, raw, known_types) for index, raw in enumerate(raw_steps)
    )
    seen: set[str] = set()
    for step in steps:
        if step.name in seen:
            raise WorkflowError(f"{where}: steps[{step.index}]: duplicate step name {step.name!r}")
        seen.add(step.name)
    for step in steps:
        for side, branch in (("then", step.then), ("else", step.otherwise)):
            if branch is not None:
                _check_branch(where, steps, step, side, branch)
    return Workflow(
        namespace=namespace,
        name=name,
        runtime=_parse_runtime(where, spec.get("runtime") or {}),
        steps=steps,
        outputs=_parse_outputs(where, spec.get("outputs") or []),
        sinks=_parse_sinks(where, spec.get("sinks") or []),
        limits=_parse_limits(where, spec.get("limits") or {}),
    )


def _parse_step(where: str, index: int, raw: Any, known_types: Collection[str]) -> Step:
    at = f"{where}: steps[{index}]"
    if not isinstance(raw, Mapping):
        raise WorkflowError(f"{at}: must be a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise WorkflowError(f"{at}: name is required")
    step_type = raw.get("type")
    if step_type not in known_types:
        raise WorkflowError(
            f"{at} ({name}): unknown step type {step_type!r}; "
            f"known types: {', '.join(sorted(known_types))}"
        )
    timeout: float | None = None
    if raw.get("timeoutSeconds") is not None:
        timeout = _positive_number(at, "timeoutSeconds", raw["timeoutSeconds"])
    elif raw.get("timeoutMinutes") is not None:
        timeout = _positive_number(at, "timeoutMinutes", raw["timeoutMinutes"]) * 60
    retries = raw.get("retries", 0)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise WorkflowError(f"{at} ({name}): retries must be a whole number >= 0")
    then = otherwise = None
    if step_type == "conditional":
        condition = raw.get("condition")
        if not isinstance(condition, str) or not condition.strip():
            raise WorkflowError(f"{at} ({name}): condition is required")
        then = _parse_branch(at, "then", raw.get("then") or {})
        otherwise = _parse_branch(at, "else", raw.get("else", raw.get("else_")) or {})
    return Step(
        index=index,
        name=name,
        type=str(step_type),
        timeout_seconds=timeout,
        retries=retries,
        continue_on_error=bool(raw.get("continueOnError", False)),
        config=dict(raw),
        then=then,
        otherwise=otherwise,
    )


def _positive_number(at: str, field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise WorkflowError(f"{at}: {field} must be a number greater than zero")
    return float(value)


def _parse_branch(at: str, side: str, raw: Any) -> Branch:
    if not isinstance(raw, Mapping):
        raise WorkflowError(f"{at}.{side}: must be a mapping")
    stop = raw.get("stop")
    if stop is not None and stop not in STOP_OUTCOMES:
        raise WorkflowError(f"{at}.{side}.stop: must be one of {', '.join(STOP_OUTCOMES)}")
    names = {}
    for field in ("run", "skip"):
        value = raw.get(field) or []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise WorkflowError(f"{at}.{side}.{field}: must be a list of step names")
        names[field] = tuple(value)
    message = raw.get("message")
    return Branch(
        run=names["run"],
        skip=names["skip"],
        stop=stop,
        message=str(message) if message is not None else None,
    )


def _check_branch(where: str, steps: Sequence[Step], step: Step, side: str, branch: Branch) -> None:
    later = {other.name for other in steps[step.index + 1 :]}
    for field, names in (("run", branch.run), ("skip", branch.skip)):
        for target in names:
            if target not in later:
                raise WorkflowError(
                    f"{where}: steps[{step.index}] ({step.name}).{side}.{field}: "
                    f"{target!r} is not a step after {step.name!r}; a branch can only "
                    "choose among the steps that follow it"
                )


def _parse_runtime(where: str, raw: Any) -> Runtime:
    if not isinstance(raw, Mapping):
        raise WorkflowError(f"{where}: runtime must be a mapping")
    environment = raw.get("environment") or {}
    if not isinstance(environment, Mapping):
        raise WorkflowError(f"{where}: runtime.environment must be a mapping of strings")
    image = raw.get("image")
    return Runtime(
        image=str(image) if image else None,
        environment={str(key): str(value) for key, value in environment.items()},
        llm_config=dict(raw.get("llmConfig") or {}),
        service_account_name=str(raw["serviceAccountName"])
        if raw.get("serviceAccountName")
        else None,
        automount_service_account_token=bool(raw.get("automountServiceAccountToken", False)),
        resources={
            kind: {str(k): str(v) for k, v in (raw.get("resources") or {}).get(kind, {}).items()}
            for kind in ("requests", "limits")
            if (raw.get("resources") or {}).get(kind)
        },
    )


def _parse_outputs(where: str, raw: Any) -> tuple[Output, ...]:
    if not isinstance(raw, list):
        raise WorkflowError(f"{where}: outputs must be a list of {{name, value}}")
    outputs = []
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise WorkflowError(f"{where}: outputs[{index}]: needs a name and a value")
        outputs.append(Output(name=item["name"], value=str(item.get("value", ""))))
    return tuple(outputs)


def _parse_sinks(where: str, raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list):
        raise WorkflowError(f"{where}: sinks must be a list of Sink names")
    sinks = []
    for index, item in enumerate(raw):
        # Tolerate {name: ...} entries as well as bare names.
        name = item.get("name") if isinstance(item, Mapping) else item
        if not isinstance(name, str) or not name:
            raise WorkflowError(f"{where}: sinks[{index}]: must be a Sink name")
        if name not in sinks:
            sinks.append(name)
    return tuple(sinks)


def _parse_limits(where: str, raw: Any) -> Limits:
    if not isinstance(raw, Mapping):
        raise WorkflowError(f"{where}: limits must be a mapping")
    values = {}
    for field, attr, default in (
        ("maxConcurrentRuns", "max_concurrent_runs", DEFAULT_MAX_CONCURRENT_RUNS),
        ("maxRunsPerFingerprint", "max_runs_per_fingerprint", DEFAULT_MAX_RUNS_PER_FINGERPRINT),
        (
            "fingerprintWindowSeconds",
            "fingerprint_window_seconds",
            DEFAULT_FINGERPRINT_WINDOW_SECONDS,
        ),
    ):
        value = raw.get(field, default)
        if value is None:
            value = default
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise WorkflowError(f"{where}: limits.{field} must be a whole number >= 0")
        values[attr] = value
    return Limits(**values)
