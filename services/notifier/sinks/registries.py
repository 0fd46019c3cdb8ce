"""Sink types: one small abstract base and the registry that holds them.

Implementations are keyed by the Sink ``type`` strings of
``shared.resources.sinks.SINK_SCHEMAS``, whose schemas validate their config long
before a delivery reaches them. Each type does three things: ``render`` a finished
run into its payload (pure, in the sandbox), ``send`` it, and ``classify`` what
went wrong as temporary (retry later) or permanent (fail now). Types that keep
something per alert (a Slack thread, a silence) also ``resolve`` it when the alert
resolves.

Registering the same type twice raises at import time: two implementations for one
type would make a delivery depend on import order.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import httpx

from shared.domain.notifications import Event
from shared.errors import PermanentError, SecretError, TemporaryError
from shared.resources.sinks import SINK_SCHEMAS
from shared.settings import NotifierSettings


class SinkNotAvailableError(PermanentError):
    """The Sink's type has no implementation in this notifier."""


@dataclasses.dataclass(frozen=True)
class Target:
    """A Sink resource as stored by the controller (normalized spec)."""

    name: str
    namespace: str
    type: str
    config: Mapping[str, Any]
    condition: str | None = None

    def where(self, field: str) -> str:
        return f"Sink {self.namespace}/{self.name} {field}"


@dataclasses.dataclass(frozen=True)
class AlertState:
    """What this Sink left for the delivery's alert so far (``alert_sink_states``)."""

    channel: str | None = None
    thread_ts: str | None = None
    silence_id: str | None = None
    # This delivery holds the claim on posting the alert's first (parent) message.
    owns_parent: bool = False


@dataclasses.dataclass(frozen=True)
class SendContext:
    """Everything ``send`` may use; no database, no broker."""

    delivery_id: str
    run_id: str
    alert_id: str | None
    attempt: int
    # When the delivery was created (epoch seconds): nothing it sent is older, which
    # bounds the search for a message an earlier attempt may have posted.
    created_at: float
    target: Target
    state: AlertState | None
    # The alert is resolved already (nothing to silence or re-post).
    alert_resolved: bool
    secret: Callable[[Mapping[str, str]], str]
    http: httpx.Client
    settings: NotifierSettings

    @property
    def may_have_sent(self) -> bool:
        """An earlier attempt may have reached the Sink without being recorded (a
        crash, a lost answer): look before sending again where the Sink allows it."""
        return self.attempt > 1


@dataclasses.dataclass(frozen=True)
class Sent:
    """A successful send: the external reference, and columns for ``alert_sink_states``."""

    reference: Mapping[str, Any]
    state: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ResolveContext:
    """What ``resolve`` may use: the alert's facts and the progress made so far."""

    alert_id: str
    alert: Mapping[str, Any]
    target: Target
    state: AlertState
    # What earlier attempts finished ({"updated": true, "replyTs": ...}).
    progress: Mapping[str, Any]
    attempt: int
    secret: Callable[[Mapping[str, str]], str]
    http: httpx.Client
    settings: NotifierSettings


@dataclasses.dataclass(frozen=True)
class UpdateContext:
    """What ``update`` may use: the message an earlier ``send`` left (its reference)."""

    delivery_id: str
    alert_id: str | None
    target: Target
    reference: Mapping[str, Any]
    secret: Callable[[Mapping[str, str]], str]
    http: httpx.Client
    settings: NotifierSettings


class Sink(abc.ABC):
    type: ClassVar[str]
    # A delivered message tells a person (it may make the alert escalated).
    tells_humans: ClassVar[bool] = False
    # The events (``shared.domain.notifications.Event``) this type acts on; a
    # delivery of another is Skipped, saying so.
    events: ClassVar[frozenset[str]] = frozenset(Event)

    def ignores(self, target: Target, event: str) -> str | None:
        """Why a delivery of ``event`` to ``target`` does nothing (it is Skipped), or
        None when this Sink acts on it."""
        if event not in self.events:
            return f"{self.type} Sinks do not act on {event} events"
        return None

    def threaded(self, target: Target) -> bool:
        """Whether the deliveries of one alert share a first (parent) message."""
        return False

    @abc.abstractmethod
    def render(self, target: Target, message: Mapping[str, Any]) -> Any:
        """The payload for ``message`` (see ``core.messages``); RenderError if it cannot."""

    @abc.abstractmethod
    def send(self, payload: Any, ctx: SendContext) -> Sent:
        """Deliver once; library errors are left to ``classify``."""

    def classify(self, exc: Exception) -> PermanentError | TemporaryError:
        """Temporary (retry, maybe after ``delay``) or permanent (fail now)."""
        if isinstance(exc, PermanentError | TemporaryError):
            return exc
        if isinstance(exc, SecretError):
            # The Secret may be created or fixed meanwhile; the retries give it time.
            return TemporaryError(str(exc))
        if isinstance(exc, httpx.HTTPStatusError):
            return classify_status(exc.response.status_code, str(exc), exc.response.headers)
        if isinstance(exc, httpx.TransportError | OSError):
            return TemporaryError(f"{type(exc).__name__}: {exc}")
        return TemporaryError(f"{type(exc).__name__}: {exc}")

    def resolve(self, ctx: ResolveContext) -> Mapping[str, Any]:
        """Undo or update what this Sink left for a resolved alert; returns progress."""
        return {}

    def update(self, payload: Any, ctx: UpdateContext) -> Mapping[str, Any] | None:
        """Replace the message a delivery sent with ``payload`` (rendered again, e.g.
        once its approval is decided); returns what to add to its reference, or None
        when this type cannot edit what it sent (a webhook, a line on stdout)."""
        return None


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form; dates are rare)."""
    value = headers.get("retry-after") or headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def classify_status(
    status: int, message: str, headers: Mapping[str, str]
) -> PermanentError | TemporaryError:
    """HTTP: 408 and 429 are worth retrying (after Retry-After), other 4xx are not,
    5xx are (the receiver may be restarting)."""
    if status in (408, 429) or status >= 500:
        return TemporaryError(message, delay=retry_after(headers) or 0.0)
    return PermanentError(message)


S = TypeVar("S", bound=type[Sink])


class SinkRegistry:
    """Sink implementations by type; one default instance, fresh ones in tests."""

    def __init__(self) -> None:
        self._sinks: dict[str, Sink] = {}

    def add(self, sink: Sink) -> None:
        if sink.type not in SINK_SCHEMAS:
            raise ValueError(f"sink type {sink.type!r} has no schema in shared.resources.sinks")
        if sink.type in self._sinks:
            raise ValueError(f"sink type {sink.type!r} is already registered")
        self._sinks[sink.type] = sink

    def get(self, sink_type: str) -> Sink:
        try:
            return self._sinks[sink_type]
        except KeyError:
            raise SinkNotAvailableError(
                f"sink type {sink_type!r} is not available in this notifier; "
                f"available types: {', '.join(sorted(self._sinks))}"
            ) from None

    @property
    def types(self) -> frozenset[str]:
        return frozenset(self._sinks)


default_registry = SinkRegistry()


def register(registry: SinkRegistry | None = None) -> Callable[[S], S]:
    """Class decorator: instantiate and add to ``registry`` (default: the default one)."""

    def decorate(cls: S) -> S:
        (registry or default_registry).add(cls())
        return cls

    return decorate
