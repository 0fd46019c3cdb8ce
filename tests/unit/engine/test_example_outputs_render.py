"""The shipped triage Workflow's outputs render at the end of a run.

``autoFixed`` used to read ``steps.apply-fix.phase``, which Jinja reads as
``steps.apply - fix.phase``: every run ended with "'fix' is undefined".
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.engine.core import contexts
from shared.domain.runs import StepPhase
from shared.domain.templates import Templates
from shared.resources.schemas import load_workflow

EXAMPLE = (
    Path(__file__).resolve().parents[3] / "examples" / "cluster" / "alert-triage-workflow.yaml"
)


@pytest.mark.parametrize(("fix_phase", "fixed"), [("Succeeded", "True"), ("Skipped", "False")])
def test_alert_triage_outputs_render(fix_phase: str, fixed: str) -> None:
    document = yaml.safe_load(EXAMPLE.read_text())
    workflow = load_workflow("default", "alert-triage", document["spec"])
    context = contexts.initial({"alert": {"labels": {"pod": "web-1"}}}, workflow, "run-1")
    context = contexts.with_step(
        context,
        "investigate",
        StepPhase.SUCCEEDED,
        {"summary": "OOM", "root_cause": "limit too low", "confidence": 0.9},
    )
    context = contexts.with_step(context, "apply-fix", fix_phase, {})
    values, error = contexts.render_outputs(Templates(), workflow, context)
    assert error is None
    assert values == {"summary": "OOM", "rootCause": "limit too low", "autoFixed": fixed}
    # The agent step's timeout: 5m, as the seed wrote it.
    assert workflow.steps[1].timeout_seconds == 300.0
