"""The agent's tool and model calls, counted by a real engine worker and scraped.

A model investigation (the scripted OpenAI-compatible server) through
``punchingfist engine``: the model fails once (500, retried inside the step), asks
for two kubectl calls and submits. The scrape must show each model request with its
outcome and latency, the tokens the server reported in ``usage``, and each tool call
by tool and status, as the step's own record has them.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from enginekit import Harness, WorkerProcess, start_run
from test_agent_steps import ANSWER, POD, cluster, scenario, start_worker, workflow

from tests.support.kube_api import Cluster
from tests.support.openai_double import ScriptedModel, call, status
from tests.support.ports import free_port
from tests.support.scrape import scrape
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]
assert cluster  # the fixture, used by name below


def reporting(reply: dict[str, Any], prompt: int, completion: int) -> dict[str, Any]:
    return {**reply, "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}


def test_tool_calls_model_latency_and_tokens(
    harness: Harness,
    redis_app: Celery,
    worker_process: WorkerProcess,
    cluster: Cluster,
    tmp_path: Path,
) -> None:
    secrets = tmp_path / "secrets"
    (secrets / "llm").mkdir(parents=True)
    (secrets / "llm" / "apiKey").write_text("sk-test-123\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    script = [
        status(500),
        reporting(call("kubectl", verb="describe", **POD), 1000, 20),
        reporting(call("kubectl", verb="logs", previous=True, container="web", **POD), 1500, 30),
        reporting(call("submit_result", **ANSWER), 2500, 400),
    ]
    with ScriptedModel(script) as model:
        runtime = {
            "llmConfig": {
                "provider": "local",
                "endpoint": model.url,
                "model": "scripted",
                "apiKeySecretRef": {"name": "llm", "key": "apiKey"},
            },
            "tools": {"kubectl": {"namespaces": ["shop"]}},
        }
        harness.put_workflow(workflow(runtime))
        run_id = harness.add_run(labels=scenario("crashloop")["alert"]["labels"])
        start_worker(
            worker_process,
            cluster,
            PF_SECRETS_DIR=str(secrets),
            PF_ENGINE_METRICS_BIND=f"127.0.0.1:{port}",
        )
        start_run(redis_app, run_id)
        run = harness.wait_finished(run_id, timeout=60)
    assert run.phase == "Succeeded", (run.error, worker_process.log()[-3000:])
    result = harness.steps(run_id)[0].output
    assert result["mode"] == "llm"
    recorded = collections.Counter((c["tool"], c["status"]) for c in result["toolCalls"])
    assert sum(recorded.values()) == 2

    samples = wait_for(
        lambda: (
            (s := scrape(url)).value("punchingfist_runs_finished_total", phase="Succeeded") == 1
            and s
        ),
        30,
        "the run to be counted",
    )
    model_labels = {"provider": "local", "model": "scripted"}
    assert (
        samples.value("punchingfist_agent_model_requests_total", outcome="error", **model_labels)
        == 1
    )
    assert (
        samples.value("punchingfist_agent_model_requests_total", outcome="ok", **model_labels) == 3
    )
    assert (
        samples.value("punchingfist_agent_model_request_duration_seconds_count", **model_labels)
        == 4
    )
    assert (
        samples.value("punchingfist_agent_model_tokens_total", kind="prompt", **model_labels)
        == 5000
    )
    assert (
        samples.value("punchingfist_agent_model_tokens_total", kind="completion", **model_labels)
        == 450
    )
    for (tool, tool_status), count in recorded.items():
        assert (
            samples.value("punchingfist_agent_tool_calls_total", tool=tool, status=tool_status)
            == count
        )
    assert samples.total("punchingfist_agent_tool_calls_total") == 2
    assert samples.value("punchingfist_agent_tool_duration_seconds_count", tool="kubectl") == 2
