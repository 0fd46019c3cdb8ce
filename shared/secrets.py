"""Resolve a ``secretRef`` {name, key} to its value.

In a cluster the value comes from the Kubernetes Secret in the resource's namespace;
without one, from a folder laid out like a mounted Secret,
``$PF_SECRETS_DIR/<name>/<key>``. Values are cached briefly so that a rotation is
picked up without a restart and a webhook storm does not hit the API server.

Surrounding whitespace is dropped (``echo token > file`` adds a newline), and a value
that is empty after that is refused with ``SecretError``: compared as a bearer token
it would match an ``Authorization: Bearer`` header with nothing after it.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from shared import kube
from shared.errors import SecretError

# Seconds a resolved value is reused; short enough that a rotated token works soon.
CACHE_SECONDS = 30.0


class SecretReader(Protocol):
    def __call__(self, namespace: str, name: str, key: str) -> str: ...


def _non_empty(value: str, what: str) -> str:
    if not value:
        raise SecretError(f"{what} is empty")
    return value


def folder_reader(root: Path) -> SecretReader:
    def read(namespace: str, name: str, key: str) -> str:
        if any(
            not part or "/" in part or "\0" in part or part in {".", ".."} for part in (name, key)
        ):
            raise SecretError(f"secretRef {name!r}/{key!r}: name and key must be plain file names")
        path = root / name / key
        try:
            return _non_empty(path.read_text().strip(), f"secret {name!r} key {key!r} at {path}")
        except FileNotFoundError as exc:
            raise SecretError(f"secret {name!r} key {key!r} not found at {path}") from exc
        except OSError as exc:
            raise SecretError(f"secret {name!r} key {key!r} unreadable at {path}: {exc}") from exc

    return read


class KubernetesSecrets:
    """Reads Secrets through the Kubernetes API (a SecretReader with a ``close``).

    Configured by ``shared.kube``: the pod's service account, else the kubeconfig;
    ``host`` names an API server directly (tests, kubectl proxy).
    """

    def __init__(self, host: str | None = None) -> None:
        from kubernetes import client

        try:
            # With a host, one quick try: the cache and the sender's retry cover a blip.
            self._client = kube.api_client(host or "", retries=0 if host else None)
        except kube.KubeConfigError as exc:
            raise SecretError(f"PF_KUBERNETES_SECRETS is on but {exc}") from exc
        self._api = client.CoreV1Api(self._client)

    def __call__(self, namespace: str, name: str, key: str) -> str:
        try:
            with kube.translated(f"secret {namespace}/{name}"):
                secret = self._api.read_namespaced_secret(name, namespace, _request_timeout=5)
        except kube.KubeError as exc:
            raise SecretError(str(exc)) from exc
        data = secret.data or {}
        if key not in data:
            raise SecretError(f"secret {namespace}/{name} has no key {key!r}")
        try:
            value = base64.b64decode(data[key] or "").decode().strip()
        except (binascii.Error, ValueError) as exc:
            raise SecretError(f"secret {namespace}/{name} key {key!r} is not UTF-8 text") from exc
        return _non_empty(value, f"secret {namespace}/{name} key {key!r}")

    def close(self) -> None:
        kube.close(self._client)


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
