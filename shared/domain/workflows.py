"""A Workflow as the engine runs it: steps, branches, outputs, sinks and limits.

These dataclasses are built by ``from_spec`` from a *normalized* spec, the form the
Workflow schema (``shared.resources.workflows``) produces: every default applied,
every rule checked (unique step names, branches that choose among later steps,
templates that compile and read only earlier steps, one timeout in seconds). So
``from_spec`` trusts its input and checks nothing; there is no second parser whose
rules could drift from the schema's. Whoever holds a spec of unknown provenance (the
engine reading the database) goes through ``shared.resources.schemas.load_workflow``,
which validates with the schema first.

The notifier and the agent read Workflows through these classes too; nothing here
imports a framework.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from shared.errors import ConfigError


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
    # The whole step as normalized, for the executor of its type.
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
    """Start caps; 0 means no cap. The defaults are the schema's (``LimitsSchema``)."""

    max_concurrent_runs: int
    max_runs_per_fingerprint: int
    fingerprint_window_seconds: int


@dataclasses.dataclass(frozen=True)
class Runtime:
    image: str | None = None
    environment: Mapping[str, str] = dataclasses.field(default_factory=dict)
    llm_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # For runner: kubernetes (shared.resources.workflows.RuntimeSchema).
    service_account_name: str | None = None
    automount_service_account_token: bool = False
    resources: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    # runtime.tools as normalized by the schema (agent steps build their tool settings
    # from it: services/engine/steps/agent.py); empty when the Workflow gives none.
    tools: Mapping[str, Any] = dataclasses.field(default_factory=dict)


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


def from_spec(namespace: str, name: str, spec: Mapping[str, Any]) -> Workflow:
    """The Workflow of a normalized spec (see the module docstring: no checks here)."""
    runtime = spec["runtime"]
    limits = spec["limits"]
    return Workflow(
        namespace=namespace,
        name=name,
        runtime=Runtime(
            image=runtime.get("image"),
            environment=dict(runtime["environment"]),
            llm_config=dict(runtime.get("llmConfig") or {}),
            service_account_name=runtime.get("serviceAccountName") or None,
            automount_service_account_token=bool(
                runtime.get("automountServiceAccountToken", False)
            ),
            resources={
                kind: {str(k): str(v) for k, v in values.items()}
                for kind, values in (runtime.get("resources") or {}).items()
                if kind in ("requests", "limits") and values
            },
            tools=dict(runtime.get("tools") or {}),
        ),
        steps=tuple(_step(index, raw) for index, raw in enumerate(spec["steps"])),
        outputs=tuple(Output(output["name"], output["value"]) for output in spec["outputs"]),
        sinks=tuple(spec["sinks"]),
        limits=Limits(
            max_concurrent_runs=limits["maxConcurrentRuns"],
            max_runs_per_fingerprint=limits["maxRunsPerFingerprint"],
            fingerprint_window_seconds=limits["fingerprintWindowSeconds"],
        ),
    )


def _step(index: int, raw: Mapping[str, Any]) -> Step:
    conditional = raw["type"] == "conditional"
    return Step(
        index=index,
        name=raw["name"],
        type=raw["type"],
        timeout_seconds=raw.get("timeoutSeconds"),
        retries=raw["retries"],
        continue_on_error=raw["continueOnError"],
        config=raw,
        then=_branch(raw["then"]) if conditional else None,
        otherwise=_branch(raw["else"]) if conditional else None,
    )


def _branch(raw: Mapping[str, Any]) -> Branch:
    return Branch(
        run=tuple(raw.get("run") or ()),
        skip=tuple(raw.get("skip") or ()),
        stop=raw.get("stop"),
        message=raw.get("message"),
    )
