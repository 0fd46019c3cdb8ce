"""What the agent's tools read from (and, for ``remediate``, change in) the Kubernetes API.

One generic client over the ``kubernetes`` library's ApiClient: a table maps each
kind the tools know to its API path, and every request goes through the library's
own serialization and authentication (in-cluster token, kubeconfig credentials). Objects
come back as plain dicts (the API's JSON). Configuration and the translation of
library failures are shared (``shared.kube``): one loader, one error
tree, so a 403 here is the same ``ApiPermanentError`` the Job runner sees.

What this module must not do: decide. Allowlists, RBAC reporting and the remediation
policy belong to the tools; this only speaks HTTP to the API server. Nothing a model
wrote reaches a shell: names go into URL paths (quoted) and query parameters.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

from shared.errors import PermanentError

Obj = dict[str, Any]
# Seconds to connect and to read; the tools' own deadline may shorten the read.
TIMEOUT = (5.0, 20.0)
# A log read never brings more than this much over the wire (the API's limitBytes).
LOG_LIMIT_BYTES = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class KindInfo:
    group_path: str  # "/api/v1" or "/apis/apps/v1"
    plural: str
    namespaced: bool = True


KINDS: Mapping[str, KindInfo] = {
    "pod": KindInfo("/api/v1", "pods"),
    "service": KindInfo("/api/v1", "services"),
    "endpoints": KindInfo("/api/v1", "endpoints"),
    "event": KindInfo("/api/v1", "events"),
    "node": KindInfo("/api/v1", "nodes", namespaced=False),
    "namespace": KindInfo("/api/v1", "namespaces", namespaced=False),
    "deployment": KindInfo("/apis/apps/v1", "deployments"),
    "replicaset": KindInfo("/apis/apps/v1", "replicasets"),
    "statefulset": KindInfo("/apis/apps/v1", "statefulsets"),
    "daemonset": KindInfo("/apis/apps/v1", "daemonsets"),
}
METRICS = "/apis/metrics.k8s.io/v1beta1"


class NoClusterError(PermanentError):
    """No Kubernetes configuration: not in a cluster and no kubeconfig."""


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def path(kind: str, namespace: str | None, name: str | None = None, group: str = "") -> str:
    info = KINDS[kind]
    base = group or info.group_path
    parts = [base]
    if info.namespaced and namespace:
        parts.append(f"namespaces/{_segment(namespace)}")
    parts.append(info.plural)
    if name:
        parts.append(_segment(name))
    return "/".join(parts)


class KubeApi:
    """Plain-dict access to the objects the tools know; raises only ``kube`` errors."""

    def __init__(self, api_client: Any, timeout: tuple[float, float] = TIMEOUT) -> None:
        self.api_client = api_client
        self.timeout = timeout

    @classmethod
    def connect(cls, api_url: str = "") -> KubeApi:
        from shared import kube

        try:
            client = kube.api_client(api_url)
        except kube.KubeConfigError as exc:
            raise NoClusterError(
                "no Kubernetes cluster configured: not running in a cluster and no kubeconfig "
                f"(set KUBECONFIG, or runtime.tools.kubernetesApiUrl): {exc}"
            ) from exc
        return cls(client)

    def _request(
        self,
        method: str,
        resource_path: str,
        what: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "",
        raw: bool = False,
        timeout: float | None = None,
    ) -> Any:
        from kubernetes.client.exceptions import ApiException

        from shared import kube

        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        params = [
            (k, str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in (query or {}).items()
            if v is not None
        ]
        read_timeout = min(self.timeout[1], timeout) if timeout else self.timeout[1]
        with kube.translated(what):
            method_, url, header_params, serialized, post = self.api_client.param_serialize(
                method=method,
                resource_path=resource_path,
                query_params=params,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api_client.call_api(
                method_,
                url,
                header_params=header_params,
                body=serialized,
                post_params=post,
                _request_timeout=(self.timeout[0], max(0.1, read_timeout)),
            )
            data = response.read()
            if not 200 <= response.status < 300:
                text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else ""
                raise ApiException(status=response.status, reason=response.reason, body=text)
        if raw:
            return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else str(data)
        try:
            parsed = json.loads(data or b"{}")
        except ValueError as exc:
            raise kube.ApiTemporaryError(
                f"{what}: the API answered something else than JSON"
            ) from exc
        if not isinstance(parsed, dict):
            raise kube.ApiTemporaryError(f"{what}: unexpected answer {str(parsed)[:100]}")
        return parsed

    def get(
        self, kind: str, namespace: str | None, name: str, *, timeout: float | None = None
    ) -> Obj:
        where = f"{namespace}/{name}" if KINDS[kind].namespaced else name
        return dict(
            self._request(
                "GET", path(kind, namespace, name), f"get {kind} {where}", timeout=timeout
            )
        )

    def list_of(
        self,
        kind: str,
        namespace: str | None,
        *,
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 500,
        timeout: float | None = None,
    ) -> list[Obj]:
        """Objects of ``kind`` in ``namespace`` (every namespace when None)."""
        listing = self._request(
            "GET",
            path(kind, namespace),
            f"list {kind} in {namespace or 'all namespaces'}",
            query={
                "labelSelector": label_selector or None,
                "fieldSelector": field_selector or None,
                "limit": limit,
            },
            timeout=timeout,
        )
        return [item for item in listing.get("items") or [] if isinstance(item, dict)]

    def pod_log(
        self,
        namespace: str,
        name: str,
        *,
        container: str = "",
        previous: bool = False,
        tail_lines: int | None = None,
        timeout: float | None = None,
    ) -> str:
        which = "previous log" if previous else "log"
        text: str = self._request(
            "GET",
            path("pod", namespace, name) + "/log",
            f"read {which} of pod {namespace}/{name}"
            + (f" container {container}" if container else ""),
            query={
                "container": container or None,
                "previous": previous or None,
                "tailLines": tail_lines,
                "limitBytes": LOG_LIMIT_BYTES,
            },
            raw=True,
            timeout=timeout,
        )
        return text

    def metrics(
        self, kind: str, namespace: str | None, name: str = "", *, timeout: float | None = None
    ) -> list[Obj]:
        """metrics.k8s.io usage for pods or nodes (what ``kubectl top`` shows)."""
        plural = "pods" if kind == "pod" else "nodes"
        parts = [METRICS]
        if plural == "pods" and namespace:
            parts.append(f"namespaces/{_segment(namespace)}")
        parts.append(plural)
        if name:
            parts.append(_segment(name))
        answer = self._request("GET", "/".join(parts), f"read {plural} metrics", timeout=timeout)
        if name:
            return [answer]
        return [item for item in answer.get("items") or [] if isinstance(item, dict)]

    def patch(
        self, kind: str, namespace: str | None, name: str, body: Obj, *, subresource: str = ""
    ) -> Obj:
        target = path(kind, namespace, name) + (f"/{subresource}" if subresource else "")
        return dict(
            self._request(
                "PATCH",
                target,
                f"patch {kind} {name}" + (f"/{subresource}" if subresource else ""),
                body=body,
                content_type="application/merge-patch+json",
            )
        )

    def delete(self, kind: str, namespace: str | None, name: str) -> Obj:
        return dict(self._request("DELETE", path(kind, namespace, name), f"delete {kind} {name}"))

    def close(self) -> None:
        from shared import kube

        kube.close(self.api_client)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
