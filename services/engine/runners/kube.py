"""The engine's thin client for the Kubernetes API: Jobs, their pods and pod logs.

It exists so that the Job runner never sees the ``kubernetes`` library: objects
come back as plain dicts (the API's JSON), and every library failure leaves this
module as one of ``shared.kube``'s errors (re-exported here, as the runner catches
them through this module), chained with ``from``:

    PermanentError
    └── ApiPermanentError      a 4xx the same request will get again (403, 422, ...)
        ├── NotFoundError      404
        └── ConflictError      409 (AlreadyExists)
    TemporaryError
    └── ApiTemporaryError      5xx, 429, 408, connection and timeout errors
        └── GoneError          410: a watch's resourceVersion is too old; re-read

It does no polling, waiting or deciding: that is the runner's job. The API client
is given to it (``api_client_for``), so tests point it at an HTTP double.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator
from typing import Any

from kubernetes import client, watch

from shared import kube
from shared.kube import (
    ApiPermanentError,
    ApiTemporaryError,
    ConflictError,
    GoneError,
    NotFoundError,
)

__all__ = [
    "ApiPermanentError",
    "ApiTemporaryError",
    "ConflictError",
    "GoneError",
    "KubeClient",
    "NotFoundError",
    "api_client_for",
]

log = logging.getLogger(__name__)

# Seconds to connect and to wait for a response byte; a watch adds its own window.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
_CHUNK = 65536

Obj = dict[str, Any]


def api_client_for(api_url: str = "") -> client.ApiClient | None:
    """An ApiClient for ``api_url``, else in-cluster config, else kubeconfig; None if none."""
    try:
        return kube.api_client(api_url)
    except kube.KubeConfigError as exc:
        log.info("no Kubernetes configuration (in-cluster or kubeconfig): %s", exc)
        return None


def _json(response: Any) -> Obj:
    try:
        data = response.data
    finally:
        response.release_conn()
    try:
        parsed = json.loads(data or b"{}")
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ApiTemporaryError(f"unexpected response from the Kubernetes API: {data[:200]!r}")
    return parsed


class KubeClient:
    """Jobs and pods in plain dicts; every method raises only our errors."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self._batch = client.BatchV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._timeout = (CONNECT_TIMEOUT, READ_TIMEOUT)

    def create_job(self, namespace: str, body: Obj) -> Obj:
        name = body["metadata"]["name"]
        with kube.translated(f"create Job {namespace}/{name}"):
            return _json(
                self._batch.create_namespaced_job(
                    namespace,
                    client.V1Job.model_validate(body),
                    _preload_content=False,
                    _request_timeout=self._timeout,
                )
            )

    def read_job(self, namespace: str, name: str) -> Obj:
        with kube.translated(f"read Job {namespace}/{name}"):
            return _json(
                self._batch.read_namespaced_job(
                    name, namespace, _preload_content=False, _request_timeout=self._timeout
                )
            )

    def watch_job(
        self, namespace: str, name: str, resource_version: str, seconds: int
    ) -> Generator[tuple[str, Obj], None, None]:
        """(event type, object) for Job ``name`` after ``resource_version``, for ``seconds``.

        The server ends the watch after ``seconds``; the caller opens the next one
        from the last resourceVersion it saw. Raises GoneError when that is too old.
        """
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        events = stream.stream(  # type: ignore[no-untyped-call]
            self._batch.list_namespaced_job,
            namespace,
            field_selector=f"metadata.name={name}",
            resource_version=resource_version,
            timeout_seconds=max(1, int(seconds)),
            allow_watch_bookmarks=True,
            # Not deserialize=False: kubernetes 37 then fails on ERROR events (410
            # Gone) with a KeyError. The dict is ``raw_object`` either way.
            _request_timeout=(CONNECT_TIMEOUT, seconds + READ_TIMEOUT),
        )
        with kube.translated(f"watch Job {namespace}/{name}"):
            try:
                for event in events:
                    yield str(event.get("type", "")), dict(event.get("raw_object") or {})
            except ValueError as exc:
                # An object the client's models cannot read (pydantic's ValidationError
                # is a ValueError): a server or proxy answering something else.
                raise ApiTemporaryError(f"watch Job {namespace}/{name}: {exc}") from exc
            finally:
                stream.stop()  # type: ignore[no-untyped-call]
                events.close()

    def delete_job(self, namespace: str, name: str) -> None:
        """Delete the Job and, in the background, its pods."""
        with kube.translated(f"delete Job {namespace}/{name}"):
            _json(
                self._batch.delete_namespaced_job(
                    name,
                    namespace,
                    propagation_policy="Background",
                    _preload_content=False,
                    _request_timeout=self._timeout,
                )
            )

    def list_pods(self, namespace: str, label_selector: str) -> list[Obj]:
        with kube.translated(f"list pods {namespace} {label_selector}"):
            listing = _json(
                self._core.list_namespaced_pod(
                    namespace,
                    label_selector=label_selector,
                    _preload_content=False,
                    _request_timeout=self._timeout,
                )
            )
        return [item for item in listing.get("items") or [] if isinstance(item, dict)]

    def read_log(self, namespace: str, pod: str, container: str, limit: int) -> tuple[bytes, int]:
        """The first ``limit`` bytes of a container's log and how many bytes followed.

        The rest is read and counted, not kept, like the local runner's drain; the
        kubelet's log rotation bounds it.
        """
        kept = bytearray()
        dropped = 0
        with kube.translated(f"read log of pod {namespace}/{pod}"):
            # Typed as the text it returns when preloaded; this is the raw response.
            response: Any = self._core.read_namespaced_pod_log(
                pod,
                namespace,
                container=container,
                _preload_content=False,
                _request_timeout=self._timeout,
            )
            try:
                for chunk in response.stream(_CHUNK):
                    room = limit - len(kept)
                    if room > 0:
                        kept += chunk[:room]
                    dropped += max(0, len(chunk) - max(room, 0))
            finally:
                response.release_conn()
        return bytes(kept), dropped

    def close(self) -> None:
        kube.close(self.api_client)
