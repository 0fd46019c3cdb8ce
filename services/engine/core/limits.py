"""Workflow limits, decided when a run starts.

Two caps from the Workflow's ``limits``: at most ``maxConcurrentRuns`` runs of the
Workflow Running at once, and at most ``maxRunsPerFingerprint`` runs for one alert
fingerprint within ``fingerprintWindowSeconds`` (an alert that flaps must not start
a new investigation every time). A run over a cap ends in phase ``Skipped`` with the
reason in ``error``; it is not queued, because an alert storm would otherwise build
a backlog that runs long after it matters. Zero disables a cap.
"""

from __future__ import annotations

from shared.domain.workflows import Limits


def refusal(
    limits: Limits, running: int, same_fingerprint: int, fingerprint: str | None
) -> str | None:
    """Why a run may not start, or None. Counts exclude the run being started."""
    if limits.max_concurrent_runs and running >= limits.max_concurrent_runs:
        return (
            f"skipped: {running} runs of this Workflow are already running "
            f"(limits.maxConcurrentRuns={limits.max_concurrent_runs})"
        )
    if (
        fingerprint
        and limits.max_runs_per_fingerprint
        and same_fingerprint >= limits.max_runs_per_fingerprint
    ):
        return (
            f"skipped: {same_fingerprint} run(s) for alert fingerprint {fingerprint} "
            f"started in the last {limits.fingerprint_window_seconds}s "
            f"(limits.maxRunsPerFingerprint={limits.max_runs_per_fingerprint})"
        )
    return None
