"""Celery adapters: take an id, load, decide with ``core``, claim, send, record.

``notifier.deliver(delivery_id)``: one run's result to one Sink. The delivery is
claimed (a compare-and-set committed before anything is sent), sent through the
Sink type's ``send`` behind the Sink's circuit breaker, and the answer recorded
with a compare-and-set on that claim. A message for a delivery that is finished, or
claimed by a live worker, does nothing; a temporary failure is retried by this task
with a countdown (``retry_in``), honouring the Sink's Retry-After.

``notifier.alert_resolved(alert_id)``: for each Sink that left something on the
alert (a Slack thread, a silence), update or undo it (``Sink.resolve``), claimed
and recorded the same way on ``alert_sink_states``.

``notifier.approval_decided(approval_id)``: edit each delivered message that asked
for the approval (``Sink.update``: Slack ``chat.update``) to show the decision
instead of the buttons. A request still on its way is edited after its record,
which queues this task when it finds the approval decided (``store.follow_ups``),
as it queues ``notifier.alert_resolved`` for an alert that resolved meanwhile.

Every transaction is a unit of work (``shared.units``): what it writes to the
outbox is published after it commits.

Tasks are bound to the app in ``register(app)`` rather than with ``shared_task``,
as in the engine: tests build several apps in one process.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import pybreaker
from celery import Celery, Task

from services.notifier import approvals, rendering, resolutions, store
from services.notifier import metrics as notifier_metrics
from services.notifier.app import Runtime, runtime_for
from services.notifier.core import deliveries, messages
from services.notifier.core.deliveries import Claim, Outcome, Phase
from services.notifier.sinks import registries
from shared import logs, outbox, workers
from shared.db.models import utcnow
from shared.errors import PermanentError, TemporaryError
from shared.queueing import ALERT_RESOLVED, APPROVAL_DECIDED, DELIVER

log = logging.getLogger(__name__)

# Seconds a delivery waits for another delivery of the same alert to post the
# thread's parent before looking again.
PARENT_WAIT = 1.0


class NotifierTask(Task):  # type: ignore[misc]
    """Plumbing shared by the notifier's tasks: the runtime and late acks."""

    # Attempts are counted in the database (PF_NOTIFIER_MAX_ATTEMPTS), not by Celery.
    max_retries = None
    acks_late = True
    reject_on_worker_lost = True
    typing = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Bound for the whole task, retries included (see shared.logs).
        with logs.bound(task_id=self.request.id):
            return super().__call__(*args, **kwargs)

    @property
    def runtime(self) -> Runtime:
        return runtime_for(self.app)


def register(app: Celery) -> None:
    app.task(name=DELIVER, base=NotifierTask, bind=True)(deliver)
    app.task(name=ALERT_RESOLVED, base=NotifierTask, bind=True)(alert_resolved)
    app.task(name=APPROVAL_DECIDED, base=NotifierTask, bind=True)(approval_decided)


@dataclasses.dataclass(frozen=True)
class Step:
    """What a task does after one pass: nothing more, or run again in ``retry_in`` s."""

    retry_in: float | None = None


_DONE = Step()


def deliver(task: NotifierTask, delivery_id: str, run_id: str | None = None) -> None:
    """``run_id`` is for Flower and the logs (messages queued before it had none);
    the delivery's row says which run it is for."""
    with logs.bound(**({"run_id": run_id} if run_id else {})):
        step = deliver_once(task.runtime, delivery_id)
    if step.retry_in is not None:
        raise task.retry(countdown=step.retry_in, max_retries=None)


def alert_resolved(task: NotifierTask, alert_id: str) -> None:
    with logs.bound(alert_id=alert_id):
        step = on_alert_resolved(task.runtime, alert_id)
    if step.retry_in is not None:
        raise task.retry(countdown=step.retry_in, max_retries=None)


def approval_decided(task: NotifierTask, approval_id: str) -> None:
    step = on_approval_decided(task.runtime, approval_id, attempt=task.request.retries + 1)
    if step.retry_in is not None:
        raise task.retry(countdown=step.retry_in, max_retries=None)


def _secrets_for(runtime: Runtime, namespace: str) -> Callable[[Mapping[str, str]], str]:
    def read(ref: Mapping[str, str]) -> str:
        return runtime.secrets.get(namespace, ref["name"], ref["key"])

    return read


