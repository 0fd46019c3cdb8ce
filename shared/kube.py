"""The one way this project reaches the Kubernetes API through the ``kubernetes`` client.

Exceptions (all ours; the library's cause is chained with ``from``)::

    PunchingFistError
    └── KubeError                  anything about the Kubernetes API or reaching it
        ├── KubeConfigError        no configuration: not in a cluster, no kubeconfig
        │                          (also a ConfigError: the process stops with it)
        ├── ApiPermanentError      a 4xx the same request will get again (403, 422, ...)
        │   │                      (also a PermanentError)
        │   ├── NotFoundError      404
        │   └── ConflictError      409: already exists, or changed meanwhile
        └── ApiTemporaryError      5xx, 429, 408, connection and timeout errors
            │                      (also a TemporaryError, with the server's Retry-After)
            └── GoneError          410: a watch's resourceVersion is too old; re-read

Why it exists: the Secret reader, the controller's Secret checks and the engine's Job
runner each loaded the client's configuration their own way (one of them into the
library's process-wide default) and each translated ``ApiException`` and urllib3's
errors their own way. Here: ``api_client`` (an explicit host for tests and
``kubectl proxy``, else the pod's service account, else the kubeconfig),
``translated`` (library exceptions out, ours in), ``close``.

What it must not do: change the library's global default configuration (kopf logs
in through it on its own); import the client at import time (it is about a third of
a worker's start-up, and most processes never need it; the client is imported on the
first call); retry, wait or decide (callers do: the runner's backoff, the secrets
cache); know any kind of resource.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from shared.errors import ConfigError, PermanentError, PunchingFistError, TemporaryError

if TYPE_CHECKING:
    from kubernetes import client

log = logging.getLogger(__name__)

# Statuses worth retrying although they are 4xx.
_TEMPORARY_4XX = frozenset({408, 429})
# Longest API error message kept from a response body that is not a Status.
_MESSAGE_LIMIT = 500


class KubeError(PunchingFistError):
    """The Kubernetes API could not be used for a request."""


class KubeConfigError(KubeError, ConfigError):
    """Neither an explicit host, nor an in-cluster service account, nor a kubeconfig."""


class ApiPermanentError(KubeError, PermanentError):
    """The API refused the request and will refuse it again."""

    def __init__(self, message: str, status: int, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class NotFoundError(ApiPermanentError):
    """404: the object is not there (any more)."""


class ConflictError(ApiPermanentError):
    """409: the object already exists (or changed meanwhile)."""


class ApiTemporaryError(KubeError, TemporaryError):
    """The API (or the way to it) failed; the same request may work later.

    ``status`` is the HTTP status, 0 when no response came (connection, TLS, timeout).
    """

    def __init__(self, message: str, delay: float = 1.0, status: int = 0) -> None:
        super().__init__(message, delay=delay)
        self.status = status


class GoneError(ApiTemporaryError):
    """410: the watch's resourceVersion expired; read the object again."""


def may_be_configured(host: str = "") -> bool:
    """Whether ``api_client`` could find a configuration, checked without the client.

    The same places it looks: ``host``, the in-cluster service environment, and the
    kubeconfig files ($KUBECONFIG, else ~/.kube/config).
    """
    if host or os.environ.get("KUBERNETES_SERVICE_HOST"):
        return True
    kubeconfig = os.environ.get("KUBECONFIG") or "~/.kube/config"
    return any(
        os.path.exists(os.path.expanduser(path)) for path in kubeconfig.split(os.pathsep) if path
    )


def api_client(host: str = "", *, retries: int | None = None) -> client.ApiClient:
    """An ApiClient for ``host``, else the pod's service account, else the kubeconfig.

    ``host`` (tests, ``kubectl proxy``) gets no credentials. ``retries`` replaces
    urllib3's default retries of a failed connection. Raises KubeConfigError when no
    configuration is found. The library's global default is neither read nor written.
    """
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    if host:
        configuration.host = host.rstrip("/")
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except ConfigException as not_in_cluster:
            try:
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration, persist_config=False
                )
            except (ConfigException, OSError) as exc:
                raise KubeConfigError(
                    "no Kubernetes configuration: not in a cluster "
                    f"({not_in_cluster}) and no usable kubeconfig ({exc})"
                ) from exc
    if retries is not None:
        configuration.retries = retries
    return client.ApiClient(configuration)


def close(api: client.ApiClient) -> None:
    """Close ``api`` and its pooled connections (``ApiClient.close`` leaves them open)."""
    api.close()  # type: ignore[no-untyped-call]
    api.rest_client.pool_manager.clear()


def _api_message(exc: Any) -> str:
    """The Status message the API server put in the body, else the HTTP reason."""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if isinstance(body, str) and body:
        try:
            status = json.loads(body)
        except ValueError:
            return body.strip()[:_MESSAGE_LIMIT]
        if isinstance(status, dict) and status.get("message"):
            return str(status["message"])
    return str(exc.reason or "")


def _retry_after(exc: Any) -> float:
    headers = exc.headers or {}
    try:
        return max(0.0, float(headers.get("Retry-After", 1)))
    except (TypeError, ValueError):
        return 1.0


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn the client's exceptions raised inside into ours; ``what`` names the request.

    The message is ``what: <status> <reason>: <the API's message>``, or ``what:
    cannot reach the Kubernetes API: <cause>`` when no response came.
    """
    import urllib3
    from kubernetes.client.exceptions import ApiException

    try:
        yield
    except ApiException as exc:
        status = int(exc.status or 0)
        message = f"{what}: {status} {exc.reason or ''}".rstrip()
        detail = _api_message(exc)
        if detail and detail != exc.reason:
            message += f": {detail}"
        if status == 0 or status >= 500 or status in _TEMPORARY_4XX:
            # 0: the client failed before a response (TLS, a broken stream).
            raise ApiTemporaryError(message, delay=_retry_after(exc), status=status) from exc
        if status == 410:
            raise GoneError(message, delay=0, status=status) from exc
        kind = {404: NotFoundError, 409: ConflictError}.get(status, ApiPermanentError)
        raise kind(message, status, str(exc.reason or "")) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ApiTemporaryError(f"{what}: cannot reach the Kubernetes API: {exc}") from exc
