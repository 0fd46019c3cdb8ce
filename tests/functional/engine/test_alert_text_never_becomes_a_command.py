"""Alert labels that try to become commands or options, through a real engine worker.

Each payload is the ``pod`` label of an alert whose run goes through a real
``punchingfist engine`` process (prefork, Redis) with the Workflow's cli steps
placing the label bare, inside double quotes, as a positional parameter of
``sh -c``, and in ``kubectl delete pod`` (argv and shell). kubectl is the real binary,
pointed at the Kubernetes API double with two pods in ``demo``. The payloads must
stay data: no marker file appears, no pod is deleted, and the value reaches the
command byte for byte. Templates that cannot be protected are refused by
``punchingfist validate`` and, if stored anyway, fail their step without running.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from enginekit import Harness, WorkerProcess, start_run

from tests.support.kube_api import Cluster, KubeApiDouble
from tests.support.workers import REPO

pytestmark = [
    pytest.mark.redis,
    pytest.mark.timeout(240),
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs the kubectl binary"),
]

OPTION_MESSAGE = "which starts with '-' and would be read as an option"


def payloads(marker: Path) -> list[str]:
    return [
        f"$(touch {marker})",
        f"`touch {marker}`",
        f'"; touch {marker}; echo "',
        f"'; touch {marker}; echo '",
        f"web-1\ntouch {marker}",
        f'x"\ntouch {marker}\necho "',
        f"$(cat /proc/$PPID/environ > {marker})",
        "--all",
        "--server=http://127.0.0.1:1",
    ]


def injection_workflow(kubeconfig: Path, home: Path) -> dict[str, Any]:
    def step(name: str, command: Any) -> dict[str, Any]:
        # A string is a shell script, a list an argv.
        shell = isinstance(command, str)
        return {
            "name": name,
            "type": "cli",
            "command": command,
            "shell": shell,
            "continueOnError": True,
        }

    return {
        "runtime": {"environment": {"KUBECONFIG": str(kubeconfig), "HOME": str(home)}},
        "steps": [
            step("bare", "echo bare {{ alert.labels.pod }}"),
            step("double-quoted", 'echo "dq {{ alert.labels.pod }}"'),
            step("positional", ["sh", "-c", 'echo "pos $1"', "sh", "{{ alert.labels.pod }}"]),
            step(
                "argv-delete", ["kubectl", "delete", "pod", "{{ alert.labels.pod }}", "-n", "demo"]
            ),
            step("shell-delete", "kubectl delete pod {{ alert.labels.pod }} -n demo"),
            step(
                "quoted-delete", 'kubectl delete pod "{{ alert.labels.pod }}" -n demo --wait=false'
            ),
        ],
    }


def running_pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        "status": {"phase": "Running"},
    }


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with KubeApiDouble() as double:
        double.state.create("namespaces", "", {"metadata": {"name": "demo"}})
        double.state.create("pods", "demo", running_pod("web-1"))
        double.state.create("pods", "demo", running_pod("web-2"))
        double.state.created.clear()
        yield double.state


def kubeconfig_for(url: str, path: Path) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f'clusters: [{{name: double, cluster: {{server: "{url}"}}}}]\n'
        "contexts: [{name: double, context: {cluster: double, user: nobody}}]\n"
        "users: [{name: nobody, user: {}}]\ncurrent-context: double\n"
    )
    return path


def test_labels_never_become_commands_or_options(
    harness: Harness,
    redis_app: Celery,
    worker_process: WorkerProcess,
    cluster: Cluster,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "marker"
    home = tmp_path / "home"
    home.mkdir()
    kubeconfig = kubeconfig_for(cluster.url, tmp_path / "kubeconfig")
    harness.put_workflow(injection_workflow(kubeconfig, home))
    runs = {
        payload: harness.add_run(labels={"alertname": "X", "pod": payload})
        for payload in payloads(marker)
    }
    worker_process.start()
    for run_id in runs.values():
        start_run(redis_app, run_id)

    for payload, run_id in runs.items():
        run = harness.wait_finished(run_id, timeout=120)
        assert run.phase == "Succeeded", (payload, run.error)
        steps = {step.name: step for step in harness.steps(run_id)}
        # The value reached the command whole, as data.
        assert steps["double-quoted"].output["stdout"] == f"dq {payload}\n", payload
        assert steps["double-quoted"].phase == "Succeeded"
        if payload.startswith("-"):
            for name in ("bare", "positional", "argv-delete", "shell-delete", "quoted-delete"):
                assert steps[name].phase == "Failed", (payload, name)
                assert OPTION_MESSAGE in steps[name].error, (payload, name)
                assert steps[name].attempts == 1  # permanent: not retried
        else:
            assert steps["bare"].output["stdout"] == f"bare {payload}\n"
            assert steps["positional"].output["stdout"] == f"pos {payload}\n"
            for name in ("argv-delete", "shell-delete", "quoted-delete"):
                # kubectl ran and refused or did not find a pod of that name.
                assert steps[name].phase == "Failed", (payload, name)
                assert steps[name].output["exit_code"] != 0, (payload, name)

    assert not marker.exists()
    assert cluster.deleted == []
    assert sorted(name for (plural, ns, name) in cluster.objects if plural == "pods") == [
        "web-1",
        "web-2",
    ]
    assert [call.path for call in cluster.requests if call.method == "DELETE"] == []


def test_a_stored_template_that_cannot_be_protected_fails_without_running(
    harness: Harness, redis_app: Celery, worker_process: WorkerProcess, tmp_path: Path
) -> None:
    # Written to the store directly, as an older controller might have: the engine
    # checks again and runs nothing.
    marker = tmp_path / "marker"
    harness.put_workflow(
        {
            "steps": [
                {
                    "name": "single-quoted",
                    "type": "cli",
                    "shell": True,
                    "command": "echo 'sq {{ alert.labels.pod }}'",
                    "continueOnError": True,
                },
                {
                    "name": "sh-c",
                    "type": "cli",
                    "command": ["sh", "-c", "echo {{ alert.labels.pod }}"],
                },
            ]
        }
    )
    run_id = harness.add_run(labels={"alertname": "X", "pod": f"'; touch {marker}; echo '"})
    worker_process.start()
    start_run(redis_app, run_id)
    run = harness.wait_finished(run_id, timeout=60)
    # The engine validates the stored spec with the same schema before it creates a
    # step: the run fails at its start, naming both problems, and no step ever runs.
    assert run.phase == "Failed"
    assert "inside single quotes" in (run.error or "")
    assert "script of a shell's -c" in (run.error or "")
    assert all(step.attempts == 0 for step in harness.steps(run_id))
    assert not marker.exists()


UNSAFE_WORKFLOW = """\
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {name: unsafe}
spec:
  steps:
    - name: single-quoted
      type: cli
      shell: true
      command: echo 'sq {{ alert.labels.pod }}'
    - name: backticks
      type: cli
      shell: true
      command: "kubectl logs `echo {{ alert.labels.pod }}`"
    - name: sh-c
      type: cli
      command: ["sh", "-c", "kubectl logs {{ alert.labels.pod }} | tail"]
    - name: fine
      type: cli
      shell: true
      command: kubectl logs -n "{{ alert.labels.namespace }}" -- {{ alert.labels.pod }}
"""


def test_validate_refuses_templates_that_cannot_be_protected(tmp_path: Path) -> None:
    path = tmp_path / f"unsafe-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(UNSAFE_WORKFLOW)
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "validate", "-f", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "spec.steps.0.command" in output
    assert "inside single quotes" in output
    assert "spec.steps.1.command" in output
    assert "inside backticks" in output
    assert "spec.steps.2.command" in output
    assert "script of a shell's -c" in output
    assert "spec.steps.3" not in output
    assert '"$POD"' in output