def _classified(sink: registries.Sink, call: Callable[[], Any]) -> Callable[[], Any]:
    """``call`` with every failure turned into the Sink's Permanent/TemporaryError."""

    def run() -> Any:
        try:
            return call()
        except Exception as exc:
            try:
                classified = sink.classify(exc)
            except Exception as bug:  # a classify bug must not hide the real error
                log.exception("sink classify raised", extra={"sink_type": sink.type})
                raise TemporaryError(f"{type(exc).__name__}: {exc}") from bug
            if classified is exc:
                raise
            raise classified from exc

    return run


# -- deliver ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Claimed:
    """A delivery claimed for one attempt, with what to send."""

    loaded: store.Loaded
    target: registries.Target
    sink: registries.Sink
    payload: Any
    state: registries.AlertState | None


def deliver_once(runtime: Runtime, delivery_id: str) -> Step:
    """One pass of ``notifier.deliver``; plain function so tests can call it directly."""
    with logs.bound(delivery_id=delivery_id):
        return _deliver_once(runtime, delivery_id)


def _deliver_once(runtime: Runtime, delivery_id: str) -> Step:
    extra: dict[str, Any] = {"delivery_id": delivery_id}
    try:
        key = uuid.UUID(delivery_id)
    except ValueError:
        log.error("deliver: not a delivery id", extra=extra)
        return _DONE
    me = workers.worker_id()
    with runtime.units.begin() as unit:
        claimed = _claim(runtime, unit.session, key, me, extra)
    if isinstance(claimed, Step):
        return claimed
    loaded, target, sink = claimed.loaded, claimed.target, claimed.sink
    settings = runtime.settings.notifier
    attempt = loaded.attempts + 1
    ctx = registries.SendContext(
        delivery_id=delivery_id,
        run_id=str(loaded.run_id),
        alert_id=loaded.alert.id if loaded.alert is not None else None,
        attempt=attempt,
        created_at=loaded.created_at.timestamp(),
        target=target,
        state=claimed.state,
        alert_resolved=loaded.alert is not None and loaded.alert.status == messages.RESOLVED,
        secret=_secrets_for(runtime, target.namespace),
        http=runtime.http,
        settings=settings,
    )
    started = time.monotonic()
    outcome, new_state = _send(runtime, sink, claimed.payload, ctx)
    sent_in = time.monotonic() - started
    decision = deliveries.after(
        outcome, attempt=attempt, max_attempts=settings.max_attempts, backoff=runtime.backoff
    )
    with runtime.units.begin() as unit:
        session = unit.session
        delivered = decision.phase is Phase.DELIVERED
        if delivered:
            store.lock_for_follow_ups(session, loaded)
        recorded = store.record(
            session,
            loaded,
            worker=me,
            attempt=attempt,
            decision=decision,
            reference=outcome.reference,
            state=new_state,
            threaded=sink.threaded(target),
            tells_humans=sink.tells_humans,
            now=utcnow(),
        )
        if recorded and delivered:
            # What happened while the message was on its way (a resolution, a
            # decision) and found nothing to edit yet.
            unit.publish_after_commit(
                outbox.add(
                    session,
                    store.follow_ups(session, loaded),
                    runtime.settings.outbox.lease_seconds,
                )
            )
    log.info(
        "delivery attempt finished",
        extra={
            **extra,
            "type": target.type,
            "attempt": attempt,
            "phase": decision.phase,
            "error": decision.error,
            "retry_in": decision.retry_in,
            "recorded": recorded,
            "seconds": round(time.monotonic() - started, 4),
        },
    )
    if not recorded:
        # A recovery pass took the delivery over (our lease ran out); it goes on.
        log.warning("deliver: lost the claim; result discarded", extra=extra)
        return _DONE
    notifier_metrics.metrics().send_duration.labels(target.type).observe(sent_in)
    notifier_metrics.delivery_finished(target.type, decision.phase)
    return Step(decision.retry_in) if decision.phase is Phase.PENDING else _DONE


