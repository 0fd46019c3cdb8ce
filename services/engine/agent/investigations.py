"""One investigation, whichever investigator runs it: the agent step's single entry point.

:func:`run` chooses the investigation template (by the alert's name and labels, or
the step's override), offers the step's tools (``remediate`` only when the step names
it), and runs the model's loop when the Workflow has an ``llmConfig``, else the
rule-based investigator. Either way it returns the result as the step's output; it
raises only when the model provider fails or refuses (the step then fails with that
reason) and the Workflow did not ask for the rules to answer instead
(``fallback_to_rules``), never for a tool.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from services.engine.agent import investigators, llm, loop
from services.engine.agent.templates import Catalog
from services.engine.tools import registries
from services.engine.tools.registries import ToolContext, ToolRegistry, ToolSettings

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Investigation:
    alert: Mapping[str, Any]
    goal: str = "Find out why this alert fired."
    tools: Sequence[str] = ()
    max_iterations: int = 10
    approval_required: bool = True
    prompt: str = ""
    # Seconds the whole investigation may take (tools and model).
    timeout: float = 300.0
    template: str = ""
    llm: llm.LLMConfig | None = None
    # ``runtime.llmConfig.fallback: rules``: when the model cannot answer (unreachable,
    # hanging, its circuit open, refusing), the rule-based investigator answers instead
    # of the step failing; the model then gets the investigation's time but a reserve.
    fallback_to_rules: bool = False
    settings: ToolSettings = dataclasses.field(default_factory=ToolSettings)
    context: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    actor: str = "agent"


# Seconds of the investigation kept for the rules when the model may fail (at most a
# third of it): enough for a template's first tool calls against a responsive API.
RULES_RESERVE = 30.0


def _by_rules_instead(
    ledger: investigators.Ledger,
    template: Any,
    investigation: Investigation,
    exc: Exception,
) -> dict[str, Any]:
    """The rules' result when the model failed; it says so, and why (``modelError``)."""
    assert investigation.llm is not None
    log.warning(
        "model failed; the rules investigate instead",
        extra={
            "actor": investigation.actor,
            "provider": investigation.llm.key(),
            "error": str(exc),
        },
    )
    result = investigators.investigate_by_rules(ledger, template, investigation.alert)
    result["summary"] = (
        f"The model could not answer ({exc}); the rule-based investigator did instead. "
        + result["summary"]
    )[:4000]
    result["modelError"] = str(exc)[:2000]
    return result


def run(
    investigation: Investigation,
    *,
    registry: ToolRegistry | None = None,
    catalog: Catalog | None = None,
    model_factory: Callable[[llm.LLMConfig], Any] = llm.chat_model,
    breaker: llm.CircuitBreaker = llm.default_breaker,
    context_hook: Callable[[ToolContext], None] | None = None,
) -> dict[str, Any]:
    """Investigate; returns the result dict (``ResultSchema``)."""
    from services.engine import tools as _tools  # registers the built-in tools

    del _tools
    registry = registry or registries.default_registry
    catalog = catalog or Catalog()
    started = time.monotonic()
    deadline = started + investigation.timeout
    labels = {str(k): str(v) for k, v in (investigation.alert.get("labels") or {}).items()}
    template = catalog.choose(labels, investigation.template)
    remediation_allowed = "remediate" in investigation.tools
    offered, left_out = registry.offered(
        investigation.tools, investigation.settings, remediation_allowed=remediation_allowed
    )
    ctx = ToolContext(
        settings=investigation.settings,
        actor=investigation.actor,
        approval_required=investigation.approval_required,
        remediation_allowed=remediation_allowed,
        deadline=deadline,
    )
    if context_hook:
        context_hook(ctx)
    ledger = investigators.Ledger(offered, left_out, ctx, registry)
    try:
        if investigation.llm is None:
            result = investigators.investigate_by_rules(ledger, template, investigation.alert)
        else:
            model_deadline = deadline
            if investigation.fallback_to_rules:
                model_deadline -= min(RULES_RESERVE, investigation.timeout / 3)
            try:
                model = model_factory(investigation.llm)
                result = loop.investigate(
                    model,
                    investigation.llm,
                    ledger,
                    template,
                    investigation.alert,
                    goal=investigation.goal,
                    extra_prompt=investigation.prompt,
                    context=investigation.context,
                    max_iterations=investigation.max_iterations,
                    deadline=model_deadline,
                    breaker=breaker,
                )
            except (llm.ModelError, llm.ModelUnavailableError) as exc:
                if not investigation.fallback_to_rules:
                    raise
                result = _by_rules_instead(ledger, template, investigation, exc)
    finally:
        ctx.close()
    log.info(
        "investigation finished",
        extra={
            "actor": investigation.actor,
            "mode": result["mode"],
            "template": template.name,
            "category": result["category"],
            "confidence": result["confidence"],
            "tool_calls": len(result["toolCalls"]),
            "seconds": round(time.monotonic() - started, 3),
        },
    )
    return result
