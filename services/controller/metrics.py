"""The controller's Prometheus metrics: reconciliations and their errors, by kind.

Both modes reconcile through ``Reconciler`` (kopf's handlers in a cluster, the folder
poller with ``--config-dir``), which counts here; ``mode`` says which one. The
controller is one process (kopf runs handlers in threads), so the default registry
is served as it is, with the client library's process and Python metrics.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from shared import metrics as shared_metrics

# The ``mode`` label.
KUBERNETES = "kubernetes"
FILES = "files"


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.reconciles = Counter(
            "punchingfist_controller_reconciles",
            "Resources reconciled, by kind (Source, Workflow, Sink), mode (kubernetes, "
            "files) and result: ready, not_ready (invalid, or a reference missing), "
            "removed, error (the reconciliation raised; kopf retries it).",
            ["kind", "mode", "result"],
            registry=registry,
        )
        self.errors = Counter(
            "punchingfist_controller_reconcile_errors",
            "Reconciliations that raised (database down, API errors), by kind, mode "
            "and exception type.",
            ["kind", "mode", "error"],
            registry=registry,
        )
        self.duration = Histogram(
            "punchingfist_controller_reconcile_duration_seconds",
            "Seconds one reconciliation took (validate, store, build the status).",
            ["kind", "mode"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )


# The process's ControllerMetrics on the default registry, made on first use.
metrics = shared_metrics.Lazy(ControllerMetrics)


def serve(bind: str) -> Any:
    """Serve the default registry on ``bind`` (HOST:PORT) from a daemon thread; the server."""
    metrics()  # declared before the first scrape, so every family is listed at once
    return shared_metrics.serve(bind, REGISTRY, "PF_CONTROLLER_METRICS_BIND")
