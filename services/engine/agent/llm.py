"""Chat models for agent steps: providers through LangChain, bounded retries, a circuit breaker.

Providers (the Workflow's ``runtime.llmConfig.provider``):

* ``openai``   — ``langchain_openai.ChatOpenAI`` against OpenAI (or ``endpoint``);
* ``local``    — any OpenAI-compatible server (Ollama, vLLM, llama.cpp): ``ChatOpenAI``
  with ``base_url``; an endpoint without a path gets ``/v1`` (Ollama's layout);
* ``together`` — Together's OpenAI-compatible API, same client;
* ``anthropic``— ``langchain_anthropic.ChatAnthropic`` (the optional extra
  ``punching-fist[anthropic]``).

The client's own retries are off (``max_retries=0``): :func:`call` retries only what
is worth retrying (connection errors, timeouts, 429, 5xx), a bounded number of times
and never past the step's deadline, and counts failures in a per-endpoint
:class:`CircuitBreaker`. After ``threshold`` failures in a row the breaker opens and
every step using that endpoint fails at once with the reason ("provider ... is
failing: ...") for ``cooldown`` seconds, instead of each one waiting out its
timeouts; then one call is let through to probe it.

Errors::

    PermanentError
    └── ModelError                 the provider refused (auth, bad request, unknown model)
    TemporaryError
    └── ModelUnavailableError           unreachable, timing out, 5xx/429 after the retries
        └── CircuitOpenError            failing recently; not tried
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from services.engine import metrics as engine_metrics
from shared.errors import ConfigError, PermanentError, TemporaryError

log = logging.getLogger(__name__)

TOGETHER_URL = "https://api.together.xyz/v1"


class ModelError(PermanentError):
    """The provider refused the request; the same request will be refused again."""


class ModelUnavailableError(TemporaryError):
    """The provider could not be reached or kept failing."""


class CircuitOpenError(ModelUnavailableError):
    """The provider failed repeatedly just now; calls fail fast until the cooldown ends."""


@dataclasses.dataclass(frozen=True)
class LLMConfig:
    provider: str
    model: str
    endpoint: str = ""
    api_key: str = ""
    temperature: float | None = None
    max_tokens: int | None = None
    # Seconds for one request to the model, and further attempts after a retryable failure.
    request_timeout: float = 60.0
    retries: int = 2

    def base_url(self) -> str | None:
        if self.provider == "together":
            return self.endpoint or TOGETHER_URL
        if self.provider == "local":
            endpoint = self.endpoint or "http://127.0.0.1:11434"
            parts = urllib.parse.urlsplit(endpoint)
            if parts.path in ("", "/"):
                endpoint = endpoint.rstrip("/") + "/v1"
            return endpoint
        return self.endpoint or None

    def key(self) -> str:
        return f"{self.provider}|{self.base_url() or ''}|{self.model}"


def chat_model(config: LLMConfig) -> Any:
    """The LangChain chat model for ``config``; nothing is sent yet."""
    common: dict[str, Any] = {
        "model": config.model,
        "timeout": config.request_timeout,
        "max_retries": 0,
    }
    if config.temperature is not None:
        common["temperature"] = config.temperature
    if config.max_tokens is not None:
        common["max_tokens"] = config.max_tokens
    if config.provider == "anthropic":
        try:
            from langchain_anthropic import ChatAnthropic
        except ImportError as exc:
            raise ConfigError(
                "provider anthropic needs the optional extra: pip install "
                "'punching-fist[anthropic]'"
            ) from exc
        if config.endpoint:
            common["base_url"] = config.endpoint
        return ChatAnthropic(api_key=config.api_key or "unset", **common)
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr

    # A local server usually wants no key, but the client insists on one.
    key = SecretStr(config.api_key or "not-needed")
    return ChatOpenAI(base_url=config.base_url(), api_key=key, **common)


class CircuitBreaker:
    """Consecutive failures per endpoint; open for ``cooldown`` seconds after ``threshold``."""

    def __init__(
        self,
        threshold: int = 3,
        cooldown: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, int] = {}
        self._opened: dict[str, float] = {}
        self._reason: dict[str, str] = {}

    def before(self, key: str) -> None:
        with self._lock:
            opened = self._opened.get(key)
            if opened is None:
                return
            left = self.cooldown - (self.clock() - opened)
            if left > 0:
                raise CircuitOpenError(
                    f"the model provider {key.split('|', maxsplit=1)[0]} at "
                    f"{key.split('|')[1] or 'its default URL'} "
                    f"failed {self._failures.get(key, 0)} times in a row "
                    f"({self._reason.get(key, '')}); "
                    f"not trying again for {left:.0f}s",
                    delay=left,
                )
            # Half-open: let this call probe; a failure re-opens at once.
            del self._opened[key]
            self._failures[key] = self.threshold - 1

    def success(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)
            self._opened.pop(key, None)

    def failure(self, key: str, reason: str) -> None:
        with self._lock:
            count = self._failures.get(key, 0) + 1
            self._failures[key] = count
            self._reason[key] = reason
            if count >= self.threshold:
                self._opened[key] = self.clock()
                log.warning(
                    "model provider circuit opened", extra={"provider": key, "reason": reason}
                )


default_breaker = CircuitBreaker()


def _classify(exc: Exception) -> tuple[bool, str]:
    """(retryable, short reason) for an exception raised by a LangChain model call."""
    import httpx
    import openai

    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException):
        return True, "timed out"
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        return True, f"cannot connect: {exc}"
    if isinstance(exc, openai.RateLimitError):
        return True, "rate limited (429)"
    if isinstance(exc, openai.InternalServerError):
        return True, f"server error {exc.status_code}"
    if isinstance(exc, openai.APIStatusError):
        return False, f"refused ({exc.status_code}): {str(exc)[:300]}"
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status >= 500 or status == 429, f"{type(exc).__name__} ({status})"
    return False, f"{type(exc).__name__}: {str(exc)[:300]}"


def call(
    model: Any,
    messages: Sequence[Any],
    config: LLMConfig,
    deadline: float,
    *,
    breaker: CircuitBreaker = default_breaker,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """``model.invoke(messages)`` with bounded retries inside ``deadline``, through the breaker."""
    key = config.key()
    attempt = 0
    while True:
        breaker.before(key)
        left = deadline - time.monotonic()
        if left <= 0:
            raise ModelUnavailableError("the step's time ran out before the model answered")
        started = time.monotonic()
        try:
            # No request outlives the step's deadline: a hanging endpoint costs at most
            # what is left, not ``request_timeout`` per attempt past it.
            answer = model.invoke(list(messages), timeout=min(config.request_timeout, left))
        except Exception as exc:  # every provider error is classified here, once
            engine_metrics.metrics().model_failed(
                config.provider, config.model, time.monotonic() - started
            )
            retryable, reason = _classify(exc)
            seconds = round(time.monotonic() - started, 3)
            log.info(
                "model call failed", extra={"provider": key, "reason": reason, "seconds": seconds}
            )
            if not retryable:
                raise ModelError(f"the model provider {config.provider} {reason}") from exc
            breaker.failure(key, reason)
            attempt += 1
            backoff = min(8.0, 0.5 * 2 ** (attempt - 1))
            if attempt > config.retries or time.monotonic() + backoff >= deadline:
                raise ModelUnavailableError(
                    f"the model provider {config.provider} at "
                    f"{config.base_url() or 'its default URL'} "
                    f"{reason} ({attempt} attempt(s))"
                ) from exc
            sleep(backoff)
            continue
        engine_metrics.metrics().model_answered(
            config.provider, config.model, time.monotonic() - started, answer
        )
        breaker.success(key)
        return answer
