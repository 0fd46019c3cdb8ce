"""The ``agent`` step: an investigation of the run's alert, with tools, as the step's output.

The step's fields (``shared.resources.steps.AgentStepSchema``) and the Workflow's
``runtime.llmConfig`` and ``runtime.tools`` become one
``agent.investigations.Investigation``; ``investigations.run`` does the rest (the
model's loop with an ``llmConfig``, the rule-based investigator without). The
result document is the step's output, so later steps and outputs read
``steps.<name>.output.category``.

``goal`` and ``prompt`` are rendered in the sandbox (a template that cannot render
fails the step, as for any step), but the rendered text goes to the model only as
data in the run context: the instructions keep the template text, so that alert
values never become instructions (``agent/prompts.py``).

Failures: a model that refuses (``ModelError``) or a configuration that cannot be used
(an unknown template, an unreadable API key) fail the step at once; an unreachable
model is a temporary failure, retried as the step's ``retries`` say. With
``llmConfig.fallback: rules`` a model that cannot answer does not fail the step: the
rule-based investigator answers, and the result says why (``modelError``). A tool never
fails the step: what it could not check is in the result.

What this module must not do: talk to the database. An action that needs approval
is returned in the output (``pendingApproval``) and the engine's task records it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from services.engine.steps import registries
from shared.domain import durations
from shared.errors import ConfigError, PermanentError, SecretError

log = logging.getLogger(__name__)

# Seconds kept from the step's timeout for recording the result after the investigation.
RECORD_MARGIN = 5.0
# Seconds one request to the model may take, at most (less when the step has less left).
MODEL_REQUEST_TIMEOUT = 60.0


@functools.lru_cache(maxsize=8)
def _catalog(folder: Path | None) -> Any:
    """Templates are parsed once per process and folder (built-ins: about 10 ms)."""
    from services.engine.agent.templates import Catalog

    return Catalog(folder)


def tool_settings(tools: Mapping[str, Any], kubernetes_api_url: str = "") -> Any:
    """``ToolSettings`` from the Workflow's normalized ``runtime.tools``."""
    from services.engine.core.remediation import ACTIONS, RemediationPolicy
    from services.engine.tools.registries import Script, ToolSettings

    remediation = tools.get("remediation") or {}
    scripts = {
        script["name"]: Script(
            name=script["name"],
            command=tuple(script["command"]),
            timeout=float(script.get("timeoutSeconds", 30.0)),
        )
        for script in tools.get("scripts") or []
    }
    return ToolSettings(
        prometheus_url=str((tools.get("prometheus") or {}).get("url") or ""),
        curl_hosts=frozenset((tools.get("curl") or {}).get("hosts") or ()),
        kubectl_namespaces=frozenset((tools.get("kubectl") or {}).get("namespaces") or ()),
        scripts=scripts,
        remediation=RemediationPolicy(
            actions=frozenset(remediation.get("actions") or ACTIONS),
            namespaces=frozenset(remediation.get("namespaces") or ()),
            max_replicas=int(remediation.get("maxReplicas", 20)),
        ),
        kubernetes_api_url=kubernetes_api_url,
    )


def llm_config(
    config: Mapping[str, Any],
    namespace: str,
    secrets: Callable[[str, str, str], str] | None,
    timeout: float,
) -> Any:
    """The model's ``LLMConfig`` from ``runtime.llmConfig``; None without one (rules)."""
    if not config:
        return None
    from services.engine.agent import llm

    api_key = ""
    ref = config.get("apiKeySecretRef")
    if ref:
        if secrets is None:
            raise PermanentError("runtime.llmConfig.apiKeySecretRef: no secret store configured")
        try:
            api_key = secrets(namespace, ref["name"], ref["key"])
        except SecretError as exc:
            raise PermanentError(f"runtime.llmConfig.apiKeySecretRef: {exc}") from exc
    return llm.LLMConfig(
        provider=str(config.get("provider") or "local"),
        model=str(config["model"]),
        endpoint=str(config.get("endpoint") or ""),
        api_key=api_key,
        temperature=config.get("temperature"),
        max_tokens=config.get("maxTokens"),
        request_timeout=max(1.0, min(MODEL_REQUEST_TIMEOUT, timeout)),
    )


@registries.register()
class AgentExecutor(registries.StepExecutor):
    type = "agent"

    def execute(self, ctx: registries.StepContext) -> registries.Result:
        from services.engine.agent import investigations

        config = ctx.step.config
        settings = ctx.settings.engine if ctx.settings is not None else None
        goal = ctx.templates.render(config["goal"], ctx.namespace, where=ctx.where("goal"))
        prompt = config.get("prompt") or ""
        rendered_prompt = (
            ctx.templates.render(prompt, ctx.namespace, where=ctx.where("prompt")) if prompt else ""
        )
        timeout = max(1.0, ctx.timeout - RECORD_MARGIN)
        workflow = ctx.workflow
        alert = dict(ctx.namespace.get("alert") or {})
        investigation = investigations.Investigation(
            alert=alert,
            # The template texts: rendered values reach the model as data (see above).
            goal=config["goal"],
            prompt=prompt,
            tools=tuple(config.get("tools") or ()),
            max_iterations=int(config.get("maxIterations", 10)),
            approval_required=bool(config.get("approvalRequired", True)),
            timeout=timeout,
            template=str(config.get("template") or ""),
            llm=llm_config(workflow.runtime.llm_config, workflow.namespace, ctx.secrets, timeout),
            fallback_to_rules=(workflow.runtime.llm_config or {}).get("fallback") == "rules",
            settings=tool_settings(
                workflow.runtime.tools, settings.kubernetes_api_url if settings else ""
            ),
            context={
                "goal": goal,
                **({"prompt": rendered_prompt} if rendered_prompt else {}),
                "source": ctx.namespace.get("source") or {},
                "run": ctx.namespace.get("run") or {},
            },
            actor=(
                f"workflow {workflow.namespace}/{workflow.name} run {ctx.run_id} "
                f"step {ctx.step.name}"
            ),
        )
        try:
            catalog = _catalog(settings.agent_templates_dir if settings else None)
            result = investigations.run(investigation, catalog=catalog)
        except ConfigError as exc:
            raise PermanentError(f"{ctx.where()}: {exc}") from exc
        result["goal"] = goal
        pending = [
            a for a in result.get("actionsTaken") or [] if a["decision"] == "approval_required"
        ]
        if pending:
            # The first change that waits for a human; the engine records the approval
            # and pauses the run (services/engine/tasks.py). Later ones stay recommended.
            result["pendingApproval"] = {
                **pending[0],
                "approvalTimeoutSeconds": durations.seconds(config.get("approvalTimeout", "30m")),
                "verifyTimeoutSeconds": durations.seconds(config.get("verifyTimeout", "2m")),
            }
        return registries.Result(output=result)
