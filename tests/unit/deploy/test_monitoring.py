"""k8s/monitoring: the PrometheusRule, ServiceMonitors and Grafana dashboard.

kubernetes-validate has no schema for monitoring.coreos.com, so the two kinds are
checked against the parts of the Prometheus Operator's CRD schema they use (below).
Every metric an alert or a panel reads must exist: punchingfist_* in our code,
flower_* in Flower's, redis_key_size from redis_exporter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from importlib import util
from pathlib import Path

import jsonschema
import pytest

from tests.unit.deploy.deploykit import K8S, ROOT, Manifest, by_kind

# The fields of monitoring.coreos.com/v1 PrometheusRule and ServiceMonitor used here,
# as the operator's CRDs define them (additional properties are refused, as in strict).
_RULE = {
    "type": "object",
    "required": ["expr"],
    "additionalProperties": False,
    "properties": {
        "alert": {"type": "string"},
        "record": {"type": "string"},
        "expr": {"type": "string"},
        "for": {"type": "string", "pattern": r"^(0|(([0-9]+)(ms|s|m|h|d|w|y))+)$"},
        "keep_firing_for": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
_METADATA = {"type": "object", "required": ["name"]}
PROMETHEUS_RULE = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "interval": {"type": "string"},
                            "rules": {"type": "array", "items": _RULE},
                        },
                    },
                }
            },
        },
    },
}
SERVICE_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {"type": "object"},
                "endpoints": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
}
METRIC = re.compile(r"\b((?:punchingfist|flower|flask|redis)_[a-z_]+)")
# Suffixes Prometheus client libraries add to a declared name.
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")
# redis_exporter's per-key gauge (--check-single-keys); not a Python package to read.
EXTERNAL = {"redis_key_size"}

Builds = Callable[[str], list[Manifest]]


def _declared_in(folder: Path) -> str:
    return "\n".join(path.read_text() for path in folder.rglob("*.py"))


def _flower_source() -> str:
    spec = util.find_spec("flower")
    if spec is None or spec.origin is None:
        pytest.skip("flower (the `flower` extra) is not installed")
    return _declared_in(Path(spec.origin).parent)


def _known(metric: str, ours: str) -> bool:
    base = metric
    for suffix in SUFFIXES:
        if base.endswith(suffix):
            base = base.removesuffix(suffix)
            break
    if metric in EXTERNAL:
        return True
    if metric.startswith("flask_"):
        # prometheus-flask-exporter's default prefix and names.
        return base in {"flask_http_request_duration_seconds", "flask_http_request"}
    if metric.startswith("flower_"):
        source = _flower_source()
        return f"'{base}'" in source or f"'{metric}'" in source
    return f'"{base}"' in ours or f'"{metric}"' in ours


def _expressions(builds: Builds) -> list[str]:
    rule = by_kind(builds("monitoring"), "PrometheusRule")["punchingfist"]
    exprs = [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]
    dashboard = json.loads((K8S / "monitoring" / "punchingfist-dashboard.json").read_text())
    exprs += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return exprs


def test_kinds_match_their_schemas(builds: Builds) -> None:
    manifests = builds("monitoring")
    for rule in by_kind(manifests, "PrometheusRule").values():
        jsonschema.validate(rule, PROMETHEUS_RULE)
    monitors = by_kind(manifests, "ServiceMonitor")
    assert set(monitors) == {"punchingfist-ingest", "punchingfist-flower"}
    for monitor in monitors.values():
        jsonschema.validate(monitor, SERVICE_MONITOR)


def test_service_monitors_select_services_with_that_port(builds: Builds) -> None:
    services = by_kind(builds("prod"), "Service")
    for monitor in by_kind(builds("monitoring"), "ServiceMonitor").values():
        wanted = monitor["spec"]["selector"]["matchLabels"]
        matching = [
            s for s in services.values() if wanted.items() <= s["metadata"]["labels"].items()
        ]
        assert len(matching) == 1, monitor["metadata"]["name"]
        ports = {p["name"] for p in matching[0]["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports


def test_alerts_cover_the_product(builds: Builds) -> None:
    rule = by_kind(builds("monitoring"), "PrometheusRule")["punchingfist"]
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    text = " ".join(r["expr"] for r in rules)
    assert "punchingfist_outbox_backlog" in text
    assert 'redis_key_size{key=~"engine|notifier"}' in text  # queue backlog
    assert 'task="notifier.deliver"' in text  # failed deliveries
    for r in rules:
        assert r["labels"]["severity"] in {"critical", "warning"}
        assert r["annotations"]["summary"]


def test_every_metric_read_exists(builds: Builds) -> None:
    ours = _declared_in(ROOT / "services") + _declared_in(ROOT / "shared")
    read = {name for expr in _expressions(builds) for name in METRIC.findall(expr)}
    assert "punchingfist_outbox_backlog" in read
    unknown = sorted(name for name in read if not _known(name, ours))
    assert unknown == [], f"no code exports these metrics: {unknown}"


def test_dashboard_is_grafana_json_with_unique_panels() -> None:
    dashboard = json.loads((K8S / "monitoring" / "punchingfist-dashboard.json").read_text())
    assert dashboard["uid"] == "punchingfist"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["targets"]
        assert all(t["expr"] for t in panel["targets"])


def test_dashboard_ships_as_a_sidecar_config_map(builds: Builds) -> None:
    config_map = by_kind(builds("monitoring"), "ConfigMap")["punchingfist-grafana-dashboard"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["punchingfist-dashboard.json"])["uid"] == "punchingfist"


def test_receiver_snippet_points_at_the_ingest_service(builds: Builds) -> None:
    import yaml

    snippet = yaml.safe_load((K8S / "monitoring" / "alertmanager-receiver.yaml").read_text())
    webhook = snippet["receivers"][0]["webhook_configs"][0]
    service = by_kind(builds("prod"), "Service")["punchingfist-ingest"]
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    assert (
        webhook["url"]
        == f"http://{host}:{service['spec']['ports'][0]['port']}/webhook/alertmanager"
    )
    assert webhook["send_resolved"] is True
    assert webhook["max_alerts"] > 0
    authorization = webhook["http_config"]["authorization"]
    assert authorization["type"] == "Bearer"
    assert authorization["credentials_file"].startswith("/")