def _claim(
    runtime: Runtime, session: Any, key: uuid.UUID, me: str, extra: dict[str, Any]
) -> _Claimed | Step:
    """Load, decide, and claim in one transaction; a Step when there is nothing to send."""
    now = utcnow()
    loaded = store.load(session, key)
    if loaded is None:
        log.warning("deliver: no such delivery", extra=extra)
        return _DONE
    extra.update(sink=loaded.sink_name, run_id=str(loaded.run_id))
    # Every line from here to the task's end (the Sink's own included) says which
    # run and alert it is about (deliver_once's bound block ends them).
    logs.bind(run_id=str(loaded.run_id), sink=loaded.sink_name)
    if loaded.alert is not None:
        logs.bind(alert_id=loaded.alert.id)
    claim = deliveries.may_claim(
        loaded.phase,
        loaded.worker,
        loaded.lease_until,
        loaded.next_attempt_at,
        now,
        owner_dead=workers.is_dead(loaded.worker or ""),
    )
    if claim is not Claim.SEND:
        log.info("deliver: nothing to do", extra={**extra, "claim": claim.value})
        return _DONE
    prepared = _prepare(runtime, loaded)
    if isinstance(prepared, tuple):
        phase, error = prepared
        if store.finish_unsent(session, loaded, phase, error, now):
            log.info("delivery finished unsent", extra={**extra, "phase": phase, "error": error})
            # Counted before the caller commits: if that commit fails, the task
            # fails (and is counted so) and a later message finishes it again.
            sink_type = loaded.target.type if loaded.target is not None else "unknown"
            notifier_metrics.delivery_finished(sink_type, phase)
        return _DONE
    target, sink, payload = prepared.target, prepared.sink, prepared.payload
    breaker_key = f"{target.namespace}/{target.name}"
    held = runtime.breakers.hold(breaker_key)
    if held is not None:
        reason = f"circuit breaker open for Sink {breaker_key}; next try in {held:.0f}s"
        return _hold(session, loaded, reason, held, extra)
    state = None
    if loaded.alert is not None:
        alert_id = uuid.UUID(loaded.alert.id)
        if sink.threaded(target):
            state = store.claim_thread(session, alert_id, target, loaded.id, now)
            if state is None:
                reason = "waiting for another delivery to post the alert's first message"
                return _hold(session, loaded, reason, PARENT_WAIT, extra)
        else:
            state = store.alert_state(session, alert_id, target.name)
    if not store.claim(session, loaded, me, now, runtime.settings.notifier.lease_seconds):
        log.info("deliver: claimed by another message", extra=extra)
        return _DONE
    return _Claimed(loaded, target, sink, payload, state)


@dataclasses.dataclass(frozen=True)
class _Prepared:
    target: registries.Target
    sink: registries.Sink
    payload: Any


def _prepare(runtime: Runtime, loaded: store.Loaded) -> _Prepared | tuple[Phase, str]:
    """The Sink and its rendered payload, or (Skipped | Failed, why) when not to send."""
    target = loaded.target
    if target is None:
        return Phase.FAILED, f"no Sink {loaded.run.namespace}/{loaded.sink_name}"
    try:
        sink = runtime.registry.get(target.type)
    except registries.SinkNotAvailableError as exc:
        return Phase.FAILED, str(exc)
    ignored = sink.ignores(target, loaded.event)
    if ignored is not None:
        return Phase.SKIPPED, ignored
    message = messages.namespace(
        loaded.run,
        loaded.alert,
        sink_name=target.name,
        sink_type=target.type,
        public_url=runtime.public_url,
    )
    try:
        if target.condition and not rendering.evaluate(
            target.condition, message, where=target.where("condition")
        ):
            return Phase.SKIPPED, f"condition {target.condition!r} is false"
        return _Prepared(target, sink, sink.render(target, message))
    except PermanentError as exc:
        return Phase.FAILED, str(exc)


