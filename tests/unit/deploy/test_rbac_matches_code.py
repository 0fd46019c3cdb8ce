"""The RBAC in k8s/ grants each deployable what its code uses, and nothing more.

rbac_usage.yaml lists every Kubernetes API use of each deployable with the code that
makes it. Three checks hold the manifests and the code to it:
- every (resource, verb) a rendered Role/ClusterRole grants a deployable's
  ServiceAccount has an entry, with the same scope (RoleBinding: namespace;
  ClusterRoleBinding: cluster), and every entry is granted (remediation entries only
  with that component);
- every entry's evidence is in the code (entries marked ``arriving`` are skipped
  until it is);
- every Kubernetes client call in services/ and shared/ is an entry's evidence.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.deploykit import ROOT, Manifest

USAGE_FILE = Path(__file__).with_name("rbac_usage.yaml")
USAGE: dict[str, list[dict[str, Any]]] = yaml.safe_load(USAGE_FILE.read_text())
# Client methods of the official library that reach the API (CoreV1Api.read_namespaced_secret,
# BatchV1Api.list_namespaced_job, CustomObjectsApi.list_cluster_custom_object, ...).
API_CALL = re.compile(
    r"\.((?:read|list|create|delete|patch|replace|get|connect)_"
    r"(?:namespaced_\w+|\w+_for_all_namespaces|node\w*|namespace\b|cluster_custom_object\w*))"
)
Grant = tuple[str, str, str, str, str]  # deployable, scope, apiGroup, resource, verb
BUILDS = {"dev": set(), "prod": set(), "prod+remediation": {"remediation"}}

Builds = Callable[[str], list[Manifest]]


def _expand(rule: dict[str, Any], deployable: str, scope: str) -> Iterator[Grant]:
    groups = rule.get("apiGroups") or [rule.get("apiGroup", "")]
    for group in groups:
        for resource in rule["resources"]:
            for verb in rule["verbs"]:
                yield deployable, scope, group, resource, verb


def granted(manifests: list[Manifest]) -> set[Grant]:
    roles = {
        (m["kind"], m["metadata"].get("namespace"), m["metadata"]["name"]): m
        for m in manifests
        if m["kind"] in {"Role", "ClusterRole"}
    }
    grants: set[Grant] = set()
    for binding in manifests:
        if binding["kind"] not in {"RoleBinding", "ClusterRoleBinding"}:
            continue
        ref = binding["roleRef"]
        namespace = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
        role = roles[(ref["kind"], namespace, ref["name"])]
        scope = "namespace" if binding["kind"] == "RoleBinding" else "cluster"
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount", binding["metadata"]["name"]
            deployable = subject["name"].removeprefix("punchingfist-")
            assert deployable in USAGE, f"{subject['name']} is not a deployable's account"
            for rule in role.get("rules", []):
                assert "*" not in rule["verbs"], ref["name"]
                assert "*" not in rule["resources"], ref["name"]
                assert "resourceNames" not in rule or rule["resourceNames"]
                grants |= set(_expand(rule, deployable, scope))
    return grants


def used(components: set[str]) -> set[Grant]:
    grants: set[Grant] = set()
    for deployable, entries in USAGE.items():
        for entry in entries:
            if entry.get("component", None) in (None, *components):
                grants |= set(_expand(entry["rule"], deployable, entry["scope"]))
    return grants


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_no_grant_without_a_use(builds: Builds, build: str) -> None:
    unused = granted(builds(build)) - used(BUILDS[build])
    assert unused == set(), f"granted but not in rbac_usage.yaml: {sorted(unused)}"


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_every_use_is_granted(builds: Builds, build: str) -> None:
    missing = used(BUILDS[build]) - granted(builds(build))
    assert missing == set(), f"used but not granted: {sorted(missing)}"


def test_remediation_is_off_by_default(builds: Builds) -> None:
    remediation = used({"remediation"}) - used(set())
    assert remediation, "rbac_usage.yaml lists no remediation rights"
    for build in ("dev", "prod"):
        assert remediation & granted(builds(build)) == set()


def _files(path: Path) -> list[Path]:
    return sorted(path.rglob("*.py")) if path.is_dir() else [path]


def _evidence_found(entry: dict[str, Any]) -> bool:
    path = ROOT / entry["evidence"]["file"]
    return any(entry["evidence"]["contains"] in f.read_text() for f in _files(path))


@pytest.mark.parametrize(
    ("deployable", "entry"),
    [(d, e) for d, entries in USAGE.items() for e in entries],
    ids=lambda value: value if isinstance(value, str) else value["evidence"]["contains"],
)
def test_every_use_is_in_the_code(deployable: str, entry: dict[str, Any]) -> None:
    assert entry["why"]
    assert entry["scope"] in {"namespace", "cluster"}
    path = ROOT / entry["evidence"]["file"]
    if entry.get("arriving") and not (path.exists() and _evidence_found(entry)):
        # The scan below still catches the calls when they land under another name.
        pytest.skip(f"{entry['evidence']['file']} arrives with {entry['arriving']}")
    assert _evidence_found(entry), f"{deployable}: {entry['evidence']} is not in the code"


def api_calls() -> set[tuple[str, str]]:
    """(file, client method) for every Kubernetes API call in services/ and shared/."""
    found = set()
    for folder in ("services", "shared"):
        for path in (ROOT / folder).rglob("*.py"):
            for method in API_CALL.findall(path.read_text()):
                found.add((str(path.relative_to(ROOT)), method))
    return found


def test_the_code_scan_finds_the_known_calls() -> None:
    calls = api_calls()
    assert ("services/engine/runners/kube.py", "create_namespaced_job") in calls
    assert (
        "services/engine/runners/kube.py",
        "list_namespaced_job",
    ) in calls  # a watch, no call parens
    assert ("shared/secrets.py", "read_namespaced_secret") in calls


def test_every_api_call_in_the_code_is_listed() -> None:
    listed = {
        (entry["evidence"]["file"], entry["evidence"]["contains"])
        for entries in USAGE.values()
        for entry in entries
    }
    unlisted = [
        (file, method)
        for file, method in sorted(api_calls())
        if not any(
            method == contains and (file == where or file.startswith(where.rstrip("/") + "/"))
            for where, contains in listed
        )
    ]
    assert unlisted == [], f"add these API calls to rbac_usage.yaml and the Roles: {unlisted}"
