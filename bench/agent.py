"""Agent benchmark: each tool's latency against the Kubernetes API double, and the loop's
own overhead per iteration with the model's time taken out.

Run with ``make bench-agent`` (or ``python bench/agent.py --help``). Everything is on
loopback: the Kubernetes API double and recorded Prometheus of ``tests/support`` serve
the ``crashloop`` eval scenario, and the scripted OpenAI-compatible server plays the
model (ChatOpenAI over real HTTP).

1. tool latency: ``invoke`` of each tool call (validation, API request(s), reduction,
   logging), ``--calls`` times each, one warm client per tool as in a step;
2. loop overhead: a model that calls ``kubectl get pod`` on every turn for
   ``--iterations`` turns; per iteration, wall time minus the time inside the model
   call (measured around the chat model's ``invoke``) minus the tool's own time. What
   is left is the loop: prompts, message history, the ledger, result validation.

Prints a markdown table; raw figures go to bench/results/agent.json. Figures are
reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The repository (for ``tests.support``) and the eval harness, as pytest sees them.
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "evals"))

import harness  # noqa: E402

from services.engine.agent import investigations, llm  # noqa: E402
from services.engine.tools import registries  # noqa: E402
from services.engine.tools.registries import ToolContext  # noqa: E402
from tests.support.openai_double import ScriptedModel, call  # noqa: E402

POD = {"kind": "pod", "name": "web-7d9f-abcde", "namespace": "shop"}
CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("kubectl get pod", "kubectl", {"verb": "get", **POD}),
    ("kubectl get pods (list)", "kubectl", {"verb": "get", "kind": "pod", "namespace": "shop"}),
    ("kubectl describe pod", "kubectl", {"verb": "describe", **POD}),
    ("kubectl logs --previous", "kubectl", {"verb": "logs", "previous": True, **POD}),
    ("kubectl events", "kubectl", {"verb": "events", "namespace": "shop"}),
    ("kubectl top pod", "kubectl", {"verb": "top", "kind": "pod", "namespace": "shop"}),
    ("promql (recorded)", "promql", {"query": "container_cpu_usage_seconds_total"}),
    (
        "remediate (needs approval)",
        "remediate",
        {"action": "restart-rollout", "name": "web", "namespace": "shop"},
    ),
    ("remediate (refused)", "remediate", {"action": "delete-namespace", "name": "shop"}),
]


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 3),
    }


def tool_latency(count: int) -> dict[str, dict[str, float]]:
    figures = {}
    scenario = harness.load("crashloop")
    with harness.served(scenario) as (_, _, settings):
        ctx = ToolContext(settings=settings, remediation_allowed=True, approval_required=True)
        for label, tool_name, arguments in CALLS:
            tool = registries.default_registry.get(tool_name)
            tool.invoke(arguments, ctx)  # warm: client created, first connection
            seconds = []
            for _ in range(count):
                started = time.perf_counter()
                tool.invoke(arguments, ctx)
                seconds.append(time.perf_counter() - started)
            figures[label] = _ms(seconds)
        ctx.close()
    return figures


class _Timed:
    """Wraps the chat model so that the time spent inside ``invoke`` is known."""

    def __init__(self, model: Any, spent: list[float]) -> None:
        self.model = model
        self.spent = spent

    def bind_tools(self, tools: Any) -> _Timed:
        return _Timed(self.model.bind_tools(tools), self.spent)

    def invoke(self, messages: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.model.invoke(messages, **kwargs)
        finally:
            self.spent.append(time.perf_counter() - started)


def loop_overhead(iterations: int) -> dict[str, float]:
    scenario = harness.load("crashloop")
    spent: list[float] = []
    # Imported once per worker process (about a second), not per iteration.
    import langchain_openai  # noqa: F401

    with ScriptedModel([call("kubectl", verb="get", **POD)] * iterations) as model:
        config = llm.LLMConfig(provider="local", endpoint=model.url, model="bench", retries=0)
        with harness.served(scenario) as (_, _, settings):
            investigation = investigations.Investigation(
                alert=scenario["alert"],
                settings=settings,
                llm=config,
                tools=["kubectl"],
                max_iterations=iterations,
                timeout=600,
            )
            started = time.perf_counter()
            result = investigations.run(
                investigation,
                model_factory=lambda c: _Timed(llm.chat_model(c), spent),
                breaker=llm.CircuitBreaker(),
            )
            wall = time.perf_counter() - started
    tools = sum(c["seconds"] for c in result["toolCalls"])
    model_time = sum(spent)
    return {
        "iterations": result["iterations"],
        "wall_ms_per_iteration": round(wall / iterations * 1000, 3),
        "model_call_ms_per_iteration": round(model_time / iterations * 1000, 3),
        "tool_ms_per_iteration": round(tools / iterations * 1000, 3),
        "overhead_ms_per_iteration": round((wall - model_time - tools) / iterations * 1000, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per tool (default 200)")
    parser.add_argument("--iterations", type=int, default=30, help="loop turns (default 30)")
    args = parser.parse_args()
    logging.disable(logging.INFO)  # the tools log every call; not what is measured
    tools = tool_latency(args.calls)
    loop = loop_overhead(args.iterations)
    print(f"| tool call ({args.calls} calls each) | median ms | p95 ms |")
    print("|---|---|---|")
    for label, figures in tools.items():
        print(f"| {label} | {figures['median_ms']} | {figures['p95_ms']} |")
    print()
    print(f"loop, {loop['iterations']} iterations (per iteration, ms):")
    for key in ("wall", "model_call", "tool", "overhead"):
        print(f"  {key:<11} {loop[key + '_ms_per_iteration']}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "agent.json").write_text(json.dumps({"tools": tools, "loop": loop}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
