"""Run one recorded scenario through an investigator, against doubles serving its state.

A scenario (``scenarios/<name>.yaml``) records what the tools would find: the
cluster's objects, logs and metrics (``cluster``, loaded into the suite's Kubernetes
API double, ``tests/support/kube_api.py``), Prometheus
answers (served by the recorded-Prometheus double), and the expected ``category``.
The hosts named in alert annotations resolve to 127.0.0.1, where nothing listens on
port 1, so an HTTP check of them fails the way an unreachable service does.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from services.engine.agent import investigations, llm
from services.engine.tools.registries import ToolContext, ToolSettings
from tests.support.kube_api import Cluster, KubeApiDouble
from tests.support.promrecord import RecordedPrometheus

SCENARIOS = Path(__file__).parent / "scenarios"
# (scenario, expected category, found category) per mode, printed at the end of the run.
SCORES: dict[str, list[tuple[str, str, str]]] = defaultdict(list)


def scenario_names() -> list[str]:
    return sorted(path.stem for path in SCENARIOS.glob("*.yaml"))


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())
    return data


def _loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


@contextlib.contextmanager
def served(scenario: dict[str, Any]) -> Iterator[tuple[Cluster, RecordedPrometheus, ToolSettings]]:
    with (
        KubeApiDouble() as api,
        RecordedPrometheus(scenario.get("prometheus") or []) as prometheus,
    ):
        cluster = api.state.load(scenario.get("cluster") or {})
        hosts = {"127.0.0.1"}
        for value in (scenario["alert"].get("annotations") or {}).values():
            if str(value).startswith("http"):
                hosts.add(str(value).split("/")[2].split(":")[0])
        settings = ToolSettings(
            kubernetes_api_url=cluster.url,
            prometheus_url=prometheus.url,
            curl_hosts=frozenset(hosts),
            call_timeout=5.0,
        )
        yield cluster, prometheus, settings


def investigate(
    name: str, config: llm.LLMConfig | None = None, **fields: Any
) -> tuple[dict[str, Any], Cluster]:
    scenario = load(name)
    with served(scenario) as (cluster, _, settings):
        investigation = investigations.Investigation(
            alert=scenario["alert"],
            settings=settings,
            llm=config,
            timeout=120.0,
            actor=f"eval {name}",
            **fields,
        )

        def hook(ctx: ToolContext) -> None:
            ctx.resolver = _loopback

        result = investigations.run(investigation, context_hook=hook)
    return result, cluster
