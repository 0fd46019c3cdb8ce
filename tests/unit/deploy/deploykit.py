"""Helpers of the deployment tests: kustomize builds, manifests, the command line."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from services import cli

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "k8s"

# Subcommands that the manifests, compose.yaml and the Dockerfile may name before
# they exist on this branch: each is being built by another issue. Remove an entry
# when its command lands (test_arriving_subcommands_are_still_missing says when).
ARRIVING_SUBCOMMANDS: set[str] = set()

Manifest = dict[str, Any]


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("kubectl (with kustomize) is needed for the deployment tests")
        pytest.skip("kubectl is not installed")
    return found


def kustomize(directory: Path) -> list[Manifest]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory}: {result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def pod_specs(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for manifest in manifests:
        if manifest["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            yield manifest["metadata"]["name"], manifest["spec"]["template"]["spec"]


def containers(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for name, spec in pod_specs(manifests):
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            yield f"{name}/{container['name']}", container


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("punchingfist has no subcommands")


def check_punchingfist_argv(argv: list[str], where: str) -> None:
    """``argv`` (after ``punchingfist``) names a real subcommand whose parser accepts it."""
    assert argv, f"{where}: no subcommand"
    known = subcommands()
    if argv[0] in ARRIVING_SUBCOMMANDS and argv[0] not in known:
        return
    assert argv[0] in known, f"{where}: `punchingfist {argv[0]}` is not a subcommand"
    try:
        cli.build_parser().parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"{where}: `punchingfist {' '.join(argv)}` does not parse") from exc
