"""Tables shared by every deployable.

The schema follows the seed (alerts, workflow runs, source events) plus what a
correct design needs: the stored custom resources that the controller writes and the
services read, an outbox that makes "record, then enqueue" atomic, step records and
sink deliveries. JSON columns are JSONB on PostgreSQL and JSON text on SQLite.
Changing anything here needs an Alembic revision (``make migration``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on both backends (SQLite drops the offset when storing)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware UTC datetime")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


Timestamp = UTCDateTime()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Resource(Base):
    """A Source, Workflow or Sink as last written by the controller (or the file loader)."""

    __tablename__ = "resources"
    __table_args__ = (sa.UniqueConstraint("kind", "namespace", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    namespace: Mapped[str] = mapped_column(sa.String(253))
    name: Mapped[str] = mapped_column(sa.String(253))
    # Normalized spec (defaults applied) that passed validation.
    spec: Mapped[dict[str, Any]] = mapped_column(JSONType)
    generation: Mapped[int] = mapped_column(default=1)
    # Where it came from: "kubernetes" or a file path.
    origin: Mapped[str] = mapped_column(sa.String(1024), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


class SourceEvent(Base):
    """One request received by a Source, accepted or not."""

    __tablename__ = "source_events"
    __table_args__ = (
        sa.Index(None, "source_name", "received_at"),
        # The retention pass deletes by age across Sources.
        sa.Index(None, "received_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    source_name: Mapped[str] = mapped_column(sa.String(253))
    source_namespace: Mapped[str] = mapped_column(sa.String(253), default="default")
    source_type: Mapped[str] = mapped_column(sa.String(32))
    event_data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    workflow_triggered: Mapped[str | None] = mapped_column(sa.String(253))
    alerts_received: Mapped[int] = mapped_column(default=0)
    alerts_filtered: Mapped[int] = mapped_column(default=0)
    alerts_deduplicated: Mapped[int] = mapped_column(default=0)
    workflows_started: Mapped[int] = mapped_column(default=0)
    workflows_rate_limited: Mapped[int] = mapped_column(default=0)
    received_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    # Alerts of the request that could not be recorded (the others were), and why:
    # [{index, field, code, reason}], at most shared.domain.webhooks.MAX_REFUSAL_DETAILS.
    alerts_refused: Mapped[int] = mapped_column(default=0, server_default=sa.text("0"))
    refusals: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    # Alerts AlertManager left out of the group (its max_alerts; the body's
    # truncatedAlerts): never seen here, so an operator must learn of them.
    alerts_truncated: Mapped[int] = mapped_column(default=0, server_default=sa.text("0"))


class Alert(Base):
    """One occurrence of an alert: a fingerprint (label set) and its startsAt, per Source."""

    __tablename__ = "alerts"
    __table_args__ = (
        # The dedup lookup: one indexed probe per incoming alert.
        sa.UniqueConstraint("source_name", "fingerprint", "starts_at"),
        sa.Index(None, "fingerprint"),
        # The list API pages by received_at, optionally within a status or a Source.
        sa.Index(None, "status", "received_at"),
        sa.Index(None, "source_name", "received_at"),
        sa.Index(None, "received_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    starts_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    ends_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    status: Mapped[str] = mapped_column(sa.String(16))
    severity: Mapped[str] = mapped_column(sa.String(32), default="")
    alert_name: Mapped[str] = mapped_column(sa.String(255), default="")
    summary: Mapped[str | None] = mapped_column(sa.Text)
    description: Mapped[str | None] = mapped_column(sa.Text)
    labels: Mapped[dict[str, str]] = mapped_column(JSONType)
    annotations: Mapped[dict[str, str]] = mapped_column(JSONType)
    generator_url: Mapped[str | None] = mapped_column(sa.Text)
    source_name: Mapped[str] = mapped_column(sa.String(253))
    workflow_name: Mapped[str | None] = mapped_column(sa.String(253))

    ai_analysis: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    ai_confidence: Mapped[float | None] = mapped_column(sa.Float)
    auto_resolved: Mapped[bool] = mapped_column(default=False)

    received_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    times_seen: Mapped[int] = mapped_column(default=1)
    triage_started_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    triage_completed_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


class AlertSourceEvent(Base):
    """Which requests carried which alert occurrence."""

    __tablename__ = "alert_source_events"

    alert_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True
    )
    source_event_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("source_events.id", ondelete="CASCADE"), primary_key=True
    )
    # The alert's status in that request (firing or resolved).
    status: Mapped[str] = mapped_column(sa.String(16))


class WorkflowRun(Base):
    """One execution of a Workflow (the seed's ``workflows`` table)."""

    __tablename__ = "workflow_runs"
    __table_args__ = (
        sa.Index(None, "alert_id"),
        # The per-Source start cap counts recent runs of one Source.
        sa.Index(None, "source_name", "created_at"),
        sa.Index(None, "workflow_name", "phase"),
        # The per-fingerprint start cap (engine, at start time).
        sa.Index(None, "workflow_name", "fingerprint", "started_at"),
        # The engine's recovery pass looks for Running runs that stopped progressing.
        sa.Index(None, "phase", "updated_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    workflow_name: Mapped[str] = mapped_column(sa.String(253))
    namespace: Mapped[str] = mapped_column(sa.String(253), default="default")
    source_name: Mapped[str | None] = mapped_column(sa.String(253))
    alert_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("alerts.id"))
    trigger: Mapped[str] = mapped_column(sa.String(32), default="alert")
    phase: Mapped[str] = mapped_column(sa.String(16), default="Pending")
    steps_completed: Mapped[int] = mapped_column(default=0)
    total_steps: Mapped[int] = mapped_column(default=0)
    current_step: Mapped[str | None] = mapped_column(sa.String(253))
    input_context: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # The shared context the steps read and write (``steps.<name>.output``).
    context: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    outputs: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(sa.Text)
    # Why the run ended the way it did when that is not an error (a conditional's
    # stop message, steps that failed with continueOnError).
    message: Mapped[str | None] = mapped_column(sa.Text)
    # The Workflow spec as it was at start: every step of a run sees the same
    # definition even if the Workflow is edited meanwhile.
    spec: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The alert's fingerprint, for the per-fingerprint cap; written with the run
    # (``shared.domain.runs.new_pending_run``).
    fingerprint: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    completed_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    # Last progress (start, each step); a Running run idle for long is re-driven.
    updated_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class StepRun(Base):
    """One step of a workflow run, with every attempt's outcome folded into it."""

    __tablename__ = "step_runs"
    __table_args__ = (sa.UniqueConstraint("run_id", "index"),)

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    run_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    index: Mapped[int]
    name: Mapped[str] = mapped_column(sa.String(253))
    type: Mapped[str] = mapped_column(sa.String(32))
    phase: Mapped[str] = mapped_column(sa.String(16), default="Pending")
    attempts: Mapped[int] = mapped_column(default=0)
    output: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(sa.Text)
    started_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    completed_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    # Who runs it now ("host:pid") and until when that claim holds without a
    # heartbeat; a Running step past its lease, or whose owner died, is taken over.
    worker: Mapped[str | None] = mapped_column(sa.String(255))
    lease_until: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class ScheduleTick(Base):
    """One cron tick of a schedule Source, claimed by the scheduler replica that fired it.

    The unique key is what makes several scheduler replicas start a tick's run once.
    """

    __tablename__ = "schedule_ticks"
    __table_args__ = (sa.UniqueConstraint("source_namespace", "source_name", "tick_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source_namespace: Mapped[str] = mapped_column(sa.String(253))
    source_name: Mapped[str] = mapped_column(sa.String(253))
    tick_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    run_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)


class OutboxEntry(Base):
    """A Celery task to send once the transaction that wrote it has committed."""

    __tablename__ = "outbox"
    __table_args__ = (sa.Index(None, "published_at", "available_at"),)

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    task_name: Mapped[str] = mapped_column(sa.String(128))
    queue: Mapped[str] = mapped_column(sa.String(64))
    # Ids only, never rows: the task loads what it needs.
    args: Mapped[list[Any]] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    # Not before this instant may the relay take the entry (a publisher's lease).
    available_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)


class SinkDelivery(Base):
    """One notification of a run's event (its result, an approval it waits for) to one Sink.

    Phases: Pending (to send, or waiting for a retry), Delivered, Failed, Skipped
    (the Sink's condition was false). The notifier claims a delivery (``worker``,
    ``lease_until``) before it sends and records the answer after, so that a
    redelivered message finds it claimed or done and sends nothing.
    """

    __tablename__ = "sink_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("run_id", "sink_name", "event", "event_id"),
        # The notifier's recovery pass looks for Pending deliveries past their time.
        sa.Index(None, "phase", "next_attempt_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    run_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    sink_name: Mapped[str] = mapped_column(sa.String(253))
    # What the Sink is told (``shared.domain.notifications.Event``): the run's end, or
    # that it waits for the approval named by ``event_id`` ('' for the run's end).
    event: Mapped[str] = mapped_column(
        sa.String(32), default="run_finished", server_default="run_finished"
    )
    event_id: Mapped[str] = mapped_column(sa.String(64), default="", server_default="")
    phase: Mapped[str] = mapped_column(sa.String(16), default="Pending")
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(sa.Text)
    # What the sink answered (Slack ts for threading, silence id, ...).
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    # The claim: who is sending it now ("host:pid") and until when that holds.
    worker: Mapped[str | None] = mapped_column(sa.String(255))
    lease_until: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    # Not before: when a retry (or a wait for an open circuit breaker) is due.
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    updated_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class AlertSinkState(Base):
    """What one Sink left behind for one alert occurrence.

    The Slack thread it started (channel id and the parent's ``ts``: later messages
    about the alert are replies in it) and the AlertManager silence it created; both
    are undone or updated when the alert resolves. One row per (alert, Sink) rather
    than columns on ``alerts``, so that two Sinks of one alert never overwrite each
    other. ``parent_delivery_id`` is the claim on posting the parent: the one
    delivery that holds it posts, the others wait for ``thread_ts``.
    """

    __tablename__ = "alert_sink_states"

    alert_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True
    )
    sink_name: Mapped[str] = mapped_column(sa.String(253), primary_key=True)
    # Where the Sink resource lives (the namespace of the run that used it).
    sink_namespace: Mapped[str] = mapped_column(sa.String(253), default="default")
    channel: Mapped[str | None] = mapped_column(sa.String(64))
    thread_ts: Mapped[str | None] = mapped_column(sa.String(32))
    parent_delivery_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    silence_id: Mapped[str | None] = mapped_column(sa.String(64))
    # Resolution handling (notifier.alert_resolved): its claim, what is done so far
    # ({"updated": true, "replyTs": ..., "expired": true}) and when it finished.
    worker: Mapped[str | None] = mapped_column(sa.String(255))
    lease_until: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    resolution: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    resolution_attempts: Mapped[int] = mapped_column(default=0)
    resolution_error: Mapped[str | None] = mapped_column(sa.Text)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    # The silence watch (notifier ``silence_watch``): asks AlertManager whether a
    # silenced alert still fires, since the silence mutes its resolved notification.
    # Its own claim, apart from the resolution's: a check is not a resolution attempt.
    # ``watch_until`` is the lease, and the earliest time the alert is asked about
    # again by any worker.
    watch_worker: Mapped[str | None] = mapped_column(sa.String(255))
    watch_until: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    watch_checks: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)


class Approval(Base):
    """A change to the cluster that an agent step wants and a human must allow first.

    Written by the engine when the step pauses its run (``WaitingApproval``), decided
    through ``shared.approvals.decide`` (the API, later Slack's buttons) or expired by
    the engine's recovery pass. Status: pending -> approved | denied | expired; an
    approved one -> executing (claimed by one engine worker, so the change is made
    once) -> executed | failed, or unknown when that worker was lost meanwhile.
    """

    __tablename__ = "approvals"
    __table_args__ = (
        sa.Index(None, "status", "expires_at"),
        sa.Index(None, "run_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)
    run_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    step_index: Mapped[int]
    step_name: Mapped[str] = mapped_column(sa.String(253))
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    # The remediation request ({action, kind, name, namespace, replicas, reason}) and
    # a one-line description of it.
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    what: Mapped[str] = mapped_column(sa.Text)
    # Who asked ("workflow ns/name run id step name") and why the policy wants a human.
    requested_by: Mapped[str] = mapped_column(sa.Text)
    why: Mapped[str] = mapped_column(sa.Text)
    # Seconds the change may take to show a healthy workload.
    verify_timeout_seconds: Mapped[float] = mapped_column(default=120.0)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    decided_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    decided_by: Mapped[str | None] = mapped_column(sa.String(253))
    comment: Mapped[str | None] = mapped_column(sa.Text)
    # What happened once decided: the change, its verification, or why not.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    completed_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
