"""A model endpoint that hangs or refuses connections, met by a real engine worker.

An agent step must not hang with its endpoint: each request is bounded by what is
left of the step's time, so the step fails within its ``timeout`` saying the model
timed out. An endpoint that refuses connections fails the step at once, and after
``threshold`` failures in a row the worker's circuit breaker fails the next steps
without trying it. ``runtime.llmConfig.fallback: rules`` turns either failure into a
rule-based investigation whose result says why the model did not answer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from celery import Celery
from enginekit import Harness, WorkerProcess, start_run
from test_agent_steps import scenario, workflow

from tests.support.kube_api import Cluster, KubeApiDouble
from tests.support.ports import free_port


class HangingModel:
    """Accepts each request and never answers it (until the test ends)."""

    def __init__(self) -> None:
        self.requests = 0
        self.released = threading.Event()
        hanging = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hanging.requests += 1
                hanging.released.wait(120)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hanging() -> Iterator[HangingModel]:
    model = HangingModel()
    yield model
    model.close()


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with KubeApiDouble() as api:
        yield api.state.load(scenario("crashloop")["cluster"])


def runtime(endpoint: str, **llm_config: Any) -> dict[str, Any]:
    return {
        "llmConfig": {"provider": "local", "endpoint": endpoint, "model": "m", **llm_config},
        "tools": {"kubectl": {"namespaces": ["shop"]}},
    }


def run_once(harness: Harness, redis_app: Celery, timeout: float = 60) -> Any:
    run_id = harness.add_run(labels=scenario("crashloop")["alert"]["labels"])
    start_run(redis_app, run_id)
    return run_id, harness.wait_finished(run_id, timeout=timeout)


def start(worker: WorkerProcess, cluster: Cluster) -> None:
    # One pool process: the circuit breaker is per process, and the runs follow it.
    worker.env.update({"PF_ENGINE_KUBERNETES_API_URL": cluster.url, "PF_ENGINE_CONCURRENCY": "1"})
    worker.start()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_hanging_model_fails_the_step_within_its_timeout_with_the_reason(
    harness: Harness,
    redis_app: Celery,
    worker_process: WorkerProcess,
    cluster: Cluster,
    hanging: HangingModel,
) -> None:
    harness.put_workflow(workflow(runtime(hanging.url), timeout="10s"))
    start(worker_process, cluster)
    # The wait is well under a hanging request's 60 s default: the step's time bounds it.
    run_id, run = run_once(harness, redis_app, timeout=40)
    assert run.phase == "Failed", worker_process.log()[-3000:]
    assert "step 'investigate' failed: the model provider local at" in run.error
    assert "timed out" in run.error
    assert hanging.requests >= 1
    step = harness.steps(run_id)[0]
    assert step.phase == "Failed"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_with_fallback_rules_a_hanging_model_leaves_the_answer_to_the_rules(
    harness: Harness,
    redis_app: Celery,
    worker_process: WorkerProcess,
    cluster: Cluster,
    hanging: HangingModel,
) -> None:
    harness.put_workflow(workflow(runtime(hanging.url, fallback="rules"), timeout="15s"))
    start(worker_process, cluster)
    run_id, run = run_once(harness, redis_app, timeout=40)
    assert run.phase == "Succeeded", (run.error, worker_process.log()[-3000:])
    assert run.message == "application error"
    result = harness.steps(run_id)[0].output
    assert result["mode"] == "rules"
    assert result["category"] == "crashloop"
    assert "timed out" in result["modelError"]
    assert result["summary"].startswith("The model could not answer (the model provider local")
    assert "the rule-based investigator did instead" in result["summary"]
    assert hanging.requests >= 1
    # The rules still read the crashed container's previous log.
    assert any(call.query.get("previous") == ["true"] for call in cluster.requests)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_refusing_endpoint_fails_fast_then_its_circuit_opens_and_rules_can_answer(
    harness: Harness,
    redis_app: Celery,
    worker_process: WorkerProcess,
    cluster: Cluster,
) -> None:
    refusing = f"http://127.0.0.1:{free_port()}"
    harness.put_workflow(workflow(runtime(refusing), timeout="60s"))
    start(worker_process, cluster)
    _, first = run_once(harness, redis_app)
    assert first.phase == "Failed", worker_process.log()[-3000:]
    assert "cannot connect" in first.error
    assert "(3 attempt(s))" in first.error
    # Three failures in a row opened the breaker: the next step does not try.
    _, second = run_once(harness, redis_app)
    assert second.phase == "Failed"
    assert "failed 3 times in a row" in second.error
    assert "not trying again for" in second.error
    # With the fallback the same dead endpoint still gets the alert investigated.
    harness.put_workflow(workflow(runtime(refusing, fallback="rules"), timeout="60s"))
    run_id, third = run_once(harness, redis_app)
    assert third.phase == "Succeeded", (third.error, worker_process.log()[-3000:])
    result = harness.steps(run_id)[0].output
    assert result["mode"] == "rules"
    assert result["category"] == "crashloop"
    assert "not trying again for" in result["modelError"]
