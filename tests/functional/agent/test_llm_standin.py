"""The compose stand-in model (`python -m services.standins.llm`) as a process, driven by
the real LangChain loop: it reads the cluster once and submits an honest non-answer."""

from __future__ import annotations

from pathlib import Path

import harness

from services.engine.agent import investigations, llm

REPO = Path(__file__).parents[3]


def test_the_standin_reads_the_cluster_and_escalates(standin: str) -> None:
    scenario = harness.load("crashloop")
    with harness.served(scenario) as (cluster, _, settings):
        result = investigations.run(
            investigations.Investigation(
                alert=scenario["alert"],
                settings=settings,
                tools=("kubectl",),
                llm=llm.LLMConfig(provider="local", endpoint=standin, model="stand-in", retries=0),
                timeout=30.0,
            ),
            breaker=llm.CircuitBreaker(),
        )
    assert result["mode"] == "llm"
    assert result["category"] == "unknown"
    assert result["escalate"] is True
    assert "Stand-in model" in result["summary"]
    assert [(c["tool"], c["arguments"], c["status"]) for c in result["toolCalls"]] == [
        ("kubectl", {"verb": "get", "kind": "pod", "namespace": "shop"}, "ok")
    ]
    assert "web-7d9f-abcde" in result["findings"][0]["detail"]
    assert any(call.path.endswith("/namespaces/shop/pods") for call in cluster.requests)
