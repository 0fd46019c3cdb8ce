"""The suite's Kubernetes API double, read by the official ``kubernetes`` client the way
``kubectl`` reads a real cluster: what the agent's tools and the e2e scenarios rely on.

Loaded through its public API (``Cluster.put``/``load``/``set_log``/``set_metrics``),
served on a free port, asked with typed clients: workloads of ``apps/v1`` and their
``scale``, events by field selector, previous container logs, ``metrics.k8s.io``, and
an RBAC denial in a forbidden namespace.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.support.kube_api import KubeApiDouble

STATE: dict[str, Any] = {
    "objects": [
        {
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "web:1"}]},
                },
            },
            "status": {"replicas": 2, "readyReplicas": 1},
        },
        {
            "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "web:1"}]},
        },
        {
            "kind": "Pod",
            "metadata": {"name": "db-0", "namespace": "shop", "labels": {"app": "db"}},
            "spec": {"containers": [{"name": "db", "image": "db:1"}]},
        },
        {
            "kind": "Event",
            "metadata": {"name": "web-1.1", "namespace": "shop"},
            "type": "Warning",
            "reason": "BackOff",
            "message": "Back-off restarting failed container web",
            "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "shop"},
        },
        {"kind": "Node", "metadata": {"name": "node-1"}, "spec": {}},
    ],
    "logs": [
        {"namespace": "shop", "pod": "web-1", "container": "web", "text": "now\n"},
        {
            "namespace": "shop",
            "pod": "web-1",
            "container": "web",
            "previous": True,
            "text": "a\nb\nKeyError: 'X'\n",
        },
    ],
    "metrics": {
        "pods": [
            {
                "metadata": {"name": "web-1", "namespace": "shop"},
                "containers": [{"name": "web", "usage": {"cpu": "250m", "memory": "64Mi"}}],
            }
        ],
        "nodes": [{"metadata": {"name": "node-1"}, "usage": {"cpu": "1", "memory": "2Gi"}}],
    },
    "forbidden": ["vault"],
}


@pytest.fixture
def api() -> Iterator[tuple[KubeApiDouble, client.ApiClient]]:
    with KubeApiDouble() as double:
        double.state.load(STATE)
        configuration = client.Configuration()
        configuration.host = double.url
        with client.ApiClient(configuration) as api_client:
            yield double, api_client


def test_workloads_scale_events_logs_metrics_and_rbac(
    api: tuple[KubeApiDouble, client.ApiClient],
) -> None:
    double, api_client = api
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    deployment = apps.read_namespaced_deployment("web", "shop")
    assert deployment.status.ready_replicas == 1
    assert apps.read_namespaced_deployment_scale("web", "shop").spec.replicas == 2
    apps.patch_namespaced_deployment_scale("web", "shop", {"spec": {"replicas": 4}})
    assert apps.read_namespaced_deployment("web", "shop").spec.replicas == 4
    assert double.state.patched == [("deployments", "shop/web", {"spec": {"replicas": 4}})]

    pods = core.list_namespaced_pod("shop", label_selector="app!=db").items
    assert [pod.metadata.name for pod in pods] == ["web-1"]
    events = core.list_event_for_all_namespaces(field_selector="involvedObject.name=web-1")
    assert [event.reason for event in events.items] == ["BackOff"]
    assert core.list_namespaced_event("shop", field_selector="involvedObject.name=db-0").items == []

    previous = core.read_namespaced_pod_log(
        "web-1", "shop", container="web", previous=True, tail_lines=1
    )
    assert previous == "KeyError: 'X'\n"
    assert core.read_namespaced_pod_log("web-1", "shop") == "now\n"
    with pytest.raises(client.ApiException) as none:
        core.read_namespaced_pod_log("db-0", "shop", previous=True)
    assert none.value.status == 400

    metrics = client.CustomObjectsApi(api_client)
    pod_usage = metrics.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", "shop", "pods")
    assert pod_usage["items"][0]["containers"][0]["usage"]["cpu"] == "250m"
    node_usage = metrics.get_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes", "node-1")
    assert node_usage["usage"]["memory"] == "2Gi"

    with pytest.raises(client.ApiException) as denied:
        core.list_namespaced_secret("vault")
    assert denied.value.status == 403
    message = json.loads(denied.value.body)["message"]
    assert 'cannot list resource "secrets" in API group "" in the namespace "vault"' in message
    groups = {group.name for group in client.ApisApi(api_client).get_api_versions().groups}
    assert {"apps", "metrics.k8s.io"} <= groups
