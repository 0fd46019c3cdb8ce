"""The Workflow spec: runtime, ordered steps, outputs, sinks and run limits.

This schema is the one validation of a Workflow: ``punchingfist validate``, the
controller and the engine's loader (``schemas.load_workflow``) all go through it, so
a Workflow that validates is a Workflow the engine runs. Steps are validated by the
schema of their type from ``shared.resources.steps``; this module adds what only the
whole Workflow can check:

* unique step names, output names and sinks;
* a conditional's branches run or skip only steps that come after it (so a run
  always moves forward and ends);
* every template and expression compiles in the engine's sandbox and reads only
  what exists when it is rendered: steps before it (any step, for outputs), names
  of the run context, and ``steps['a-b']`` for step names with a ``-``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import marshmallow as ma

from shared.domain import references, templates
from shared.resources.fields import (
    NAME,
    NAME_LENGTH,
    NAMESPACE,
    Dict,
    Polymorphic,
    SecretRefSchema,
    StrictSchema,
    defaults_of,
    describe,
)
from shared.resources.steps import STEP_SCHEMAS, Syntax, Templated, env_name_not_reserved

LLM_PROVIDERS = ("local", "openai", "anthropic", "together")
LLM_FALLBACKS = ("none", "rules")
OUTPUT_NAME = ma.validate.Regexp(
    r"^[A-Za-z_][A-Za-z0-9_]*$", error="Must be an identifier (letters, digits, '_')."
)
ENV_NAME: list[Callable[[Any], Any]] = [
    ma.validate.Regexp(r"^[A-Za-z_][A-Za-z0-9_]*$", error="Must be an environment variable name."),
    env_name_not_reserved,
]


class LLMConfigSchema(StrictSchema):
    provider = ma.fields.String(
        load_default="local",
        validate=ma.validate.OneOf(LLM_PROVIDERS),
        metadata=describe("local is any OpenAI-compatible endpoint (e.g. Ollama)."),
    )
    endpoint = ma.fields.String(
        validate=ma.validate.Length(min=1, max=2048),
        metadata=describe("Base URL of the model API; the provider's own when absent."),
    )
    model = ma.fields.String(
        required=True, validate=ma.validate.Length(min=1, max=253), metadata=describe("Model name.")
    )
    apiKeySecretRef = ma.fields.Nested(
        SecretRefSchema, metadata=describe("Secret key holding the API key, if the API needs one.")
    )
    temperature = ma.fields.Float(
        validate=ma.validate.Range(min=0, max=2), metadata=describe("Sampling temperature.")
    )
    maxTokens = ma.fields.Integer(
        validate=ma.validate.Range(min=1), metadata=describe("Most tokens in one completion.")
    )
    fallback = ma.fields.String(
        validate=ma.validate.OneOf(LLM_FALLBACKS),
        metadata=describe(
            "When the model cannot answer (unreachable, timing out, failing repeatedly, "
            "refusing): none (the default) fails the agent step with the reason; rules "
            "lets the rule-based investigator answer instead, the reason in modelError."
        ),
    )


# Kubernetes resource quantities (100m, 0.5, 128Mi, 1G).
QUANTITY = ma.validate.Regexp(
    r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$",
    error="Must be a Kubernetes quantity such as 100m, 0.5, 128Mi or 1Gi.",
)
RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")


def _resource_list(text: str) -> Dict:
    return Dict(
        keys=ma.fields.String(validate=ma.validate.OneOf(RESOURCE_NAMES)),
        values=ma.fields.String(validate=QUANTITY),
        metadata=describe(text),
    )


class ResourcesSchema(StrictSchema):
    requests = _resource_list("Requests of each step's Job, over the engine's defaults.")
    limits = _resource_list("Limits of each step's Job, over the engine's defaults.")


# Actions the remediation policy can allow (services/engine/core/remediation.ACTIONS;
# kept here as data: shared imports no service).
REMEDIATION_ACTIONS = ("restart-rollout", "delete-pod", "scale", "cordon")
SCRIPT_NAME = ma.validate.Regexp(
    r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$",
    error="Must be lowercase letters, digits, '-' or '_', starting and ending alphanumeric.",
)
# Hosts curl may reach: a DNS name, an IP, or *.domain for its subdomains.
CURL_HOST = ma.validate.Regexp(
    r"^(\*\.)?[A-Za-z0-9]([-A-Za-z0-9.:]*[A-Za-z0-9])?$",
    error="Must be a host name, an IP address, or *.domain for its subdomains.",
)


class PrometheusToolSchema(StrictSchema):
    url = ma.fields.Url(
        required=True,
        require_tld=False,
        schemes={"http", "https"},
        metadata=describe("Base URL of the Prometheus the promql tool queries."),
    )


class CurlToolSchema(StrictSchema):
    hosts = ma.fields.List(
        ma.fields.String(validate=[ma.validate.Length(min=1, max=253), CURL_HOST]),
        load_default=list,
        validate=ma.validate.Length(max=64),
        metadata=describe(
            "Hosts the curl tool may reach (exact names or IPs, *.domain for subdomains); "
            "none: curl is not offered."
        ),
    )


class KubectlToolSchema(StrictSchema):
    namespaces = ma.fields.List(
        ma.fields.String(validate=[ma.validate.Length(min=1, max=63), NAMESPACE]),
        load_default=list,
        validate=ma.validate.Length(max=256),
        metadata=describe("Namespaces kubectl may read; none: every namespace."),
    )


class ScriptToolSchema(StrictSchema):
    name = ma.fields.String(
        required=True,
        validate=[ma.validate.Length(min=1, max=63), SCRIPT_NAME],
        metadata=describe("Name the agent calls the script by."),
    )
    command = ma.fields.List(
        ma.fields.String(validate=ma.validate.Length(min=1)),
        required=True,
        validate=ma.validate.Length(min=1, max=64),
        metadata=describe("argv of the script; the agent's args are appended."),
    )
    timeoutSeconds = ma.fields.Float(
        load_default=30.0,
        validate=ma.validate.Range(min=0, min_inclusive=False, max=600),
        metadata=describe("Seconds before the script's process group is killed."),
    )


class RemediationPolicySchema(StrictSchema):
    actions = ma.fields.List(
        ma.fields.String(validate=ma.validate.OneOf(REMEDIATION_ACTIONS)),
        validate=ma.validate.Length(max=len(REMEDIATION_ACTIONS)),
        metadata=describe("Actions remediate may take; all four when absent."),
    )
    namespaces = ma.fields.List(
        ma.fields.String(validate=[ma.validate.Length(min=1, max=63), NAMESPACE]),
        load_default=list,
        validate=ma.validate.Length(max=256),
        metadata=describe("Namespaces remediate may change; none: any but kube-system."),
    )
    maxReplicas = ma.fields.Integer(
        load_default=20,
        validate=ma.validate.Range(min=1, max=1000),
        metadata=describe("Most replicas a scale action may ask for."),
    )


class ToolsSchema(StrictSchema):
    prometheus = ma.fields.Nested(
        PrometheusToolSchema, metadata=describe("Prometheus for promql; none: not offered.")
    )
    curl = ma.fields.Nested(CurlToolSchema, metadata=describe("What curl may reach."))
    kubectl = ma.fields.Nested(KubectlToolSchema, metadata=describe("What kubectl may read."))
    scripts = ma.fields.List(
        ma.fields.Nested(ScriptToolSchema),
        load_default=list,
        validate=ma.validate.Length(max=32),
        metadata=describe("Scripts the agent may run by name (argv only, no shell)."),
    )
    remediation = ma.fields.Nested(
        RemediationPolicySchema,
        metadata=describe("What remediate may change (it is offered only to steps naming it)."),
    )

    @ma.validates("scripts")
    def _unique_scripts(self, value: list[dict[str, Any]], **_: Any) -> None:
        names = [script["name"] for script in value]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ma.ValidationError(f"Script names must be unique: {', '.join(twice)}.")


class RuntimeSchema(StrictSchema):
    image = ma.fields.String(
        validate=ma.validate.Length(min=1, max=1024),
        metadata=describe("Container image for steps with runner: kubernetes."),
    )
    llmConfig = ma.fields.Nested(LLMConfigSchema, metadata=describe("Model used by agent steps."))
    environment = Dict(
        keys=ma.fields.String(validate=ENV_NAME),
        values=ma.fields.String(),
        load_default=dict,
        metadata=describe("Environment variables given to every step."),
    )
    serviceAccountName = ma.fields.String(
        validate=[NAME_LENGTH, NAME],
        metadata=describe(
            "Service account of the Jobs of steps with runner: kubernetes (one per "
            "Workflow, bound to what its steps do); the namespace's default otherwise."
        ),
    )
    automountServiceAccountToken = ma.fields.Boolean(
        metadata=describe(
            "Mount the service account's token into the Jobs (kubectl needs it); default false."
        ),
    )
    resources = ma.fields.Nested(
        ResourcesSchema,
        metadata=describe("Requests and limits of the Jobs, over the engine's defaults."),
    )
    tools = ma.fields.Nested(
        ToolsSchema,
        metadata=describe(
            "What the tools of agent steps may reach: Prometheus, curl hosts, kubectl "
            "namespaces, named scripts and the remediation policy."
        ),
    )


class OutputSchema(StrictSchema):
    name = ma.fields.String(
        required=True,
        validate=[ma.validate.Length(min=1, max=63), OUTPUT_NAME],
        metadata=describe("Output name, readable by sinks as outputs.<name>."),
    )
    value = ma.fields.String(
        required=True,
        metadata=describe(
            "Template over the run context, e.g. {{ steps.investigate.output.summary }}."
        ),
    )


class LimitsSchema(StrictSchema):
    maxConcurrentRuns = ma.fields.Integer(
        load_default=10,
        validate=ma.validate.Range(min=0),
        metadata=describe("Runs of this Workflow at once; more are Skipped. 0: no cap."),
    )
    maxRunsPerFingerprint = ma.fields.Integer(
        load_default=1,
        validate=ma.validate.Range(min=0),
        metadata=describe("Runs for one alert fingerprint within the window. 0: no cap."),
    )
    fingerprintWindowSeconds = ma.fields.Integer(
        load_default=3600,
        validate=ma.validate.Range(min=0),
        metadata=describe("Window for maxRunsPerFingerprint, seconds."),
    )


class WorkflowSpecSchema(StrictSchema):
    runtime = ma.fields.Nested(
        RuntimeSchema,
        load_default=defaults_of(RuntimeSchema),
        metadata=describe("Where and with what the steps run."),
    )
    steps = ma.fields.List(
        Polymorphic(STEP_SCHEMAS, what="step"),
        required=True,
        validate=ma.validate.Length(min=1, max=64),
        metadata=describe("Steps, run in order; conditionals may run or skip later ones."),
    )
    outputs = ma.fields.List(
        ma.fields.Nested(OutputSchema),
        load_default=list,
        validate=ma.validate.Length(max=64),
        metadata=describe("Values computed when the run ends."),
    )
    sinks = ma.fields.List(
        ma.fields.String(validate=[NAME_LENGTH, NAME]),
        load_default=list,
        validate=ma.validate.Length(max=32),
        metadata=describe("Sinks (same namespace) told about each finished run."),
    )
    limits = ma.fields.Nested(
        LimitsSchema,
        load_default=defaults_of(LimitsSchema),
        metadata=describe("Caps on concurrent and repeated runs."),
    )

    @ma.validates_schema
    def _steps_refer_to_steps(self, data: dict[str, Any], **_: Any) -> None:
        steps = data.get("steps") or []
        errors: dict[str, Any] = {}
        first_index: dict[str, int] = {}
        for index, step in enumerate(steps):
            name = step["name"]
            if name in first_index:
                _add(
                    errors,
                    ("steps", index, "name"),
                    f"Duplicate step name {name!r} (also step {first_index[name]}).",
                )
            else:
                first_index[name] = index
        for index, step in enumerate(steps):
            if step["type"] != "conditional":
                continue
            for side, key in (("then", "then"), ("else", "else_")):
                branch = step.get(key) or {}
                for action in ("run", "skip"):
                    for position, target in enumerate(branch.get(action) or []):
                        problem = _branch_problem(step["name"], index, target, first_index)
                        if problem:
                            _add(errors, ("steps", index, side, action, position), problem)
        if errors:
            raise ma.ValidationError(errors)

    @ma.validates_schema
    def _templates_run(self, data: dict[str, Any], **_: Any) -> None:
        steps = data.get("steps") or []
        known = [step["name"] for step in steps]
        errors: dict[str, Any] = {}
        for index, step in enumerate(steps):
            schema = STEP_SCHEMAS[step["type"]]
            for field in schema.templated(step):
                for problem in _template_problems(field, earlier=known[:index], known=known):
                    _add(errors, ("steps", index, *field.path), problem)
        for index, output in enumerate(data.get("outputs") or []):
            field = Templated(("value",), output["value"])
            # Outputs are rendered when the run ends: every step has a result then.
            for problem in _template_problems(field, earlier=known, known=known):
                _add(errors, ("outputs", index, "value"), problem)
        if errors:
            raise ma.ValidationError(errors)

    @ma.validates_schema
    def _unique_names(self, data: dict[str, Any], **_: Any) -> None:
        errors: dict[str, Any] = {}
        seen: set[str] = set()
        for index, output in enumerate(data.get("outputs") or []):
            if output["name"] in seen:
                errors.setdefault("outputs", {})[index] = {
                    "name": [f"Duplicate output name {output['name']!r}."]
                }
            seen.add(output["name"])
        sinks = data.get("sinks") or []
        for index, sink in enumerate(sinks):
            if sink in sinks[:index]:
                errors.setdefault("sinks", {})[index] = [f"Sink {sink!r} is listed twice."]
        if errors:
            raise ma.ValidationError(errors)


def _add(errors: dict[Any, Any], path: Sequence[str | int], message: str) -> None:
    """Put ``message`` at ``path`` in marshmallow's nested error dict."""
    node = errors
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node.setdefault(path[-1], []).append(message)


def _branch_problem(name: str, index: int, target: str, first_index: Mapping[str, int]) -> str:
    if target not in first_index:
        return f"No step named {target!r} in this Workflow."
    if first_index[target] <= index:
        return (
            f"{target!r} is not a step after {name!r}: a branch can only choose among the "
            "steps that follow it (so that every run moves forward and ends)."
        )
    return ""


def _template_problems(
    field: Templated, *, earlier: Sequence[str], known: Sequence[str]
) -> list[str]:
    try:
        if field.syntax is Syntax.EXPRESSION:
            found = references.of_expression(field.source)
        else:
            found = references.of_template(field.source)
    except templates.TemplateError as exc:
        message = str(exc)
        return [message[:1].upper() + message[1:]]
    return references.problems(found, earlier=earlier, known=known)
