"""k8s/: the overlays render, pass Kubernetes' schemas, and run what they claim to.

Every rendered document goes through ``kubernetes_validate`` with ``strict=True``
except the kinds it has no schema for, which are checked here against their own:
KopfPeering and ClusterKopfPeering against their CRDs in k8s/crds (jsonschema), and
monitoring.coreos.com kinds in test_monitoring.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from shared import settings_doc
from shared.resources import crds
from tests.unit.deploy.deploykit import (
    ARRIVING_SUBCOMMANDS,
    K8S,
    Manifest,
    by_kind,
    check_punchingfist_argv,
    containers,
    pod_specs,
    subcommands,
)

KUBERNETES_VERSION = "1.30.0"
# Kinds kubernetes-validate has no schema for, and what checks them instead.
CRD_KINDS = {"KopfPeering", "ClusterKopfPeering"}
OVERLAYS = ["dev", "prod", "prod+remediation"]
DEPLOYABLES = ["ingest", "engine", "notifier", "controller", "scheduler", "flower"]
IMAGE = "ghcr.io/punchingfist/punchingfist"
# PF_ variables the manifests set that arrive with other issues' settings.
ARRIVING_SETTINGS: set[str] = set()

Builds = Callable[[str], list[Manifest]]


def _crd_schema(kind: str) -> dict[str, object]:
    for path in (K8S / "crds").glob("*.yaml"):
        for document in yaml.safe_load_all(path.read_text()):
            if (
                document["kind"] == "CustomResourceDefinition"
                and document["spec"]["names"]["kind"] == kind
            ):
                schema: dict[str, object] = document["spec"]["versions"][0]["schema"][
                    "openAPIV3Schema"
                ]
                return schema
    raise AssertionError(f"no CRD for {kind} in k8s/crds")


@pytest.mark.parametrize("build", OVERLAYS)
def test_rendered_manifests_pass_kubernetes_validate_strict(builds: Builds, build: str) -> None:
    unchecked = []
    for manifest in builds(build):
        if manifest["kind"] in CRD_KINDS:
            jsonschema.Draft4Validator(_crd_schema(manifest["kind"])).validate(manifest)
            continue
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unchecked.append(manifest["kind"])
    assert unchecked == [], f"no schema checked these kinds: {unchecked}"


@pytest.mark.parametrize("build", OVERLAYS)
def test_every_deployable_runs_with_its_own_service_account(builds: Builds, build: str) -> None:
    manifests = builds(build)
    deployments = by_kind(manifests, "Deployment")
    accounts = by_kind(manifests, "ServiceAccount")
    for deployable in DEPLOYABLES:
        spec = deployments[f"punchingfist-{deployable}"]["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == f"punchingfist-{deployable}"
        assert f"punchingfist-{deployable}" in accounts


@pytest.mark.parametrize("build", OVERLAYS)
def test_containers_run_real_subcommands(builds: Builds, build: str) -> None:
    for where, container in containers(builds(build)):
        if not container["image"].startswith(IMAGE):
            continue
        if "command" in container:
            # The only other program the image runs: Flower from the `flower` extra.
            assert container["command"] == ["celery"], where
            assert "flower" in container["args"], where
            continue
        check_punchingfist_argv(container["args"], where)


def test_arriving_subcommands_are_still_missing() -> None:
    landed = ARRIVING_SUBCOMMANDS & set(subcommands())
    # Not a failure: a reminder to tighten conftest.ARRIVING_SUBCOMMANDS.
    if landed:
        pytest.skip(f"remove {sorted(landed)} from ARRIVING_SUBCOMMANDS: they exist now")


@pytest.mark.parametrize("build", OVERLAYS)
def test_images_are_pinned(builds: Builds, build: str) -> None:
    for where, container in containers(builds(build)):
        image = container["image"]
        name, _, tag = image.rpartition(":")
        pinned = bool(name) and tag != "latest" and any(c.isdigit() for c in tag)
        assert pinned, (where, image)


@pytest.mark.parametrize("build", OVERLAYS)
def test_every_container_has_requests_limits_and_no_privileges(builds: Builds, build: str) -> None:
    for where, container in containers(builds(build)):
        resources = container.get("resources", {})
        assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
        assert "memory" in resources.get("limits", {}), where
        context = container.get("securityContext", {})
        assert context.get("allowPrivilegeEscalation") is False, where
        assert context.get("capabilities", {}).get("drop") == ["ALL"], where
    for name, spec in pod_specs(builds(build)):
        assert spec["securityContext"]["runAsNonRoot"] is True, name


@pytest.mark.parametrize("build", OVERLAYS)
def test_our_containers_have_a_writable_var_dir_and_a_read_only_root(
    builds: Builds, build: str
) -> None:
    """PF_VAR_DIR (the image's /var/lib/punchingfist) is an emptyDir; the rest is read-only."""
    dockerfile_var_dir = _dockerfile_env()["PF_VAR_DIR"]
    for name, spec in pod_specs(builds(build)):
        for container in spec["containers"]:
            if not container["image"].startswith(IMAGE):
                continue
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert dockerfile_var_dir in mounts, f"{name}: no volume on PF_VAR_DIR"
            volume = {v["name"]: v for v in spec["volumes"]}[mounts[dockerfile_var_dir]]
            assert "emptyDir" in volume, name


def _dockerfile_env() -> dict[str, str]:
    from tests.unit.deploy.test_dockerfile import final_stage_env

    return final_stage_env()


@pytest.mark.parametrize("build", OVERLAYS)
def test_probes(builds: Builds, build: str) -> None:
    deployments = by_kind(builds(build), "Deployment")
    ingest = deployments["punchingfist-ingest"]["spec"]["template"]["spec"]["containers"][0]
    assert ingest["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert ingest["livenessProbe"]["httpGet"]["path"] == "/healthz"
    queueing_py = (Path(__file__).resolve().parents[3] / "shared/queueing.py").read_text()
    for worker in ("engine", "notifier"):
        container = deployments[f"punchingfist-{worker}"]["spec"]["template"]["spec"]["containers"][
            0
        ]
        command = container["livenessProbe"]["exec"]["command"]
        # A real subcommand that asks this worker (its node is <queue>@<pod name>).
        assert command[:3] == ["punchingfist", "healthcheck", worker], command
        check_punchingfist_argv(command[1:], f"{worker} livenessProbe")
    assert '"{queue}@%h"' in queueing_py, "the workers' node name changed: fix healthcheck"


@pytest.mark.parametrize("build", OVERLAYS)
def test_settings_in_the_config_map_exist(builds: Builds, build: str) -> None:
    known = {variable.name for variable in settings_doc.variables()}
    config = by_kind(builds(build), "ConfigMap")["punchingfist-config"]["data"]
    names = set(config)
    for _where, container in containers(builds(build)):
        names |= {e["name"] for e in container.get("env", []) if e["name"].startswith("PF_")}
    unknown = names - known - ARRIVING_SETTINGS
    assert unknown == set(), f"not settings of shared/settings.py: {sorted(unknown)}"


def test_dev_has_redis_with_appendonly_postgres_and_one_replica_each(builds: Builds) -> None:
    manifests = builds("dev")
    statefulsets = by_kind(manifests, "StatefulSet")
    redis = statefulsets["punchingfist-redis"]["spec"]["template"]["spec"]["containers"][0]
    assert redis["args"][:2] == ["--appendonly", "yes"]
    assert "punchingfist-postgres" in statefulsets
    for manifest in [*by_kind(manifests, "Deployment").values(), *statefulsets.values()]:
        assert manifest["spec"]["replicas"] == 1, manifest["metadata"]["name"]
    assert by_kind(manifests, "Service")["punchingfist-flower"]["spec"]["type"] == "NodePort"
    secrets = by_kind(manifests, "Secret")
    assert any(name.startswith("punchingfist-connections") for name in secrets)
    assert "alertmanager-webhook" in secrets  # the example Source names it exactly


def test_prod_is_replicated_autoscaled_guarded_and_authenticated(builds: Builds) -> None:
    manifests = builds("prod")
    config = by_kind(manifests, "ConfigMap")["punchingfist-config"]["data"]
    assert config["PF_ENGINE_LOCAL_RUNNER"] == "false"
    deployments = by_kind(manifests, "Deployment")
    assert deployments["punchingfist-controller"]["spec"]["replicas"] == 2
    for deployable in ("ingest", "engine", "notifier", "controller", "scheduler"):
        spec = deployments[f"punchingfist-{deployable}"]["spec"]["template"]["spec"]
        term = spec["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"
        ]
        labels = term[0]["podAffinityTerm"]["labelSelector"]["matchLabels"]
        assert labels["app.kubernetes.io/component"] == deployable
    autoscaled = {
        h["spec"]["scaleTargetRef"]["name"]
        for h in by_kind(manifests, "HorizontalPodAutoscaler").values()
    }
    assert autoscaled == {"punchingfist-ingest", "punchingfist-engine"}
    assert len(by_kind(manifests, "PodDisruptionBudget")) >= 4
    policies = by_kind(manifests, "NetworkPolicy")
    assert policies["punchingfist-default-deny-ingress"]["spec"]["podSelector"] == {}
    flower = deployments["punchingfist-flower"]["spec"]["template"]["spec"]["containers"][0]
    auth = {e["name"]: e for e in flower["env"]}["FLOWER_BASIC_AUTH"]
    assert auth["valueFrom"]["secretKeyRef"]["name"] == "punchingfist-flower"
    # No in-cluster database or broker: they are external, from the Secret.
    assert by_kind(manifests, "StatefulSet") == {}
    assert not any(
        name.startswith("punchingfist-connections") for name in by_kind(manifests, "Secret")
    )


def test_the_crd_kustomization_lists_what_make_crds_writes() -> None:
    listed = yaml.safe_load((K8S / "crds" / "Kustomization").read_text())["resources"]
    assert sorted(listed) == sorted(crds.render())
