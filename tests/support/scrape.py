"""Reading a deployable's ``/metrics`` over HTTP, as Prometheus does.

``scrape(url)`` parses the text exposition with prometheus_client's own parser into
``Samples``; ``samples.value("punchingfist_tasks_total", task="engine.run_step",
outcome="succeeded")`` is the sample's value, 0 when the series is absent (a counter
never incremented is not exported), so that a test can assert exact counts.
"""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


class Samples:
    def __init__(self, text: str) -> None:
        self.text = text
        self._values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self._values[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float:
        return self._values.get((name, frozenset(labels.items())), 0.0)

    def has(self, name: str, **labels: str) -> bool:
        return (name, frozenset(labels.items())) in self._values

    def total(self, name: str, **labels: str) -> float:
        """Sum over the series of ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(
            value
            for (sample, have), value in self._values.items()
            if sample == name and wanted <= have
        )


def scrape(url: str, timeout: float = 10.0) -> Samples:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return Samples(response.read().decode())
