"""The model's investigation loop, on LangChain's chat models and tool calling.

One iteration is one model call and the tool calls it asked for. The loop is ours,
over ``BaseChatModel.bind_tools`` and LangChain's message types, rather than a
prebuilt agent graph, because each of these has to happen between the model's
decision and its effect:

* every requested call goes through the step's :class:`~investigators.Ledger`
  (the tool registry, allowlists, the remediation policy; a call to a tool that is
  not offered is refused, and a refused change is recorded);
* the step's deadline and ``maxIterations`` are checked before each model call, and
  when either runs out the loop returns what was found (the rules' reading of the
  evidence gathered so far) instead of raising;
* the answer is structured output: the model must call ``submit_result``, whose
  parameters are the result schema; an invalid answer gets one repair turn with the
  validation errors, then the result says the model failed (``escalate: true``).

The conversation is plain LangChain messages, so it can be kept with the run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

import marshmallow as ma
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from services.engine.agent import investigators, llm, prompts, results
from services.engine.agent.templates import Template
from services.engine.core import diagnosis

log = logging.getLogger(__name__)

REPAIRS = 1


def submit_spec() -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": prompts.SUBMIT,
            "description": "Submit the investigation's result. Call once, at the end.",
            "parameters": results.answer_json_schema(),
        },
    }


def _fallback(
    ledger: investigators.Ledger, template: Template, iterations: int, why: str, notes: str = ""
) -> dict[str, Any]:
    """A result from the evidence the model gathered, saying why the model's answer is missing."""
    found = diagnosis.diagnose(ledger.evidence)
    result = investigators.result_from(
        found,
        ledger,
        template,
        mode="llm",
        iterations=iterations,
        summary_prefix=f"{why} From the evidence gathered: ",
    )
    result["escalate"] = True
    result["escalationNotes"] = (notes or why)[:4000]
    return result


def _turn(
    answer: AIMessage, ledger: investigators.Ledger
) -> tuple[list[BaseMessage], dict[str, Any] | None, str]:
    """Answer every tool call of one model turn: (replies, a valid submitted answer, problem)."""
    replies: list[BaseMessage] = []
    submitted: dict[str, Any] | None = None
    problem = ""
    for bad in answer.invalid_tool_calls:
        replies.append(
            ToolMessage(
                f"[error] arguments are not valid JSON: {bad.get('error') or ''}",
                tool_call_id=bad.get("id") or "",
            )
        )
        if bad.get("name") == prompts.SUBMIT:
            problem = "the submitted result is not valid JSON"
    for call in answer.tool_calls:
        if call["name"] == prompts.SUBMIT:
            try:
                submitted = results.validate_answer(call["args"])
            except ma.ValidationError as exc:
                problem = json.dumps(exc.messages, sort_keys=True)[:2000]
                replies.append(
                    ToolMessage(
                        f"[error] the result is invalid: {problem}", tool_call_id=call["id"] or ""
                    )
                )
            continue
        result = ledger.call(call["name"], call["args"])
        replies.append(ToolMessage(result.for_model(), tool_call_id=call["id"] or ""))
    return replies, submitted, problem


def investigate(
    model: Any,
    config: llm.LLMConfig,
    ledger: investigators.Ledger,
    template: Template,
    alert: Mapping[str, Any],
    *,
    goal: str,
    extra_prompt: str = "",
    context: Mapping[str, Any] | None = None,
    max_iterations: int = 10,
    deadline: float,
    breaker: llm.CircuitBreaker = llm.default_breaker,
) -> dict[str, Any]:
    """Run the loop; returns the step's result. Raises llm.ModelError / ModelUnavailableError."""
    ledger.ctx.requester = "model"
    specs = [tool.spec() for tool in ledger.tools.values()] + [submit_spec()]
    bound = model.bind_tools(specs)
    messages: list[BaseMessage] = [
        SystemMessage(
            prompts.system_prompt(
                template,
                goal=goal,
                extra=extra_prompt,
                tools=list(ledger.tools),
                left_out=ledger.left_out,
                max_iterations=max_iterations,
            )
        ),
        HumanMessage(prompts.alert_message(alert, context or {})),
    ]
    repairs = 0
    iterations = 0
    while True:
        if iterations >= max_iterations:
            return _fallback(
                ledger,
                template,
                iterations,
                f"The model did not finish within {max_iterations} iterations.",
            )
        if time.monotonic() >= deadline:
            return _fallback(
                ledger, template, iterations, "The model did not finish before the step's timeout."
            )
        iterations += 1
        answer = llm.call(bound, messages, config, deadline, breaker=breaker)
        if not isinstance(answer, AIMessage):
            raise llm.ModelError(f"the model answered a {type(answer).__name__}, not a message")
        messages.append(answer)
        log.info(
            "model turn",
            extra={"iteration": iterations, "tool_calls": [c["name"] for c in answer.tool_calls]},
        )
        replies, submitted, problem = _turn(answer, ledger)
        if submitted is not None:
            return results.finish(
                submitted,
                mode="llm",
                actionsTaken=list(ledger.ctx.decisions),
                toolCalls=ledger.calls,
                unchecked=ledger.evidence.unchecked,
                template=template.name,
                iterations=iterations,
            )
        if not answer.tool_calls and not answer.invalid_tool_calls:
            problem = "the model answered in plain text instead of calling submit_result"
            replies.append(
                HumanMessage(f"Call {prompts.SUBMIT} with your result; plain text is not accepted.")
            )
        if problem:
            if repairs >= REPAIRS:
                return _fallback(
                    ledger,
                    template,
                    iterations,
                    "The model failed to produce a valid result.",
                    notes=f"The model's answer was invalid after {REPAIRS} repair(s): {problem}",
                )
            repairs += 1
        messages.extend(replies)
