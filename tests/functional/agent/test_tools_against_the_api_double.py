"""kubectl and remediate against the Kubernetes API double; curl and script on loopback."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import harness
import pytest

from services.engine.core.remediation import RemediationPolicy
from services.engine.tools import registries
from services.engine.tools.registries import Script, Status, ToolContext, ToolSettings
from tests.support.kube_api import Cluster
from tests.support.waiting import wait_for

TOOLS = registries.default_registry


def context(settings: ToolSettings, **fields: Any) -> ToolContext:
    return ToolContext(settings=settings, actor="test", **fields)


@pytest.fixture
def crashloop() -> Iterator[tuple[Cluster, ToolSettings]]:
    data = harness.load("crashloop")
    data["cluster"]["forbidden"] = ["secret-ns"]
    data["cluster"]["objects"].append(
        {
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"replicas": 2},
        }
    )
    data["cluster"]["objects"].append({"kind": "Node", "metadata": {"name": "node-1"}, "spec": {}})
    with harness.served(data) as (cluster, _, settings):
        yield cluster, settings


def kubectl(settings: ToolSettings, **arguments: Any) -> registries.ToolResult:
    ctx = context(settings)
    try:
        return TOOLS.get("kubectl").invoke(arguments, ctx)
    finally:
        ctx.close()


def test_kubectl_describes_a_pod_with_its_last_termination_and_events(crashloop: Any) -> None:
    _, settings = crashloop
    result = kubectl(settings, verb="describe", kind="pod", name="web-7d9f-abcde", namespace="shop")
    assert result.status is Status.OK
    assert "waiting reason=CrashLoopBackOff" in result.text
    assert "lastState=terminated reason=Error exitCode=1" in result.text
    assert "Warning BackOff pod/web-7d9f-abcde" in result.text


def test_kubectl_previous_logs_are_reduced_to_errors_and_the_tail(crashloop: Any) -> None:
    cluster, settings = crashloop
    result = kubectl(
        settings,
        verb="logs",
        kind="pod",
        name="web-7d9f-abcde",
        namespace="shop",
        previous=True,
        tailLines=50,
    )
    assert result.status is Status.OK
    assert "KeyError: 'PAYMENT_API_URL'" in result.text
    assert any(
        call.path.endswith("/pods/web-7d9f-abcde/log")
        and call.query.get("previous") == ["true"]
        and call.query.get("tailLines") == ["50"]
        for call in cluster.requests
    )


def test_rbac_denial_comes_back_as_denied_with_the_api_message(crashloop: Any) -> None:
    _, settings = crashloop
    result = kubectl(settings, verb="get", kind="pod", namespace="secret-ns")
    assert result.status is Status.DENIED
    assert 'cannot list resource "pods"' in result.text


def test_the_namespace_allowlist_refuses_before_asking_the_api(crashloop: Any) -> None:
    cluster, settings = crashloop
    narrowed = ToolSettings(
        kubernetes_api_url=settings.kubernetes_api_url, kubectl_namespaces=frozenset({"web"})
    )
    result = kubectl(narrowed, verb="get", kind="pod", namespace="shop")
    assert result.status is Status.DENIED
    assert "namespace 'shop'" in result.text
    assert cluster.requests == []


def test_unknown_arguments_and_kinds_are_refused_by_the_schema(crashloop: Any) -> None:
    _, settings = crashloop
    assert kubectl(settings, verb="get", kind="secret", name="x").status is Status.ERROR
    result = kubectl(settings, verb="get", kind="pod", extra="--all")
    assert result.status is Status.ERROR
    assert "invalid arguments" in result.text


def test_without_a_cluster_kubectl_answers_error_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = kubectl(ToolSettings(), verb="get", kind="pod", namespace="default")
    assert result.status is Status.ERROR
    assert result.unreachable
    assert "no Kubernetes cluster configured" in result.text


def test_rules_without_a_cluster_say_what_could_not_be_checked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from services.engine.agent import investigations

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    alert = harness.load("crashloop")["alert"]
    result = investigations.run(investigations.Investigation(alert=alert, timeout=10))
    assert result["mode"] == "rules"
    assert result["category"] == "unknown"
    assert result["escalate"] is True
    assert any("no Kubernetes cluster configured" in item for item in result["unchecked"])
    assert "Nothing could be checked" in result["summary"]
    # One failed call per tool, not one per planned call.
    assert [c["tool"] for c in result["toolCalls"]] == ["kubectl"]


def test_remediate_makes_an_allowed_change_and_records_it(crashloop: Any) -> None:
    cluster, settings = crashloop
    ctx = context(settings, approval_required=False, remediation_allowed=True)
    tool = TOOLS.get("remediate")
    result = tool.invoke(
        {
            "action": "restart-rollout",
            "kind": "deployment",
            "name": "web",
            "namespace": "shop",
            "reason": "stuck",
        },
        ctx,
    )
    assert result.status is Status.OK, result.text
    scaled = tool.invoke(
        {
            "action": "scale",
            "kind": "deployment",
            "name": "web",
            "namespace": "shop",
            "replicas": 3,
        },
        ctx,
    )
    assert scaled.status is Status.OK
    cordoned = tool.invoke({"action": "cordon", "kind": "node", "name": "node-1"}, ctx)
    assert cordoned.status is Status.OK
    deleted = tool.invoke(
        {"action": "delete-pod", "name": "web-7d9f-abcde", "namespace": "shop"}, ctx
    )
    assert deleted.status is Status.OK
    ctx.close()
    deployment = cluster.get("deployments", "shop", "web")
    assert deployment is not None
    assert (
        "kubectl.kubernetes.io/restartedAt"
        in deployment["spec"]["template"]["metadata"]["annotations"]
    )
    assert deployment["spec"]["replicas"] == 3
    assert cluster.get("nodes", "", "node-1")["spec"]["unschedulable"] is True  # type: ignore[index]
    assert cluster.deleted == [("web-7d9f-abcde", None)]
    assert cluster.get("pods", "shop", "web-7d9f-abcde") is None
    assert ("deployments", "shop/web", {"spec": {"replicas": 3}}) in cluster.patched
    assert [d["decision"] for d in ctx.decisions] == ["executed"] * 4
    assert ctx.decisions[0]["why"]
    assert ctx.decisions[0]["request"]["reason"] == "stuck"


@pytest.mark.parametrize(
    ("arguments", "why"),
    [
        ({"action": "delete-namespace", "kind": "namespace", "name": "shop"}, "never allowed"),
        ({"action": "delete", "kind": "node", "name": "node-1"}, "never allowed"),
        ({"action": "delete-pod", "name": "coredns-1", "namespace": "kube-system"}, "protected"),
        ({"action": "drain", "kind": "node", "name": "node-1"}, "not a remediation action"),
        (
            {"action": "scale", "name": "web", "namespace": "shop", "replicas": 500},
            "between 1 and 20",
        ),
        (
            {"action": "scale", "name": "web", "namespace": "shop", "replicas": 0},
            "between 1 and 20",
        ),
    ],
)
def test_remediate_refuses_outside_the_policy_and_records_the_refusal(
    crashloop: Any, arguments: dict[str, Any], why: str
) -> None:
    cluster, settings = crashloop
    ctx = context(settings, approval_required=False, remediation_allowed=True)
    result = TOOLS.get("remediate").invoke(arguments, ctx)
    assert result.status is Status.DENIED
    assert why in result.text
    assert [d["decision"] for d in ctx.decisions] == ["refused"]
    assert [call.method for call in cluster.requests if call.method != "GET"] == []


def test_the_workflow_policy_narrows_actions_and_namespaces(crashloop: Any) -> None:
    _, settings = crashloop
    narrowed = ToolSettings(
        kubernetes_api_url=settings.kubernetes_api_url,
        remediation=RemediationPolicy(
            actions=frozenset({"delete-pod"}), namespaces=frozenset({"web"})
        ),
    )
    ctx = context(narrowed, approval_required=False, remediation_allowed=True)
    tool = TOOLS.get("remediate")
    assert (
        "does not list"
        in tool.invoke({"action": "restart-rollout", "name": "web", "namespace": "web"}, ctx).text
    )
    assert (
        "does not cover namespace"
        in tool.invoke({"action": "delete-pod", "name": "x", "namespace": "shop"}, ctx).text
    )


class _Web(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/redirect-out":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/redirect-in":
            self.send_response(301)
            self.send_header("Location", "/healthz")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"ok\n" if self.path == "/healthz" else b"x" * 200_000
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def web() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Web)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def curl(settings: ToolSettings, url: str) -> registries.ToolResult:
    ctx = context(settings)
    ctx.resolver = lambda host, port: ["127.0.0.1"]
    try:
        return TOOLS.get("curl").invoke({"url": url}, ctx)
    finally:
        ctx.close()


def test_curl_reaches_an_allowlisted_host_and_follows_a_checked_redirect(web: str) -> None:
    settings = ToolSettings(curl_hosts=frozenset({"127.0.0.1"}))
    result = curl(settings, f"http://{web}/redirect-in")
    assert result.status is Status.OK
    assert "HTTP 200" in result.text
    assert "ok" in result.text


def test_curl_refuses_hosts_outside_the_allowlist_loopback_and_metadata(web: str) -> None:
    port = web.split(":")[1]
    assert (
        "not in the Workflow's curl allowlist"
        in curl(ToolSettings(curl_hosts=frozenset({"example.test"})), f"http://{web}/").text
    )
    # A listed name that resolves to loopback is refused unless the IP itself is listed.
    refused = curl(
        ToolSettings(curl_hosts=frozenset({"svc.test"})), f"http://svc.test:{port}/healthz"
    )
    assert refused.status is Status.DENIED
    assert "loopback" in refused.text
    meta = curl(
        ToolSettings(curl_hosts=frozenset({"169.254.169.254"})), "http://169.254.169.254/latest/"
    )
    assert meta.status is Status.DENIED
    assert "metadata" in meta.text
    redirected = curl(
        ToolSettings(curl_hosts=frozenset({"127.0.0.1"})), f"http://{web}/redirect-out"
    )
    assert redirected.status is Status.DENIED
    assert "169.254.169.254" in redirected.text
    assert (
        curl(ToolSettings(curl_hosts=frozenset({"127.0.0.1"})), "file:///etc/passwd").status
        is Status.DENIED
    )


def test_curl_caps_the_body(web: str) -> None:
    settings = ToolSettings(curl_hosts=frozenset({"127.0.0.1"}), curl_max_bytes=1000)
    result = curl(settings, f"http://{web}/big")
    assert result.status is Status.OK
    assert "x" * 1000 + "\n[" in result.text
    assert "x" * 1001 not in result.text
    assert "or more further bytes of body not kept]" in result.text


def test_script_runs_a_declared_argv_and_kills_its_process_group_at_the_timeout(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "child.pid"
    child = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)"
    # The script starts a child (in its process group) and hangs; it says "started"
    # once the child is up, so the kill finds both.
    program = (
        "import os, subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', {child!r}, {str(pid_file)!r}])\n"
        f"while not os.path.exists({str(pid_file)!r}): time.sleep(0.01)\n"
        "print('started', flush=True)\n"
        "time.sleep(60)\n"
    )
    settings = ToolSettings(
        scripts={
            "echo": Script(
                "echo", (sys.executable, "-c", "import sys; print('args:', sys.argv[1:])")
            ),
            "hang": Script("hang", (sys.executable, "-c", program), timeout=2.0),
        }
    )
    ctx = context(settings)
    tool = TOOLS.get("script")
    ok = tool.invoke({"name": "echo", "args": ["a b", "$(id)"]}, ctx)
    assert ok.status is Status.OK
    assert "args: ['a b', '$(id)']" in ok.text
    assert tool.invoke({"name": "echo", "args": ["--delete"]}, ctx).status is Status.DENIED
    assert tool.invoke({"name": "rm"}, ctx).status is Status.DENIED
    hung = tool.invoke({"name": "hang", "args": ["x"]}, ctx)
    assert hung.status is Status.ERROR
    assert "killed after" in hung.text
    # Its child went with it: the whole process group was killed, not just the script.
    child_pid = int(pid_file.read_text())
    wait_for(lambda: not _alive(child_pid), 10, "the script's child to be killed")


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
