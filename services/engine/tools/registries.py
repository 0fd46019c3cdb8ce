"""Agent tools: the result every tool returns, the base class and the registry.

Shaped after holmesgpt's ``holmes/core/tools.py``: a tool's name, description and
JSON-schema parameters are data (the model is shown exactly what the registry holds),
and the public :meth:`Tool.invoke` wraps the tool's ``_invoke`` with argument
validation, timing and logging. ``invoke`` never raises into the loop: whatever
happens comes back as a :class:`ToolResult` whose status is one of ``ok``, ``error``,
``empty``, ``denied`` or ``approval_required``, so a failing tool reaches the model
(or the rule-based investigator) as data it can reason about.

What this module must not do: run anything. Tools get what they need (API clients,
allowlists, the remediation policy, the deadline) through :class:`ToolContext`, built
per step from the Workflow's ``runtime.tools``.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import jsonschema

from services.engine import metrics as engine_metrics
from services.engine.core.remediation import RemediationPolicy
from shared.errors import PermanentError, TemporaryError

log = logging.getLogger(__name__)

# Longest text a tool hands back to the model; tools reduce (not cut) before this.
MAX_TEXT = 12_000


class Status(enum.StrEnum):
    OK = "ok"
    ERROR = "error"
    EMPTY = "empty"
    DENIED = "denied"
    APPROVAL_REQUIRED = "approval_required"


@dataclasses.dataclass(frozen=True)
class ToolResult:
    """What a tool call produced: a status, text for the model, data for the rules."""

    status: Status
    text: str
    # Structured evidence (the API's objects, series, log lines) for the rule-based
    # investigator; never shown to the model as such.
    data: Any = None
    seconds: float = 0.0
    # The tool could not reach what it talks to (no cluster, Prometheus down): the
    # next call will fail the same way.
    unreachable: bool = False

    def for_model(self) -> str:
        """The text a model reads back, status first."""
        return f"[{self.status.value}] {self.text}"


class ToolError(PermanentError):
    """A tool could not do what was asked; ``invoke`` turns it into ``error``."""


class ToolDeniedError(PermanentError):
    """A policy, allowlist or RBAC refused the call; ``invoke`` turns it into ``denied``."""


class ToolUnavailableError(TemporaryError):
    """What the tool talks to cannot be reached (no cluster, Prometheus down)."""


@dataclasses.dataclass(frozen=True)
class Script:
    """A script the Workflow declares: the model names it, never writes it."""

    name: str
    command: tuple[str, ...]
    timeout: float = 30.0


@dataclasses.dataclass(frozen=True)
class ToolSettings:
    """The Workflow's ``runtime.tools``, normalized."""

    prometheus_url: str = ""
    # Hosts curl may reach (exact names or IPs; ``*.example.com`` for subdomains).
    curl_hosts: frozenset[str] = frozenset()
    # Namespaces kubectl may read; empty means every namespace.
    kubectl_namespaces: frozenset[str] = frozenset()
    scripts: Mapping[str, Script] = dataclasses.field(default_factory=dict)
    remediation: RemediationPolicy = dataclasses.field(default_factory=RemediationPolicy)
    # Kubernetes API URL without credentials (tests, ``kubectl proxy``); empty:
    # in-cluster configuration, else kubeconfig.
    kubernetes_api_url: str = ""
    # Seconds one tool call may take (each tool also bounds its own I/O).
    call_timeout: float = 20.0
    # Most series promql returns; most bytes curl keeps.
    promql_max_series: int = 10
    curl_max_bytes: int = 65_536


