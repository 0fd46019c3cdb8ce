"""Each recorded scenario through the rule-based investigator (and, with PF_EVAL_LLM, a model)."""

from __future__ import annotations

import os
from pathlib import Path

import harness
import pytest
from harness import SCORES

from services.engine.agent import llm

NAMES = harness.scenario_names()


@pytest.mark.parametrize("name", NAMES)
def test_rules_find_the_recorded_cause(name: str) -> None:
    expected = harness.load(name)["expected"]["category"]
    result, cluster = harness.investigate(name)
    SCORES["rules"].append((name, expected, result["category"]))
    assert result["mode"] == "rules"
    assert result["category"] == expected, result["summary"]
    assert result["toolCalls"], "the rules made no tool call"
    assert cluster.deleted == []
    assert cluster.patched == []
    # The honest answer for "unknown" is to escalate.
    assert result["escalate"] is (expected == "unknown")


def _llm_config() -> llm.LLMConfig | None:
    spec = os.environ.get("PF_EVAL_LLM", "")
    if not spec:
        return None
    fields = dict(part.split("=", 1) for part in spec.split(",") if "=" in part)
    key_file = fields.pop("apiKeyFile", "")
    return llm.LLMConfig(
        provider=fields.get("provider", "local"),
        endpoint=fields.get("endpoint", ""),
        model=fields["model"],
        api_key=Path(key_file).read_text().strip() if key_file else "",
        request_timeout=float(fields.get("timeout", 120)),
    )


@pytest.mark.llm_eval
@pytest.mark.parametrize("name", NAMES)
def test_model_finds_the_recorded_cause(name: str) -> None:
    config = _llm_config()
    if config is None:
        pytest.skip("set PF_EVAL_LLM=provider=...,endpoint=...,model=... to run against a model")
    expected = harness.load(name)["expected"]["category"]
    result, cluster = harness.investigate(name, config, tools=["kubectl", "promql", "curl"])
    SCORES[f"llm {config.model}"].append((name, expected, result["category"]))
    assert cluster.deleted == []
    assert result["category"] == expected, result["summary"]
