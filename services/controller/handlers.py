"""kopf handlers: the adapter between Kubernetes events and the Reconciler.

For each kind, one handler runs on resume, create and update (validate, store,
report status), a delete handler removes the stored spec (kopf puts a finalizer on
the object, so a deletion while the controller is down is still seen), and a timer
refreshes the status from the database (counters, references that appeared
later). Handlers patch ``status`` only: kopf's own bookkeeping lives in annotations
under ``punchingfist.io/`` because the structural status schema would prune it.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
import sqlalchemy as sa

from services.controller import store
from services.controller.reconciler import Reconciler
from shared.resources import status as status_module
from shared.resources.schemas import GROUP, KINDS, VERSION, Kind
from shared.settings import ControllerSettings

log = logging.getLogger(__name__)

FINALIZER = f"{GROUP}/controller"
# Seconds before a failed handler runs again (database down, API hiccup).
RETRY_BACKOFF = 5.0


def operator_settings(
    config: ControllerSettings, priority: int, *, standalone: bool = False
) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.enabled = config.post_events
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = config.watch_timeout
    # The client gives up a little after the server should have closed the watch.
    settings.watching.client_timeout = config.watch_timeout + 10
    settings.peering.name = config.peering
    settings.peering.priority = priority
    settings.peering.lifetime = config.peering_lifetime
    # Without the peering object a replica would run unaware of the others: wait.
    settings.peering.standalone = standalone
    settings.peering.mandatory = not standalone
    settings.peering.clusterwide = not config.namespaces
    return settings


def _kind_handlers(
    registry: kopf.OperatorRegistry, kind: Kind, reconciler: Reconciler, interval: float
) -> None:
    def apply(body: kopf.Body, patch: kopf.Patch) -> None:
        meta = body.metadata
        try:
            outcome = reconciler.apply(
                kind.name,
                meta.namespace or "default",
                meta.name or "",
                dict(body.spec),
                generation=int(meta.get("generation") or 1),
                origin=store.KUBERNETES,
                previous_status=dict(body.status),
            )
        except sa.exc.OperationalError as exc:
            raise kopf.TemporaryError(f"database unavailable: {exc}", delay=RETRY_BACKOFF) from exc
        if status_module.changed(outcome.status, dict(body.status)):
            patch.status.update(outcome.status)

    def reconcile(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        apply(body, patch)

    def refresh(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        apply(body, patch)

    def remove(body: kopf.Body, **_: Any) -> None:
        try:
            reconciler.remove(
                kind.name, body.metadata.namespace or "default", body.metadata.name or ""
            )
        except sa.exc.OperationalError as exc:
            raise kopf.TemporaryError(f"database unavailable: {exc}", delay=RETRY_BACKOFF) from exc

    where: dict[str, Any] = {"registry": registry}
    common: dict[str, Any] = {"errors": kopf.ErrorsMode.TEMPORARY, "backoff": RETRY_BACKOFF}
    resource = (GROUP, VERSION, kind.plural)
    prefix = kind.singular
    kopf.on.resume(*resource, id=f"{prefix}-reconcile", **where, **common)(reconcile)
    kopf.on.create(*resource, id=f"{prefix}-reconcile", **where, **common)(reconcile)
    kopf.on.update(*resource, id=f"{prefix}-reconcile", field="spec", **where, **common)(reconcile)
    kopf.on.delete(*resource, id=f"{prefix}-remove", **where, **common)(remove)
    kopf.timer(
        *resource, id=f"{prefix}-refresh", interval=interval, initial_delay=interval, **where
    )(refresh)


def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # The official client's discovery: in-cluster service account, else $KUBECONFIG;
    # the secret checks use the same client, so both see the same cluster.
    return kopf.login_via_client(**kwargs)


def build_registry(reconciler: Reconciler, config: ControllerSettings) -> kopf.OperatorRegistry:
    """A fresh registry with the login and every kind's handlers."""
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry, errors=kopf.ErrorsMode.PERMANENT)(_login)
    for kind in KINDS:
        _kind_handlers(registry, kind, reconciler, config.status_interval)
    return registry