@dataclasses.dataclass
class ToolContext:
    """Per step: settings, clients, who is acting, and the audit of every decision."""

    settings: ToolSettings
    # "workflow <ns>/<name> run <id> step <name>": the *who* of every decision.
    actor: str = "agent"
    # Who asked for a change: "model" (an LLM's tool call) or "rules".
    requester: str = "model"
    approval_required: bool = True
    remediation_allowed: bool = False
    # Monotonic time after which tools should not start slow work.
    deadline: float = float("inf")
    # Remediation decisions: who, when, what, why (appended by ``remediate``).
    decisions: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # Clients created on first use and closed by ``close`` (the Kubernetes client,
    # the HTTP client); keyed by the tool module that owns them.
    clients: dict[str, Any] = dataclasses.field(default_factory=dict)
    clock: Callable[[], float] = time.time
    # Name resolution for curl's address checks; tests map their own names.
    resolver: Callable[[str, int], list[str]] | None = None

    def client(self, key: str, factory: Callable[[], Any]) -> Any:
        if key not in self.clients:
            self.clients[key] = factory()
        return self.clients[key]

    def close(self) -> None:
        for client in self.clients.values():
            close = getattr(client, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # closing is best effort; the step's result stands
                    log.debug("closing a tool client failed", exc_info=True)
        self.clients.clear()


class Tool(abc.ABC):
    """One tool. Subclasses set the three data attributes and write ``_invoke``."""

    name: ClassVar[str]
    description: ClassVar[str]
    parameters: ClassVar[Mapping[str, Any]]
    # Only ``remediate`` changes anything; it is offered only when the step allows it.
    mutating: ClassVar[bool] = False

    def unavailable(self, settings: ToolSettings) -> str | None:
        """Why this tool cannot work with ``settings`` (then it is not offered), else None."""
        return None

    @abc.abstractmethod
    def _invoke(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Do the call; raise ToolError, ToolDeniedError or ToolUnavailableError on failure."""

    def _validator(self) -> jsonschema.protocols.Validator:
        # Built once per tool: jsonschema.validate() re-checks the schema itself on
        # every call, which cost 16 ms per tool call (bench/agent.py).
        validator = self.__dict__.get("_compiled")
        if validator is None:
            cls = jsonschema.validators.validator_for(dict(self.parameters))
            cls.check_schema(dict(self.parameters))
            validator = cls(dict(self.parameters))
            self.__dict__["_compiled"] = validator
        return validator

    def spec(self) -> dict[str, Any]:
        """The OpenAI-style function description the model sees."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }

    def invoke(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        """Validate, run, time and log the call; never raises."""
        started = time.monotonic()
        error = jsonschema.exceptions.best_match(self._validator().iter_errors(dict(arguments)))
        if error is not None:
            where = ".".join(str(part) for part in error.absolute_path) or "arguments"
            result = ToolResult(Status.ERROR, f"invalid arguments: {where}: {error.message}")
        else:
            try:
                result = self._invoke(arguments, ctx)
            except ToolDeniedError as exc:
                result = ToolResult(Status.DENIED, str(exc))
            except ToolUnavailableError as exc:
                result = ToolResult(Status.ERROR, str(exc), unreachable=True)
            except ToolError as exc:
                result = ToolResult(Status.ERROR, str(exc))
            except Exception as exc:  # a tool bug must not end the investigation
                log.exception("tool raised", extra={"tool": self.name})
                result = ToolResult(Status.ERROR, f"{type(exc).__name__}: {exc}")
        seconds = round(time.monotonic() - started, 4)
        text = result.text if len(result.text) <= MAX_TEXT else _clip(result.text)
        result = dataclasses.replace(result, text=text, seconds=seconds)
        recorded = engine_metrics.metrics()
        recorded.tool_calls.labels(self.name, result.status.value).inc()
        recorded.tool_duration.labels(self.name).observe(seconds)
        log.info(
            "tool call",
            extra={
                "tool": self.name,
                "arguments": json.dumps(dict(arguments), sort_keys=True, default=str)[:500],
                "status": result.status.value,
                "seconds": seconds,
                "actor": ctx.actor,
            },
        )
        return result


def _clip(text: str) -> str:
    """Keep the head and the tail; tools reduce first, so this is the last guard."""
    half = MAX_TEXT // 2
    return f"{text[:half]}\n... [{len(text) - MAX_TEXT} characters left out] ...\n{text[-half:]}"


T = TypeVar("T", bound=type[Tool])


class ToolRegistry:
    """Tools by name; one default instance, fresh ones in tests."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def add(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise ToolError(
                f"no tool named {name!r}; tools: {', '.join(sorted(self._tools))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._tools)

    def offered(
        self, wanted: Iterable[str], settings: ToolSettings, *, remediation_allowed: bool
    ) -> tuple[list[Tool], dict[str, str]]:
        """The tools a step may use, and why each of the others is left out.

        ``wanted`` empty means every read-only tool. A mutating tool is offered only
        when the step names it and remediation is allowed.
        """
        names = list(wanted) or [n for n, t in sorted(self._tools.items()) if not t.mutating]
        offered: list[Tool] = []
        left_out: dict[str, str] = {}
        for name in names:
            tool = self._tools.get(name)
            if tool is None:
                left_out[name] = "no such tool"
                continue
            if tool.mutating and not remediation_allowed:
                left_out[name] = "changes the cluster and this step does not allow it"
                continue
            reason = tool.unavailable(settings)
            if reason:
                left_out[name] = reason
                continue
            offered.append(tool)
        return offered, left_out


default_registry = ToolRegistry()


def register(registry: ToolRegistry | None = None) -> Callable[[T], T]:
    """Class decorator: instantiate and add to ``registry`` (default: the default one)."""

    def decorate(cls: T) -> T:
        (registry or default_registry).add(cls())
        return cls

    return decorate


def require_deadline(ctx: ToolContext, what: str) -> float:
    """Seconds left for ``what`` (at most the call timeout); ToolError if none."""
    left = min(ctx.settings.call_timeout, ctx.deadline - time.monotonic())
    if left <= 0:
        raise ToolError(f"{what}: the step's time is up")
    return left


def parameters(properties: Mapping[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
    """A closed JSON-schema object: unknown arguments are refused, not ignored."""
    return {
        "type": "object",
        "properties": dict(properties),
        "required": list(required),
        "additionalProperties": False,
    }
