"""The notifier's own Prometheus metrics: what happened to each delivery attempt.

Task counts, durations and queue depth are the workers' common ones
(``shared.metrics``). These are incremented in the pool processes and reach
``/metrics`` through the multiprocess folder, like those. Labels are the Sink type
(slack, alertmanager, webhook, stdout) and the outcome: never a Sink's name, which
users create freely.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from shared import metrics as shared_metrics

# Seconds: stdout in microseconds, Slack and webhooks in tens to hundreds of ms, up
# to two HTTP timeouts plus a rate-limit wait.
SEND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class NotifierMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.deliveries = Counter(
            "punchingfist_deliveries",
            "Delivery attempts to Sinks, by Sink type and outcome: delivered, failed (for "
            "good), retrying (a temporary failure, tried again later), skipped (the Sink's "
            "condition was false).",
            ["sink_type", "outcome"],
            registry=registry,
        )
        self.send_duration = Histogram(
            "punchingfist_delivery_send_duration_seconds",
            "Seconds a Sink's send took (the HTTP calls behind the circuit breaker).",
            ["sink_type"],
            buckets=SEND_BUCKETS,
            registry=registry,
        )
        self.silence_checks = Counter(
            "punchingfist_silence_watch_checks",
            "Alerts the silence watch asked AlertManager about, by what it found: firing "
            "(still held), resolved (gone, and recorded resolved), untrusted (gone, but "
            "AlertManager is younger than the grace), unknown (no clear answer), "
            "unreachable (AlertManager did not answer).",
            ["finding"],
            registry=registry,
        )


# Delivery phases after an attempt -> the ``outcome`` label.
OUTCOMES = {
    "Delivered": "delivered",
    "Failed": "failed",
    "Pending": "retrying",
    "Skipped": "skipped",
}

# The process's NotifierMetrics on the default registry, made on first use.
metrics = shared_metrics.Lazy(NotifierMetrics)


def delivery_finished(sink_type: str, phase: str) -> None:
    metrics().deliveries.labels(sink_type, OUTCOMES.get(phase, phase.lower())).inc()


def silence_checked(finding: str, alerts: int = 1) -> None:
    if alerts:
        metrics().silence_checks.labels(finding).inc(alerts)
