"""Workflow limits decided at start."""

from __future__ import annotations

from services.engine.core.limits import refusal
from shared.domain.workflows import Limits


def test_under_the_caps_starts() -> None:
    assert refusal(Limits(2, 1, 60), running=1, same_fingerprint=0, fingerprint="f") is None


def test_concurrency_cap() -> None:
    reason = refusal(Limits(2, 1, 60), running=2, same_fingerprint=0, fingerprint="f")
    assert reason is not None
    assert "limits.maxConcurrentRuns=2" in reason


def test_fingerprint_cap_and_window() -> None:
    reason = refusal(Limits(10, 1, 60), running=0, same_fingerprint=1, fingerprint="abc")
    assert reason is not None
    assert "fingerprint abc" in reason
    assert "last 60s" in reason


def test_zero_disables_and_no_fingerprint_is_not_capped() -> None:
    assert refusal(Limits(0, 0, 60), running=99, same_fingerprint=99, fingerprint="f") is None
    assert refusal(Limits(10, 1, 60), running=0, same_fingerprint=5, fingerprint=None) is None
