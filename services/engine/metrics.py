"""The engine's own Prometheus metrics: runs that ended, the agent's tool and model
calls, and the scheduler's ticks.

Task counts, durations and queue depth are the workers' common ones
(``shared.metrics``). The engine's are incremented in the pool processes that run
steps and reach ``/metrics`` through the multiprocess folder, like those. The
scheduler is one process (``punchingfist scheduler``) that serves the default
registry as it is, like the controller; its metrics are made only there.

Labels stay bounded: a run phase, a tool name from the registry, a Workflow's
provider and model name. Never a run id, an alert or a tool's arguments.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from shared import metrics as shared_metrics

# Seconds: a kubectl get answers in tens of ms, a log read or PromQL range query in
# seconds; a model turn takes one to a few tens of seconds.
TOOL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
MODEL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)


class EngineMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.runs_finished = Counter(
            "punchingfist_runs_finished",
            "Workflow runs that ended, by phase (Succeeded, Failed, Skipped).",
            ["phase"],
            registry=registry,
        )
        self.tool_calls = Counter(
            "punchingfist_agent_tool_calls",
            "Agent tool calls, by tool and status (ok, error, empty, denied, approval_required).",
            ["tool", "status"],
            registry=registry,
        )
        self.tool_duration = Histogram(
            "punchingfist_agent_tool_duration_seconds",
            "Seconds an agent tool call took, arguments checked and result reduced.",
            ["tool"],
            buckets=TOOL_BUCKETS,
            registry=registry,
        )
        self.model_requests = Counter(
            "punchingfist_agent_model_requests",
            "Requests to an agent's chat model, by provider, model and outcome (ok, error); "
            "each retry is a request.",
            ["provider", "model", "outcome"],
            registry=registry,
        )
        self.model_duration = Histogram(
            "punchingfist_agent_model_request_duration_seconds",
            "Seconds one request to an agent's chat model took, answered or not.",
            ["provider", "model"],
            buckets=MODEL_BUCKETS,
            registry=registry,
        )
        self.model_tokens = Counter(
            "punchingfist_agent_model_tokens",
            "Tokens the chat model reported in its answers' usage, by provider, model and "
            "kind (prompt, completion).",
            ["provider", "model", "kind"],
            registry=registry,
        )

    def model_answered(self, provider: str, model: str, seconds: float, answer: Any) -> None:
        self.model_duration.labels(provider, model).observe(seconds)
        self.model_requests.labels(provider, model, "ok").inc()
        prompt, completion = token_usage(answer)
        if prompt:
            self.model_tokens.labels(provider, model, "prompt").inc(prompt)
        if completion:
            self.model_tokens.labels(provider, model, "completion").inc(completion)

    def model_failed(self, provider: str, model: str, seconds: float) -> None:
        self.model_duration.labels(provider, model).observe(seconds)
        self.model_requests.labels(provider, model, "error").inc()


def token_usage(answer: Any) -> tuple[int, int]:
    """(prompt, completion) tokens of a LangChain answer; (0, 0) when the provider sent none.

    ``usage_metadata`` is LangChain's provider-neutral field (from OpenAI's ``usage``);
    ``response_metadata.token_usage`` is the raw OpenAI block, for older clients.
    """
    usage = getattr(answer, "usage_metadata", None) or {}
    if usage:
        return int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
    raw = (getattr(answer, "response_metadata", None) or {}).get("token_usage") or {}
    return int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0)


# The process's EngineMetrics on the default registry, made on first use.
metrics = shared_metrics.Lazy(EngineMetrics)


# The ``result`` label of punchingfist_scheduler_ticks_total.
STARTED = "started"
TAKEN = "taken"


class SchedulerMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.ticks = Counter(
            "punchingfist_scheduler_ticks",
            "Cron ticks of schedule Sources this scheduler claimed, by Source (namespace, "
            "source) and result: started (it started the tick's run), taken (another "
            "replica, or this one before a restart, had the tick: nothing started).",
            ["namespace", "source", "result"],
            registry=registry,
        )
        self.errors = Counter(
            "punchingfist_scheduler_errors",
            "Scheduler failures by exception type: ConfigError is a schedule Source whose "
            "cron or time zone does not parse (counted at every pass until it is fixed); "
            "any other is a pass that raised (database or broker down) and started nothing.",
            ["error"],
            registry=registry,
        )
        self.last_success = Gauge(
            "punchingfist_scheduler_last_success_timestamp_seconds",
            "Unix time at which the last scheduler pass over the schedule Sources "
            "completed; 0 until one has.",
            registry=registry,
        )


# The scheduler process's SchedulerMetrics on the default registry, made on first use.
scheduler_metrics = shared_metrics.Lazy(SchedulerMetrics)


def serve_scheduler(bind: str) -> Any:
    """Serve the default registry on ``bind`` (HOST:PORT) from a daemon thread; the server."""
    scheduler_metrics()  # declared before the first scrape, so every family is listed at once
    return shared_metrics.serve(bind, REGISTRY, "PF_SCHEDULER_METRICS_BIND")
