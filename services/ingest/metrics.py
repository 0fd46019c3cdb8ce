"""Prometheus metrics of the ingest API.

Request metrics come from prometheus-flask-exporter; these counters say what happened
to the alerts. Under gunicorn the default registry is used in multiprocess mode (one
file per worker, summed at scrape time); a test app gets a private registry.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        kwargs: dict[str, Any] = {"registry": registry} if registry is not None else {}
        labels = ["source"]
        self.received = Counter(
            "punchingfist_alerts_received", "Alerts received by a Source.", labels, **kwargs
        )
        self.filtered = Counter(
            "punchingfist_alerts_filtered",
            "Alerts dropped by a Source's filters.",
            labels,
            **kwargs,
        )
        self.deduplicated = Counter(
            "punchingfist_alerts_deduplicated",
            "Repeat notifications of an alert occurrence already recorded.",
            labels,
            **kwargs,
        )
        self.started = Counter(
            "punchingfist_workflows_started", "Workflow runs queued by a Source.", labels, **kwargs
        )
        self.rate_limited = Counter(
            "punchingfist_workflow_starts_rate_limited",
            "New alerts that started no workflow because the Source's start cap was reached.",
            labels,
            **kwargs,
        )
        self.refused = Counter(
            "punchingfist_alerts_refused",
            "Alerts of a webhook that could not be recorded (the rest of the group was), "
            "by reason: invalid, nul, surrogate, too_long.",
            ["source", "reason"],
            **kwargs,
        )
        self.truncated = Counter(
            "punchingfist_alerts_truncated",
            "Alerts AlertManager dropped from a webhook's group before sending it "
            "(truncatedAlerts, its max_alerts): never received.",
            labels,
            **kwargs,
        )
        self.outbox_backlog = Gauge(
            "punchingfist_outbox_backlog",
            "Outbox entries not yet published to the broker.",
            multiprocess_mode="mostrecent",
            **kwargs,
        )