def _send(
    runtime: Runtime, sink: registries.Sink, payload: Any, ctx: registries.SendContext
) -> tuple[Outcome, Mapping[str, Any]]:
    breaker_key = f"{ctx.target.namespace}/{ctx.target.name}"
    breaker = runtime.breakers.get(breaker_key)
    try:
        sent: registries.Sent = breaker.call(_classified(sink, lambda: sink.send(payload, ctx)))
    except pybreaker.CircuitBreakerError:
        wait = runtime.breakers.hold(breaker_key) or runtime.settings.notifier.breaker_reset_seconds
        error = f"circuit breaker open for Sink {breaker_key}"
        return Outcome(ok=False, error=error, held=True, retry_after=wait), {}
    except TemporaryError as exc:
        return Outcome(ok=False, error=str(exc), temporary=True, retry_after=exc.delay or None), {}
    except PermanentError as exc:
        return Outcome(ok=False, error=str(exc)), {}
    return Outcome(ok=True, reference=dict(sent.reference)), dict(sent.state)


def _hold(
    session: Any, loaded: store.Loaded, reason: str, seconds: float, extra: Mapping[str, Any]
) -> Step:
    now = utcnow()
    until = now + dt.timedelta(seconds=seconds)
    if not store.hold(session, loaded, reason, until, now):
        return _DONE
    log.info("delivery waits", extra={**extra, "reason": reason, "seconds": seconds})
    return Step(seconds)


# -- alert resolved --------------------------------------------------------------


def on_alert_resolved(runtime: Runtime, alert_id: str) -> Step:
    """The notifier's side of an alert's resolution, one pass (``notifier.alert_resolved``):
    for every Sink that left something on the alert, edit the Slack parent and reply
    in its thread, expire the AlertManager silence."""
    extra: dict[str, Any] = {"alert_id": alert_id}
    try:
        key = uuid.UUID(alert_id)
    except ValueError:
        log.error("alert_resolved: not an alert id", extra=extra)
        return _DONE
    with runtime.units.begin() as unit:
        alert, items = resolutions.unfinished(unit.session, key)
    if alert is None:
        log.warning("alert_resolved: no such alert", extra=extra)
        return _DONE
    if alert.status != messages.RESOLVED:
        log.warning("alert_resolved: the alert is not resolved", extra=extra)
        return _DONE
    waits = [wait for item in items if (wait := _resolve_one(runtime, alert, item)) is not None]
    return Step(min(waits)) if waits else _DONE


def _resolve_one(
    runtime: Runtime, alert: messages.AlertFacts, item: resolutions.Resolution
) -> float | None:
    """Resolve one Sink state; seconds to wait before another pass, or None when done."""
    extra = {"alert_id": alert.id, "sink": item.sink_name}
    settings = runtime.settings.notifier
    me = workers.worker_id()
    now = utcnow()
    live = item.lease_until is not None and item.lease_until > now
    if item.worker and live and not workers.is_dead(item.worker):
        return None  # a live worker is on it
    if item.parent_in_flight:
        return PARENT_WAIT
    with runtime.units.begin() as unit:
        session = unit.session
        target = store.target_of(session, item.sink_namespace, item.sink_name)
        try:
            sink = runtime.registry.get(target.type) if target is not None else None
        except registries.SinkNotAvailableError:
            sink = None
        if not resolutions.claim(session, item, me, now, settings.lease_seconds):
            return None
    attempt = item.attempts + 1
    if target is None or sink is None:
        error = f"Sink {item.sink_namespace}/{item.sink_name} is gone or not available"
        _record_resolution(runtime, item, me, attempt, progress={}, error=error, done=True)
        return None
    ctx = registries.ResolveContext(
        alert_id=alert.id,
        alert={
            "name": alert.alert_name,
            "status": alert.status,
            "resolvedAt": alert.resolved_at.isoformat() if alert.resolved_at else None,
            "autoResolved": alert.auto_resolved,
            "labels": dict(alert.labels),
        },
        target=target,
        state=item.state,
        progress=item.progress,
        attempt=attempt,
        secret=_secrets_for(runtime, target.namespace),
        http=runtime.http,
        settings=settings,
    )
    breaker_key = f"{target.namespace}/{target.name}"
    try:
        progress = runtime.breakers.get(breaker_key).call(
            _classified(sink, lambda: sink.resolve(ctx))
        )
    except (pybreaker.CircuitBreakerError, TemporaryError) as exc:
        delay = getattr(exc, "delay", 0.0) or runtime.backoff.delay(attempt)
        done = attempt >= settings.max_attempts
        _record_resolution(runtime, item, me, attempt, progress={}, error=str(exc), done=done)
        log.warning("alert resolution failed", extra={**extra, "error": str(exc), "final": done})
        return None if done else delay
    except PermanentError as exc:
        _record_resolution(runtime, item, me, attempt, progress={}, error=str(exc), done=True)
        log.warning("alert resolution failed", extra={**extra, "error": str(exc), "final": True})
        return None
    _record_resolution(runtime, item, me, attempt, progress=dict(progress), error=None, done=True)
    log.info("alert resolution done", extra={**extra, "progress": dict(progress)})
    return None


