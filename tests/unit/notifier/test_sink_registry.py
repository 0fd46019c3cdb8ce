"""The Sink registry: one implementation per schema type, duplicates refused."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from services.notifier import sinks
from services.notifier.sinks import registries
from shared.resources.sinks import SINK_SCHEMAS


class Fake(registries.Sink):
    type = "stdout"

    def render(self, target: registries.Target, message: Mapping[str, Any]) -> Any:
        return message

    def send(self, payload: Any, ctx: registries.SendContext) -> registries.Sent:
        return registries.Sent({})


def test_every_schema_type_has_an_implementation() -> None:
    assert sinks.__all__
    assert registries.default_registry.types == frozenset(SINK_SCHEMAS)


def test_a_second_registration_of_a_type_fails() -> None:
    registry = registries.SinkRegistry()
    registries.register(registry)(Fake)
    with pytest.raises(ValueError, match="already registered"):
        registries.register(registry)(Fake)


def test_a_type_without_a_schema_is_refused() -> None:
    class Email(Fake):
        type = "email"

    with pytest.raises(ValueError, match="no schema"):
        registries.SinkRegistry().add(Email())


def test_an_unregistered_type_is_a_permanent_error_naming_the_available_ones() -> None:
    registry = registries.SinkRegistry()
    registries.register(registry)(Fake)
    with pytest.raises(registries.SinkNotAvailableError, match="available types: stdout"):
        registry.get("slack")


@pytest.mark.parametrize(
    ("status", "temporary"),
    [(400, False), (403, False), (404, False), (408, True), (429, True), (500, True), (502, True)],
)
def test_http_status_classes(status: int, temporary: bool) -> None:
    from shared.errors import TemporaryError

    error = registries.classify_status(status, "x", {"retry-after": "7"})
    assert isinstance(error, TemporaryError) is temporary
    if temporary:
        assert error.delay == 7.0  # type: ignore[union-attr]
