"""k8s/monitoring: the PrometheusRule, ServiceMonitors and Grafana dashboard.

kubernetes-validate has no schema for monitoring.coreos.com, so the three kinds are
checked against the parts of the Prometheus Operator's CRD schema they use (below).
Every metric an alert or a panel reads must exist: punchingfist_* among the names
the deployables' metric classes declare (built here on a fresh registry, as each
deployable builds them), flower_* in Flower's source, flask_* prometheus-flask-exporter's.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from importlib import util
from pathlib import Path

import jsonschema
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from services.controller import metrics as controller_metrics
from services.engine import metrics as engine_metrics
from services.ingest.metrics import IngestMetrics
from services.notifier import metrics as notifier_metrics
from shared import metrics as worker_metrics
from tests.unit.deploy.deploykit import K8S, Manifest, by_kind

PROMTOOL = shutil.which("promtool")

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
POD_MONITOR = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "podMetricsEndpoints"],
            "properties": {
                "selector": {"type": "object"},
                "podMetricsEndpoints": {
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
# Metrics of other exporters, named here when an expression reads one (none now).
EXTERNAL: set[str] = set()
# Sample names a family of each type exposes.
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
}

Builds = Callable[[str], list[Manifest]]


def _declared_in(folder: Path) -> str:
    return "\n".join(path.read_text() for path in folder.rglob("*.py"))


def _collectors() -> list[Collector]:
    """Every collector the deployables declare, built as they build them, on one registry."""
    registry = CollectorRegistry()
    declared: list[object] = [
        IngestMetrics(registry),
        worker_metrics.TaskMetrics(registry),  # engine and notifier workers
        engine_metrics.EngineMetrics(registry),
        engine_metrics.SchedulerMetrics(registry),
        notifier_metrics.NotifierMetrics(registry),
        controller_metrics.ControllerMetrics(registry),
    ]
    collectors = [c for group in declared for c in vars(group).values() if hasattr(c, "describe")]
    # The workers' queue-depth collector, without a broker: it only describes.
    collectors.append(worker_metrics.BrokerCollector(None, []))
    return collectors


def exported_samples() -> dict[str, str]:
    """Sample names the deployables export -> the family's type."""
    names = {}
    for collector in _collectors():
        for family in collector.describe():
            for suffix in SAMPLE_SUFFIXES[family.type]:
                names[family.name + suffix] = family.type
    return names


def _flower_source() -> str:
    spec = util.find_spec("flower")
    if spec is None or spec.origin is None:
        pytest.skip("flower (the `flower` extra) is not installed")
    return _declared_in(Path(spec.origin).parent)


def _known(metric: str, ours: dict[str, str]) -> bool:
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
    return metric in ours


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
    pod_monitors = by_kind(manifests, "PodMonitor")
    assert set(pod_monitors) == {"punchingfist-workers"}
    for monitor in pod_monitors.values():
        jsonschema.validate(monitor, POD_MONITOR)


def _selects(selector: Manifest, labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def test_the_pod_monitor_scrapes_the_port_each_deployable_serves_metrics_on(
    builds: Builds,
) -> None:
    [monitor] = by_kind(builds("monitoring"), "PodMonitor").values()
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    for overlay in ("dev", "prod"):
        manifests = builds(overlay)
        config = by_kind(manifests, "ConfigMap")
        settings = {
            key: value for cm in config.values() for key, value in (cm.get("data") or {}).items()
        }
        selected = {
            name: deployment
            for name, deployment in by_kind(manifests, "Deployment").items()
            if _selects(
                monitor["spec"]["selector"], deployment["spec"]["template"]["metadata"]["labels"]
            )
        }
        assert set(selected) == {
            "punchingfist-engine",
            "punchingfist-notifier",
            "punchingfist-controller",
            "punchingfist-scheduler",
        }, overlay
        for name, deployment in selected.items():
            component = name.removeprefix("punchingfist-")
            [container] = [
                c
                for c in deployment["spec"]["template"]["spec"]["containers"]
                if c["name"] == component
            ]
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            assert endpoint["port"] in ports, (overlay, name)
            bind = settings[f"PF_{component.upper()}_METRICS_BIND"]
            assert bind == f"0.0.0.0:{ports[endpoint['port']]}", (overlay, name)


def test_prod_lets_the_monitoring_namespace_reach_the_metrics_ports(builds: Builds) -> None:
    policies = by_kind(builds("prod"), "NetworkPolicy")
    [monitor] = by_kind(builds("monitoring"), "PodMonitor").values()
    for name in ("engine", "notifier", "controller", "scheduler"):
        deployment = by_kind(builds("prod"), "Deployment")[f"punchingfist-{name}"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert _selects(monitor["spec"]["selector"], labels)
        allowed = [
            port["port"]
            for policy in policies.values()
            if policy["spec"]["podSelector"] and _selects(policy["spec"]["podSelector"], labels)
            for rule in policy["spec"].get("ingress", [])
            for port in rule.get("ports", [])
        ]
        assert 9100 in allowed, name


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
    assert 'punchingfist_queue_length{queue=~"engine|notifier"}' in text  # queue backlog
    assert 'punchingfist_deliveries_total{outcome="failed"}' in text  # failed deliveries
    assert "punchingfist_scheduler_last_success_timestamp_seconds" in text  # stalled scheduler
    for r in rules:
        assert r["labels"]["severity"] in {"critical", "warning"}
        assert r["annotations"]["summary"]


@pytest.mark.prometheus
@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) not installed")
def test_the_alerting_rules_load_in_prometheus(builds: Builds, tmp_path: Path) -> None:
    """``promtool check rules`` parses each expression and template as Prometheus
    would (the tests above read names only)."""
    assert PROMTOOL is not None
    rule = by_kind(builds("monitoring"), "PrometheusRule")["punchingfist"]
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    checked = subprocess.run(
        [PROMTOOL, "check", "rules", str(rules_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    count = sum(len(group["rules"]) for group in rule["spec"]["groups"])
    assert f"SUCCESS: {count} rules found" in checked.stdout


@pytest.mark.parametrize("flower", [False, True], ids=["ours", "flower"])
def test_every_metric_read_exists(builds: Builds, flower: bool) -> None:
    """Each name an alert or a panel reads is exported: by our code, or by Flower (its
    names are in Flower's source, the optional extra: that case skips without it)."""
    read = {name for expr in _expressions(builds) for name in METRIC.findall(expr)}
    assert "punchingfist_outbox_backlog" in read
    assert "punchingfist_queue_length" in read
    assert any(name.startswith("flower_") for name in read)
    ours = {} if flower else exported_samples()
    unknown = sorted(
        name for name in read if name.startswith("flower_") == flower and not _known(name, ours)
    )
    assert unknown == [], f"nothing exports these metrics: {unknown}"


def test_exported_names_follow_the_prometheus_conventions() -> None:
    families = {c.name: c.type for collector in _collectors() for c in collector.describe()}
    assert len(families) > 20
    for name, kind in families.items():
        assert re.fullmatch(r"punchingfist_[a-z_]+", name), name
        if kind == "histogram":
            assert name.endswith("_seconds"), name  # base unit, said in the name
        assert not name.endswith("_total"), name  # the library adds it to counters only
        assert "_milliseconds" not in name, name


def test_a_name_no_code_exports_is_caught() -> None:
    ours = exported_samples()
    assert _known("punchingfist_tasks_total", ours)
    assert _known("punchingfist_task_duration_seconds_bucket", ours)
    assert not _known("punchingfist_tasks", ours)  # a counter's samples end in _total
    assert not _known("punchingfist_no_such_thing_total", ours)


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
