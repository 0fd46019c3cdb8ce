"""One investigation, whichever investigator runs it: the agent step's single entry point.

:func:`run` chooses the investigation template (by the alert's name and labels, or
the step's override), offers the step's tools (``remediate`` only when the step names
it), and runs the model's loop when the Workflow has an ``llmConfig``, else the
rule-based investigator. Either way it returns the result as the step's output; it
raises only when the model provider fails or refuses (the step then fails with that
reason), never for a tool.
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
    settings: ToolSettings = dataclasses.field(default_factory=ToolSettings)
    context: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    actor: str = "agent"


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
                deadline=deadline,
                breaker=breaker,
            )
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
