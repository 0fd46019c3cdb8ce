"""Resolve a ``secretRef`` {name, key} to its value.

In a cluster the value comes from the Kubernetes Secret in the resource's namespace;
without one, from a folder laid out like a mounted Secret,
``$PF_SECRETS_DIR/<name>/<key>``. Values are cached briefly so that a rotation is
picked up without a restart and a webhook storm does not hit the API server.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from shared.errors import SecretError

# Seconds a resolved value is reused; short enough that a rotated token works soon.
CACHE_SECONDS = 30.0


class SecretReader(Protocol):
    def __call__(self, namespace: str, name: str, key: str) -> str: ...


def folder_reader(root: Path) -> SecretReader:
    def read(namespace: str, name: str, key: str) -> str:
        if any(
            not part or "/" in part or "\0" in part or part in {".", ".."} for part in (name, key)
        ):
            raise SecretError(f"secretRef {name!r}/{key!r}: name and key must be plain file names")
        path = root / name / key
        try:
            return path.read_text().strip()
        except FileNotFoundError as exc:
            raise SecretError(f"secret {name!r} key {key!r} not found at {path}") from exc
        except OSError as exc:
            raise SecretError(f"secret {name!r} key {key!r} unreadable at {path}: {exc}") from exc

    return read


def kubernetes_reader() -> SecretReader:
    """Read Secrets through the Kubernetes API (in-cluster config, else kubeconfig)."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    api = client.CoreV1Api()

    def read(namespace: str, name: str, key: str) -> str:
        try:
            secret = api.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            raise SecretError(f"secret {namespace}/{name}: {exc.status} {exc.reason}") from exc
        data = secret.data or {}
        if key not in data:
            raise SecretError(f"secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data[key]).decode().strip()

    return read


class CachedSecrets:
    def __init__(
        self,
        reader: SecretReader,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._ttl = ttl
        self._clock = clock
        self._values: dict[tuple[str, str, str], tuple[float, str]] = {}
        self._lock = threading.Lock()

    def get(self, namespace: str, name: str, key: str) -> str:
        cache_key = (namespace, name, key)
        now = self._clock()
        with self._lock:
            cached = self._values.get(cache_key)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        value = self._reader(namespace, name, key)
        with self._lock:
            self._values[cache_key] = (now, value)
        return value
