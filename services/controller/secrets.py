"""Does a secretRef resolve? Checked the way the services will read it.

The controller only reports whether a referenced Secret key exists and holds
something (a status condition); it never logs or stores the value. An empty or
blank value is reported like a missing one: as a bearer token it would let anyone
in, and ingest refuses it too. File mode looks in
``$PF_SECRETS_DIR/<name>/<key>`` like ``shared.secrets``; in a cluster the Secret is
read through the API with the controller's own credentials.
"""

from __future__ import annotations

import base64
import binascii
import logging
from pathlib import Path
from typing import Any

from shared import kube
from shared.resources import checks

log = logging.getLogger(__name__)


def folder_check(root: Path) -> checks.SecretCheck:
    def check(namespace: str, name: str, key: str) -> str | None:
        if "/" in name or "/" in key or name in {".", ".."} or key in {".", ".."}:
            return f"secret {name!r} key {key!r}: names must not contain '/'"
        path = root / name / key
        if not path.is_file():
            return f"secret {name!r} key {key!r} not found at {path}"
        try:
            value = path.read_bytes()
        except OSError as exc:
            return f"secret {name!r} key {key!r} unreadable at {path}: {exc.strerror}"
        if not value.strip():
            return f"secret {name!r} key {key!r} at {path} is empty"
        return None

    return check


def kubernetes_api() -> Any:
    """A CoreV1Api configured by ``shared.kube``; ``kube.close`` its ``api_client`` when done.

    Raises KubeConfigError (a ConfigError: the command stops with its message) when
    neither an in-cluster service account nor a kubeconfig is found.
    """
    from kubernetes import client

    return client.CoreV1Api(kube.api_client())


def kubernetes_check(api: Any) -> checks.SecretCheck:
    """Secrets through the Kubernetes API, with the controller's own credentials."""

    def check(namespace: str, name: str, key: str) -> str | None:
        try:
            with kube.translated(f"Secret {namespace}/{name} cannot be read"):
                secret = api.read_namespaced_secret(name, namespace, _request_timeout=5)
        except kube.NotFoundError:
            return f"no Secret {namespace}/{name}"
        except kube.ApiTemporaryError as exc:
            # The API server is unreachable or failing: report it, the next refresh retries.
            log.warning("secret check failed", extra={"secret": f"{namespace}/{name}"})
            return str(exc)
        except kube.KubeError as exc:
            return str(exc)
        data = secret.data or {}
        if key not in data:
            return f"Secret {namespace}/{name} has no key {key!r}"
        try:
            value = base64.b64decode(data[key] or "")
        except (binascii.Error, ValueError):
            return f"Secret {namespace}/{name} key {key!r} is not valid base64"
        if not value.strip():
            return f"Secret {namespace}/{name} key {key!r} is empty"
        return None

    return check
