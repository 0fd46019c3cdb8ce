"""Step types: one small executor base class and the registry that holds them.

Executors are keyed by the CRD ``type`` string of ``shared.resources.steps``. The
registry knows two sets: the *known* types (every schema, so a Workflow naming an
unknown type is refused when it is loaded) and the types that have an executor. A
known type without one (a type added to the schemas before its executor) makes a run
that reaches it fail with a "not available" error, instead of the Workflow being refused.

Registering the same type twice raises at import time: two executors for one type
would make a run's behaviour depend on import order.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, ClassVar, TypeVar

from services.engine.core.outcomes import Directive, Outcome
from services.engine.runners.bases import Runner
from shared.domain.templates import Templates
from shared.domain.workflows import Step, Workflow
from shared.errors import PermanentError, TemporaryError
from shared.resources.steps import STEP_SCHEMAS
from shared.settings import Settings

log = logging.getLogger(__name__)


class StepNotAvailableError(PermanentError):
    """The step type is known but this engine has no executor for it."""


class StepFailedError(TemporaryError):
    """A step ran and failed, with output worth keeping (exit code, stderr)."""

    def __init__(
        self,
        message: str,
        output: Mapping[str, Any],
        *,
        temporary: bool = True,
        delay: float = 0.0,
    ) -> None:
        super().__init__(message, delay=delay)
        self.output = dict(output)
        self.temporary = temporary


@dataclasses.dataclass(frozen=True)
class StepContext:
    """Everything an executor may use; no database, no broker."""

    run_id: str
    workflow: Workflow
    step: Step
    attempt: int
    # The run context as templates see it (alert, source, env, steps, run).
    namespace: Mapping[str, Any]
    templates: Templates
    timeout: float
    output_limit: int
    runners: Mapping[str, Runner]
    # The process's settings and secret lookup (namespace, name, key) -> value, for
    # executors that need more than the step (the agent: its tools' API URL, its
    # templates folder, the model's API key).
    settings: Settings | None = None
    secrets: Callable[[str, str, str], str] | None = None

    def where(self, field: str | None = None) -> str:
        return f"step {self.step.name!r}" + (f" {field}" if field else "")


@dataclasses.dataclass(frozen=True)
class Result:
    output: Mapping[str, Any]
    directive: Directive | None = None


class StepExecutor(abc.ABC):
    type: ClassVar[str]
    # A pure executor has no side effects and finishes in milliseconds: the engine
    # runs it inside the step's own transaction (no separate claim commit), because
    # running it twice after a crash changes nothing.
    pure: ClassVar[bool] = False

    @abc.abstractmethod
    def execute(self, ctx: StepContext) -> Result:
        """Run the step once; raise PermanentError, TemporaryError or StepFailedError."""


def invoke(executor: StepExecutor, ctx: StepContext) -> Outcome:
    """Run ``executor`` and fold whatever happens into an Outcome (never raises)."""
    started = time.monotonic()
    try:
        result = executor.execute(ctx)
    except StepFailedError as exc:
        outcome = Outcome(
            ok=False, output=exc.output, error=str(exc), temporary=exc.temporary, delay=exc.delay
        )
    except TemporaryError as exc:
        outcome = Outcome(ok=False, error=str(exc), temporary=True, delay=exc.delay)
    except PermanentError as exc:
        outcome = Outcome(ok=False, error=str(exc), temporary=False)
    except Exception as exc:  # an executor bug: record it, let retries decide
        log.exception("step executor raised", extra={"run_id": ctx.run_id, "step": ctx.step.name})
        outcome = Outcome(ok=False, error=f"{type(exc).__name__}: {exc}", temporary=True)
    else:
        outcome = Outcome(ok=True, output=result.output, directive=result.directive)
    log.info(
        "step attempt finished",
        extra={
            "run_id": ctx.run_id,
            "step": ctx.step.name,
            "type": ctx.step.type,
            "attempt": ctx.attempt,
            "ok": outcome.ok,
            "error": outcome.error,
            "seconds": round(time.monotonic() - started, 4),
        },
    )
    return outcome


E = TypeVar("E", bound=type[StepExecutor])


class StepRegistry:
    """Executors by step type; one default instance, fresh ones in tests."""

    def __init__(self, known_types: Collection[str] | None = None) -> None:
        self._known = set(STEP_SCHEMAS if known_types is None else known_types)
        self._executors: dict[str, StepExecutor] = {}

    @property
    def known_types(self) -> frozenset[str]:
        return frozenset(self._known | set(self._executors))

    def add(self, executor: StepExecutor) -> None:
        if executor.type in self._executors:
            raise ValueError(f"step type {executor.type!r} is already registered")
        self._executors[executor.type] = executor

    def get(self, step_type: str) -> StepExecutor:
        try:
            return self._executors[step_type]
        except KeyError:
            if step_type in self._known:
                raise StepNotAvailableError(
                    f"step type {step_type!r} is not available in this engine yet; "
                    f"available types: {', '.join(sorted(self._executors))}"
                ) from None
            raise StepNotAvailableError(f"unknown step type {step_type!r}") from None


default_registry = StepRegistry()


def register(registry: StepRegistry | None = None) -> Callable[[E], E]:
    """Class decorator: instantiate and add to ``registry`` (default: the default one)."""

    def decorate(cls: E) -> E:
        (registry or default_registry).add(cls())
        return cls

    return decorate
