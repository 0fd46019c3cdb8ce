"""cli steps with ``runner: kubernetes``: a Job per attempt, against an HTTP double.

The runner talks HTTP to the API double (``tests.support.kube_api``) through the
real ``kubernetes`` client; the double's fake kubelet plays the container the test
scripts (logs, exit code, run time, an image that cannot be pulled).
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import Celery
from enginekit import Harness, inprocess_worker, start_run
from kubernetes.config import kube_config

from services.engine.app import create_app
from services.engine.runners import bases, kube
from services.engine.runners.bases import CommandTimeoutError
from services.engine.runners.kubernetes import JobRunner, job_manifest, job_name
from services.engine.runners.local import LocalRunner
from services.engine.runtime import Runtime
from services.engine.steps import registries
from services.engine.steps.cli import CliExecutor
from shared.domain.templates import Templates
from shared.errors import PermanentError, TemporaryError
from shared.resources.schemas import load_workflow
from shared.settings import Settings
from tests.support.kube_api import Cluster as KubeJobs
from tests.support.kube_api import KubeApiDouble, Script
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(15)

NS = "pf-jobs"
IMAGE = "registry.example/tools:1.2"
RUN_ID = "0b7c1c8e-5d4e-4f4c-9d4e-2a1b3c4d5e6f"


@pytest.fixture
def cluster() -> Iterator[KubeJobs]:
    with KubeApiDouble() as double:
        yield double.state


def make_runner(url: str, **options: Any) -> tuple[JobRunner, kube.KubeClient]:
    api_client = kube.api_client_for(url)
    assert api_client is not None
    client = kube.KubeClient(api_client)
    settings: dict[str, Any] = {
        "namespace": NS,
        "ttl_seconds": 120,
        "watch_seconds": 1,
        "image_pull_grace": 0.2,
        "deadline_slack": 0.5,
    }
    settings.update(options)
    return JobRunner(client, **settings), client


@pytest.fixture
def runner(cluster: KubeJobs) -> Iterator[JobRunner]:
    job_runner, client = make_runner(cluster.url)
    yield job_runner
    client.close()


def command(**overrides: Any) -> bases.Command:
    fields: dict[str, Any] = {
        "argv": ("kubectl", "get", "pod", "web-1"),
        "env": {"REGION": "eu-1", "POD": "web-1"},
        "timeout": 5.0,
        "output_limit": 1000,
        "image": IMAGE,
        "label": f"{RUN_ID}-2-1",
        "labels": {"run-id": RUN_ID, "step": "look", "step-index": "2", "attempt": "1"},
    }
    fields.update(overrides)
    return bases.Command(**fields)


def cli_context(
    runner: bases.Runner, step: dict[str, Any], runner_name: str = "kubernetes"
) -> registries.StepContext:
    flow = load_workflow(
        "ns",
        "wf",
        {"runtime": {"image": IMAGE}, "steps": [{"name": "look", "type": "cli", **step}]},
    )
    return registries.StepContext(
        run_id=RUN_ID,
        workflow=flow,
        step=flow.steps[0],
        attempt=1,
        namespace={"alert": {"labels": {"pod": "web-1"}}},
        templates=Templates(),
        timeout=float(step.get("timeoutSeconds", 5)),
        output_limit=1000,
        runners={runner_name: runner},
    )


def job_gone(cluster: KubeJobs, name: str) -> bool:
    return (
        cluster.job(NS, name) is None
        and not cluster.pods_matching(NS, f"job-name={name}")
        and (name, "Background") in cluster.deleted
    )


# -- what the runner creates ------------------------------------------------------


def test_the_job_carries_image_command_env_deadline_ttl_and_labels(
    cluster: KubeJobs, runner: JobRunner
) -> None:
    cluster.script = lambda job: Script(logs="NAME READY\nweb-1 1/1\n")
    completed = runner.run(command(timeout=2.5))

    assert completed == bases.Completed(
        exit_code=0, stdout="NAME READY\nweb-1 1/1\n", stderr="", truncated=0
    )
    [body] = cluster.created
    name = f"pf-{RUN_ID}-2-1"
    labels = {
        "app.kubernetes.io/managed-by": "punchingfist",
        "punchingfist.io/run-id": RUN_ID,
        "punchingfist.io/step": "look",
        "punchingfist.io/step-index": "2",
        "punchingfist.io/attempt": "1",
    }
    assert body["metadata"] == {"name": name, "namespace": NS, "labels": labels}
    spec = body["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (0, 3)
    assert spec["ttlSecondsAfterFinished"] == 120
    pod = spec["template"]
    assert pod["metadata"]["labels"] == labels
    assert pod["spec"] == {
        "restartPolicy": "Never",
        # No service account token unless the Workflow asks for one (issue 8).
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "step",
                "image": IMAGE,
                "command": ["kubectl", "get", "pod", "web-1"],
                "env": [
                    {"name": "HOME", "value": "/tmp"},
                    {"name": "REGION", "value": "eu-1"},
                    {"name": "POD", "value": "web-1"},
                ],
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "privileged": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    # Done: the Job and its pod are deleted at once; the TTL is only the backstop.
    assert job_gone(cluster, name)


def test_shell_commands_run_under_bin_sh(cluster: KubeJobs, runner: JobRunner) -> None:
    # The runner builds a pod spec; nothing runs a shell here.
    runner.run(command(argv=("echo $POD | tr a-z A-Z",), shell=True))  # noqa: S604
    [body] = cluster.created
    container = body["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/bin/sh", "-c", "echo $POD | tr a-z A-Z"]


def test_job_names_are_deterministic_dns_labels() -> None:
    assert job_name(f"{RUN_ID}-0-1") == f"pf-{RUN_ID}-0-1"
    odd = "Run_ID/with spaces" + "x" * 80 + "-3-2"
    name = job_name(odd)
    assert name == job_name(odd)
    assert len(name) <= 63
    assert name.startswith("pf-run-id-with-spaces")
    assert name != job_name(odd.replace("-3-2", "-3-3"))
    assert all(c.isalnum() or c == "-" for c in name)
    assert name[-1].isalnum()


# -- results ----------------------------------------------------------------------


def test_a_non_zero_exit_is_a_failed_attempt_with_the_output(
    cluster: KubeJobs, runner: JobRunner
) -> None:
    cluster.script = lambda job: Script(
        logs="Error from server (NotFound): pods web-1\n", exit_code=3, message="gave up"
    )
    outcome = registries.invoke(
        CliExecutor(), cli_context(runner, {"runner": "kubernetes", "command": ["false"]})
    )
    assert not outcome.ok
    assert outcome.temporary  # like the local runner: the step's retries apply
    assert outcome.error == "command exited with code 3: gave up"
    assert outcome.output == {
        "stdout": "Error from server (NotFound): pods web-1\n",
        "stderr": "gave up",
        "exit_code": 3,
    }
    [body] = cluster.created
    assert job_gone(cluster, body["metadata"]["name"])


def test_an_oom_killed_container_says_so_in_stderr(cluster: KubeJobs, runner: JobRunner) -> None:
    cluster.script = lambda job: Script(logs="allocating\n", exit_code=137, reason="OOMKilled")
    completed = runner.run(command())
    assert (completed.exit_code, completed.stderr) == (137, "OOMKilled")


def test_logs_are_bounded_like_the_local_runner(cluster: KubeJobs, runner: JobRunner) -> None:
    cluster.script = lambda job: Script(logs="x" * 3000)
    completed = runner.run(command(output_limit=1000))
    assert completed.stdout == "x" * 1000
    assert completed.truncated == 2000


def test_json_output_is_parsed_from_the_log(cluster: KubeJobs, runner: JobRunner) -> None:
    cluster.script = lambda job: Script(logs='{"restarts": 7}')
    outcome = registries.invoke(
        CliExecutor(),
        cli_context(runner, {"runner": "kubernetes", "command": ["x"], "output": "json"}),
    )
    assert outcome.ok, outcome.error
    assert outcome.output["restarts"] == 7


# -- timeouts -----------------------------------------------------------------------


def test_the_active_deadline_is_the_local_runners_timeout(
    cluster: KubeJobs, runner: JobRunner
) -> None:
    cluster.script = lambda job: Script(logs="still going", run_seconds=30)
    local = registries.invoke(
        CliExecutor(),
        cli_context(LocalRunner(), {"command": ["sleep", "5"], "timeoutSeconds": 1}, "local"),
    )
    started = time.monotonic()
    outcome = registries.invoke(
        CliExecutor(),
        cli_context(
            runner, {"runner": "kubernetes", "command": ["sleep", "30"], "timeoutSeconds": 1}
        ),
    )
    assert time.monotonic() - started < 3
    assert (outcome.ok, outcome.temporary, outcome.error) == (False, True, local.error)
    assert outcome.error == "timed out after 1s and was killed"
    [body] = cluster.created
    assert body["spec"]["activeDeadlineSeconds"] == 1
    assert job_gone(cluster, body["metadata"]["name"])


def test_the_runner_gives_up_on_its_own_when_kubernetes_does_not(
    cluster: KubeJobs, runner: JobRunner
) -> None:
    cluster.honour_deadline = False
    cluster.script = lambda job: Script(run_seconds=30)
    started = time.monotonic()
    with pytest.raises(CommandTimeoutError, match="timed out after 1s"):
        runner.run(command(timeout=1.0))
    assert time.monotonic() - started < 4
    assert job_gone(cluster, cluster.created[0]["metadata"]["name"])


# -- redelivery -----------------------------------------------------------------------


def test_a_redelivered_step_adopts_its_running_job(cluster: KubeJobs, runner: JobRunner) -> None:
    cluster.script = lambda job: Script(logs="once\n", run_seconds=0.3)
    first = command()
    name = job_name(first.label)
    # The first delivery created the Job, then its worker vanished.
    assert cluster.create_job(NS, job_manifest(name, NS, first, 120))[0] == 201

    completed = runner.run(command())

    assert completed.stdout == "once\n"
    assert len(cluster.created) == 1  # the runner's POST got 409 and created nothing
    assert cluster.posts() == [f"/apis/batch/v1/namespaces/{NS}/jobs"]
    assert job_gone(cluster, name)


def test_a_redelivered_step_reads_a_job_that_already_finished(
    cluster: KubeJobs, runner: JobRunner
) -> None:
    cluster.script = lambda job: Script(logs="done before\n", exit_code=0)
    first = command()
    name = job_name(first.label)
    cluster.create_job(NS, job_manifest(name, NS, first, 120))
    wait_for(
        lambda: (cluster.job(NS, name) or {}).get("status", {}).get("completionTime"),
        5,
        "the Job to complete",
    )

    assert runner.run(command()).stdout == "done before\n"
    assert len(cluster.created) == 1


def test_a_job_of_the_same_name_that_is_not_ours_is_refused(
    cluster: KubeJobs, runner: JobRunner
) -> None:
    body = job_manifest(job_name(command().label), NS, command(), 120)
    body["metadata"]["labels"] = {"app": "someone-else"}
    cluster.create_job(NS, body)
    with pytest.raises(PermanentError, match="not created by Punching Fist"):
        runner.run(command())


def test_another_attempt_makes_another_job(cluster: KubeJobs, runner: JobRunner) -> None:
    runner.run(command())
    runner.run(command(label=f"{RUN_ID}-2-2"))
    assert [body["metadata"]["name"] for body in cluster.created] == [
        f"pf-{RUN_ID}-2-1",
        f"pf-{RUN_ID}-2-2",
    ]


# -- API errors -----------------------------------------------------------------------


def test_forbidden_is_permanent_with_the_api_message(cluster: KubeJobs, runner: JobRunner) -> None:
    message = (
        'jobs.batch is forbidden: User "system:serviceaccount:pf:engine" cannot create '
        'resource "jobs" in API group "batch" in the namespace "pf-jobs"'
    )
    cluster.fail("POST", r"/jobs$", 403, reason="Forbidden", message=message)
    outcome = registries.invoke(
        CliExecutor(), cli_context(runner, {"runner": "kubernetes", "command": ["true"]})
    )
    assert (outcome.ok, outcome.temporary) == (False, False)
    assert outcome.error == (
        f"create Job {NS}/pf-{RUN_ID}-0-1: 403 Forbidden: {message}"  # step index 0 here
    )
    assert not cluster.created


def test_an_invalid_job_is_permanent(cluster: KubeJobs, runner: JobRunner) -> None:
    cluster.fail(
        "POST", r"/jobs$", 422, reason="Unprocessable Entity", message="spec.template: Invalid"
    )
    with pytest.raises(kube.ApiPermanentError, match=r"422 .*spec.template: Invalid") as caught:
        runner.run(command())
    assert caught.value.status == 422


def test_unavailable_is_temporary(cluster: KubeJobs, runner: JobRunner) -> None:
    cluster.fail(
        "POST", r"/jobs$", 503, reason="Service Unavailable", message="etcdserver: leader changed"
    )
    with pytest.raises(TemporaryError, match="503 Service Unavailable: etcdserver"):
        runner.run(command())
    assert not cluster.created


def test_an_api_outage_while_waiting_is_temporary_and_still_cleans_up(
    cluster: KubeJobs, runner: JobRunner
) -> None:
    cluster.script = lambda job: Script(run_seconds=5)
    cluster.fail("GET", r"/jobs$", 503, reason="Service Unavailable", message="try again")
    with pytest.raises(kube.ApiTemporaryError, match="watch Job"):
        runner.run(command())
    assert job_gone(cluster, cluster.created[0]["metadata"]["name"])


def test_an_unreachable_api_is_temporary() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    closed, client = make_runner(f"http://127.0.0.1:{port}")
    with pytest.raises(kube.ApiTemporaryError, match="cannot reach the Kubernetes API"):
        closed.run(command())
    client.close()


def test_an_expired_watch_is_resumed_from_a_fresh_read(
    cluster: KubeJobs, runner: JobRunner
) -> None:
    cluster.script = lambda job: Script(logs="ok\n", run_seconds=0.2)
    cluster.expire_watches = 1
    assert runner.run(command()).stdout == "ok\n"
    reads = [call.path for call in cluster.requests if call.method == "GET"]
    assert f"/apis/batch/v1/namespaces/{NS}/jobs/pf-{RUN_ID}-2-1" in reads


# -- images -------------------------------------------------------------------------


def test_an_image_that_cannot_be_pulled_is_permanent(cluster: KubeJobs, runner: JobRunner) -> None:
    cluster.script = lambda job: Script(pull_error="ErrImagePull")
    started = time.monotonic()
    with pytest.raises(PermanentError, match=f"image '{IMAGE}' cannot be pulled"):
        runner.run(command(timeout=30))
    assert time.monotonic() - started < 5  # not the step's 30 s timeout
    assert job_gone(cluster, cluster.created[0]["metadata"]["name"])


def test_a_workflow_without_an_image_cannot_use_the_runner(
    cluster: KubeJobs, runner: JobRunner
) -> None:
    with pytest.raises(PermanentError, match=r"needs the Workflow's runtime.image"):
        runner.run(command(image=None))
    assert not cluster.requests


# -- the engine ---------------------------------------------------------------------


def test_the_runtime_registers_the_runner_only_when_configured(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "none"))
    assert set(Runtime._default_runners(make_settings())) == {"local"}
    with_url = Runtime._default_runners(make_settings(PF_ENGINE_KUBERNETES_API_URL="http://k:1"))
    assert set(with_url) == {"local", "kubernetes"}


@pytest.fixture
def kube_engine(engine_settings: Callable[..., Settings], cluster: KubeJobs) -> Iterator[Celery]:
    app = create_app(
        engine_settings(
            PF_ENGINE_KUBERNETES_API_URL=cluster.url,
            PF_ENGINE_KUBERNETES_NAMESPACE=NS,
            PF_ENGINE_JOB_TTL_SECONDS="60",
        )
    )
    with inprocess_worker(app):
        yield app


def echo(job: dict[str, Any]) -> Script:
    argv = job["spec"]["template"]["spec"]["containers"][0]["command"]
    return Script(logs=" ".join(argv[1:]) + "\n" if argv[0] == "echo" else "")


def test_a_workflow_step_runs_as_a_job_through_the_engine(
    harness: Harness, kube_engine: Celery, cluster: KubeJobs
) -> None:
    cluster.script = echo
    harness.put_workflow(
        {
            "runtime": {"image": IMAGE, "environment": {"REGION": "eu-1"}},
            "steps": [
                {
                    "name": "look",
                    "type": "cli",
                    "runner": "kubernetes",
                    "command": ["echo", "pod", "{{ alert.labels.pod }}"],
                    "env": {"POD": "{{ alert.labels.pod }}"},
                    "timeoutSeconds": 20,
                },
                {
                    "name": "after",
                    "type": "cli",
                    "command": ["echo", "saw {{ steps.look.output.stdout | trim }}"],
                },
            ],
        }
    )
    run_id = harness.add_run(labels={"alertname": "X", "severity": "critical", "pod": "web-7"})
    start_run(kube_engine, run_id)
    run = harness.wait_finished(run_id)

    assert run.phase == "Succeeded", run.error
    look, after = harness.steps(run_id)
    assert look.output == {"stdout": "pod web-7\n", "stderr": "", "exit_code": 0}
    assert after.output["stdout"] == "saw pod web-7\n"
    [body] = cluster.created
    name = body["metadata"]["name"]
    assert name == f"pf-{run_id}-0-1"
    assert body["metadata"]["namespace"] == NS
    assert body["metadata"]["labels"]["punchingfist.io/run-id"] == str(run_id)
    assert body["spec"]["ttlSecondsAfterFinished"] == 60
    assert body["spec"]["activeDeadlineSeconds"] == 20
    container = body["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [
        {"name": "HOME", "value": "/tmp"},
        {"name": "REGION", "value": "eu-1"},
        {"name": "POD", "value": "web-7"},
    ]
    assert job_gone(cluster, name)
    assert uuid.UUID(body["metadata"]["labels"]["punchingfist.io/run-id"]) == run_id


@pytest.fixture
def workflow_namespace_engine(
    engine_settings: Callable[..., Settings], cluster: KubeJobs
) -> Iterator[Celery]:
    """An engine that names no Job namespace, with its own Job defaults."""
    app = create_app(
        engine_settings(
            PF_ENGINE_KUBERNETES_API_URL=cluster.url,
            PF_ENGINE_JOB_REQUESTS="cpu=50m,memory=64Mi",
            PF_ENGINE_JOB_LIMITS="cpu=500m,memory=256Mi",
            PF_ENGINE_JOB_RUN_AS_USER="1001",
        )
    )
    app.control.purge()
    with inprocess_worker(app):
        yield app
    app.pf_runtime.close()


def test_a_job_runs_in_the_workflows_namespace_as_its_service_account_within_limits(
    harness: Harness, workflow_namespace_engine: Celery, cluster: KubeJobs
) -> None:
    cluster.script = echo
    harness.put_workflow(
        {
            "runtime": {
                "image": IMAGE,
                "serviceAccountName": "triage-steps",
                "automountServiceAccountToken": True,
                "resources": {"requests": {"memory": "384Mi"}, "limits": {"cpu": "2"}},
            },
            "steps": [
                {
                    "name": "look",
                    "type": "cli",
                    "runner": "kubernetes",
                    "command": ["echo", "{{ alert.labels.pod }}"],
                }
            ],
        },
        namespace="team-a",
    )
    run_id = harness.add_run(namespace="team-a")
    start_run(workflow_namespace_engine, run_id)
    run = harness.wait_finished(run_id)

    assert run.phase == "Succeeded", run.error
    [body] = cluster.created
    assert body["metadata"]["namespace"] == "team-a"
    assert cluster.posts() == ["/apis/batch/v1/namespaces/team-a/jobs"]
    pod = body["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "triage-steps"
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1001,
        "runAsGroup": 1001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    [container] = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # The Workflow's requests and limits over the engine's; a request above the
    # default limit raises that limit instead of making an invalid pod.
    assert container["resources"] == {
        "requests": {"cpu": "50m", "memory": "384Mi"},
        "limits": {"cpu": "2", "memory": "384Mi"},
    }
    assert cluster.job("team-a", body["metadata"]["name"]) is None


def test_a_container_that_cannot_be_created_is_permanent(
    cluster: KubeJobs, runner: JobRunner
) -> None:
    # What the kubelet says when runAsNonRoot meets an image that runs as root.
    cluster.script = lambda job: Script(
        pull_error="CreateContainerConfigError",
        pull_message="container has runAsNonRoot and image will run as root",
    )
    with pytest.raises(PermanentError, match="runAsNonRoot and image will run as root"):
        runner.run(command(timeout=30))
