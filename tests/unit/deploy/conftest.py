"""Rendered kustomize builds, once per session.

Builds: the two overlays, prod with the remediation component (a kustomization in a
temporary folder that points at both, as a user's own overlay would), and
k8s/monitoring.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.unit.deploy.deploykit import K8S, Manifest, kustomize


@pytest.fixture(scope="session")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], list[Manifest]]:
    """``builds(name)``: the rendered manifests of dev, prod, prod+remediation, monitoring."""
    cache: dict[str, list[Manifest]] = {}
    combined = tmp_path_factory.mktemp("prod-remediation")
    relative = Path(os.path.relpath(K8S, combined))
    (combined / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [str(relative / "overlays" / "prod")],
                "components": [str(relative / "components" / "remediation")],
            }
        )
    )
    directories = {
        "dev": K8S / "overlays" / "dev",
        "prod": K8S / "overlays" / "prod",
        "prod+remediation": combined,
        "monitoring": K8S / "monitoring",
    }

    def build(name: str) -> list[Manifest]:
        if name not in cache:
            cache[name] = kustomize(directories[name])
        return cache[name]

    return build
