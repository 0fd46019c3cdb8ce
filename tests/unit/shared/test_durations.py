"""Go-style durations as seconds."""

from __future__ import annotations

import pytest

from shared.domain import durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("500ms", 0.5), ("1.5h", 5400), ("2m3s", 123)],
)
def test_durations(text: str, seconds: float) -> None:
    assert durations.seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "", "5 m", "-5m", "5d", "m", "5mm", "1h 30m", "1.m"])
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError, match="Must be a duration"):
        durations.seconds(text)
