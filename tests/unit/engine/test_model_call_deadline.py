"""A model request is bounded by the time the step has left, not only by its timeout."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage

from services.engine.agent import llm


class RecordingModel:
    """Answers at once and keeps the options each request was sent with."""

    def __init__(self) -> None:
        self.options: list[dict[str, Any]] = []

    def invoke(self, messages: Sequence[Any], **options: Any) -> AIMessage:
        self.options.append(options)
        return AIMessage("done")


CONFIG = llm.LLMConfig(provider="local", model="m", endpoint="http://model", request_timeout=60)


def test_a_request_gets_the_time_left_when_that_is_less_than_its_timeout() -> None:
    model = RecordingModel()
    llm.call(model, [], CONFIG, deadline=time.monotonic() + 5, breaker=llm.CircuitBreaker())
    [options] = model.options
    assert 0 < options["timeout"] <= 5


def test_a_request_gets_its_timeout_when_the_step_has_more_time() -> None:
    model = RecordingModel()
    llm.call(model, [], CONFIG, deadline=time.monotonic() + 600, breaker=llm.CircuitBreaker())
    assert model.options == [{"timeout": 60}]