def _record_resolution(
    runtime: Runtime,
    item: resolutions.Resolution,
    me: str,
    attempt: int,
    *,
    progress: Mapping[str, Any],
    error: str | None,
    done: bool,
) -> None:
    with runtime.units.begin() as unit:
        resolutions.record(
            unit.session,
            item,
            worker=me,
            attempt=attempt,
            progress=progress,
            error=error,
            done=done,
            now=utcnow(),
        )


# -- approval decided --------------------------------------------------------------


def on_approval_decided(runtime: Runtime, approval_id: str, *, attempt: int = 1) -> Step:
    """Edit every message that asked for the approval to show the decision, one pass
    (``notifier.approval_decided``).

    A message still on its way is left to its own record, which sends this task
    again when it finds the approval decided (``store.follow_ups``). The edit is
    idempotent, so a duplicate message or a retry edits to the same thing again.
    """
    extra: dict[str, Any] = {"approval_id": approval_id}
    try:
        key = uuid.UUID(approval_id)
    except ValueError:
        log.error("approval_decided: not an approval id", extra=extra)
        return _DONE
    with runtime.units.begin() as unit:
        status, asked = approvals.approval_requests(unit.session, key)
    if status is None or status == "pending":
        log.warning("approval_decided: not decided", extra={**extra, "status": status})
        return _DONE
    waits = []
    for item in asked:
        if item.phase != Phase.DELIVERED or item.reference.get("decisionShown") == status:
            continue
        wait = _show_decision(runtime, item, status, attempt, {**extra, "sink": item.sink_name})
        if wait is not None:
            waits.append(wait)
    return Step(min(waits)) if waits else _DONE


def _show_decision(
    runtime: Runtime, item: approvals.Asked, status: str, attempt: int, extra: dict[str, Any]
) -> float | None:
    """Re-render one delivered request with the decision and edit the message; seconds
    to wait before another pass, or None when done (or given up)."""
    settings = runtime.settings.notifier
    with runtime.units.begin() as unit:
        loaded = store.load(unit.session, item.id)
    if loaded is None or loaded.target is None:
        return None
    target = loaded.target
    try:
        sink = runtime.registry.get(target.type)
        message = messages.namespace(
            loaded.run,
            loaded.alert,
            sink_name=target.name,
            sink_type=target.type,
            public_url=runtime.public_url,
        )
        payload = sink.render(target, message)
    except PermanentError as exc:
        log.warning("approval decision not shown", extra={**extra, "error": str(exc)})
        return None
    ctx = registries.UpdateContext(
        delivery_id=str(item.id),
        alert_id=loaded.alert.id if loaded.alert is not None else None,
        target=target,
        reference=item.reference,
        secret=_secrets_for(runtime, target.namespace),
        http=runtime.http,
        settings=settings,
    )
    breaker_key = f"{target.namespace}/{target.name}"
    try:
        updated = runtime.breakers.get(breaker_key).call(
            _classified(sink, lambda: sink.update(payload, ctx))
        )
    except (pybreaker.CircuitBreakerError, TemporaryError) as exc:
        final = attempt >= settings.max_attempts
        log.warning(
            "approval decision not shown", extra={**extra, "error": str(exc), "final": final}
        )
        return None if final else (getattr(exc, "delay", 0.0) or runtime.backoff.delay(attempt))
    except PermanentError as exc:
        log.warning("approval decision not shown", extra={**extra, "error": str(exc)})
        return None
    if updated is None:
        return None  # this type cannot edit what it sent
    with runtime.units.begin() as unit:
        approvals.decision_shown(unit.session, item, status, updated, utcnow())
    log.info("approval decision shown", extra={**extra, "status": status})
    return None
