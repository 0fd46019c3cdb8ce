"""The project's own exception tree.

    PunchingFistError
    ├── ConfigError            settings or resources that cannot be used; fail fast
    ├── ValidationError        input that breaks a schema (the message names the field)
    ├── SecretError            a secretRef that cannot be resolved
    ├── LifecycleError         an illegal alert state transition
    ├── PermanentError         work that must not be retried
    ├── TemporaryError         work that may succeed later (``delay`` seconds)
    └── WorkerNotAliveError    a liveness check got no answer (the message says why)

Library exceptions are translated at the boundary that raises them and chained
with ``from`` so that the cause stays visible in logs.
"""

from __future__ import annotations


class PunchingFistError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(PunchingFistError):
    """Settings or resources are unusable; the process should stop with this message."""


class ValidationError(PunchingFistError):
    """Input that breaks a schema. ``messages`` maps field paths to problems."""

    def __init__(self, message: str, messages: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.messages = messages or {}


class SecretError(PunchingFistError):
    """A secretRef could not be resolved."""


class LifecycleError(PunchingFistError):
    """An alert was asked to make a transition its lifecycle does not allow."""


class PermanentError(PunchingFistError):
    """Failing again will not help: fail the unit of work at once."""


class TemporaryError(PunchingFistError):
    """May succeed later; retry after ``delay`` seconds."""

    def __init__(self, message: str, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


class WorkerNotAliveError(PunchingFistError):
    """A Celery worker did not answer its liveness check; the message is one line."""
