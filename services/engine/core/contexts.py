"""The run context: the one document every step reads and extends.

Stored in ``workflow_runs.context`` and rewritten after each step, it is what
templates see::

    alert    the alert that started the run (ingest's ``IncomingAlert.to_context()``)
    source   {name, namespace, context}: the Source and its ``context`` block
    env      the Workflow's ``runtime.environment``
    steps    {<name>: {phase, output}} for every step, Pending until it ran
    run      {id, workflow, namespace}

Every step is present from the start (phase Pending, output {}), so that
``{{ steps.fix.output.stdout | default('') }}`` works even when ``fix`` was skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.domain.runs import StepPhase
from shared.domain.templates import TemplateError, Templates
from shared.domain.workflows import Workflow


def initial(input_context: Mapping[str, Any], workflow: Workflow, run_id: str) -> dict[str, Any]:
    context = dict(input_context)
    context.setdefault("alert", {})
    context.setdefault("source", {})
    context["env"] = {**dict(context.get("env") or {}), **dict(workflow.runtime.environment)}
    context["steps"] = {
        step.name: {"phase": StepPhase.PENDING.value, "output": {}} for step in workflow.steps
    }
    context["run"] = {"id": run_id, "workflow": workflow.name, "namespace": workflow.namespace}
    return context


def with_step(
    context: Mapping[str, Any], name: str, phase: str, output: Mapping[str, Any] | None
) -> dict[str, Any]:
    """A copy of ``context`` with one step's result in ``steps.<name>``."""
    steps = dict(context.get("steps") or {})
    steps[name] = {"phase": phase, "output": dict(output or {})}
    return {**context, "steps": steps}


def render_outputs(
    templates: Templates, workflow: Workflow, context: Mapping[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """The Workflow's ``outputs`` rendered at the end; (values, first error or None).

    A bad output does not hide the others: it is reported and left out.
    """
    values: dict[str, Any] = {}
    errors = []
    for output in workflow.outputs:
        try:
            values[output.name] = templates.render(
                output.value, context, where=f"output {output.name!r}"
            )
        except TemplateError as exc:
            errors.append(str(exc))
    return values, ("; ".join(errors) if errors else None)
