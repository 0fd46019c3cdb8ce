"""Reduce large tool output to what an investigation needs, instead of cutting it blindly.

A crash's cause is in the error lines and the last lines before it died, not in the
first 10 KB of a log; a metric's answer is in the highest series, not in the first
ones Prometheus happened to return; an object's trouble is in its failing
conditions. These functions keep those and say what they left out. Pure.

The log pattern is a fixed alternation over words without nested quantifiers, so a
crafted log line cannot make it backtrack.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

ERROR_LINE = re.compile(
    r"\b(error|err|exception|traceback|fatal|panic|fail(ed|ure)?|killed|oom|"
    r"out of memory|refused|timed? ?out|denied|segfault|unhealthy)\b",
    re.IGNORECASE,
)
MAX_LINE = 500


def log_lines(text: str, *, tail: int = 40, errors: int = 30) -> tuple[list[str], list[str], int]:
    """(error lines before the tail, the last ``tail`` lines, lines left out)."""
    lines = [line[:MAX_LINE] for line in text.splitlines()]
    last = lines[-tail:] if tail else []
    head = lines[: len(lines) - len(last)]
    found = [line for line in head if ERROR_LINE.search(line)]
    kept = found[-errors:]
    return kept, last, len(head) - len(kept)


def reduce_log(text: str, *, tail: int = 40, errors: int = 30) -> str:
    """Error lines from the whole log, then its last lines."""
    found, last, left_out = log_lines(text, tail=tail, errors=errors)
    parts: list[str] = []
    if found:
        parts.append(f"error lines before the last {len(last)} lines:")
        parts.extend(found)
    if left_out:
        parts.append(f"[{left_out} other lines left out]")
    if last:
        parts.append(f"last {len(last)} lines:")
        parts.extend(last)
    return "\n".join(parts) if parts else "(empty log)"


def error_lines(text: str, limit: int = 10) -> list[str]:
    """Up to ``limit`` lines that look like errors, last ones first kept."""
    return [line[:MAX_LINE] for line in text.splitlines() if ERROR_LINE.search(line)][-limit:]


def _peak(values: Sequence[Any]) -> float:
    best = float("-inf")
    for pair in values:
        try:
            best = max(best, float(pair[1]))
        except (TypeError, ValueError, IndexError):
            continue
    return best


def top_series(result: Sequence[Mapping[str, Any]], limit: int) -> tuple[list[dict[str, Any]], int]:
    """The ``limit`` series with the highest value (peak for ranges), and how many were cut.

    Each returned series is ``{"metric": {...}, "value": latest, "peak": highest}``.
    NaN sorts last.
    """
    rows: list[dict[str, Any]] = []
    for series in result:
        metric = dict(series.get("metric") or {})
        if "values" in series:
            values = list(series.get("values") or [])
            latest = _number(values[-1][1]) if values else float("nan")
            peak = _peak(values)
        else:
            latest = _number((series.get("value") or [None, None])[1])
            peak = latest
        rows.append({"metric": metric, "value": latest, "peak": peak})
    rows.sort(key=lambda row: (math.isnan(row["peak"]), -_finite(row["peak"])))
    return rows[:limit], max(0, len(rows) - limit)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _finite(value: float) -> float:
    return float("-inf") if math.isnan(value) else value


def failing_conditions(conditions: Iterable[Mapping[str, Any]]) -> list[str]:
    """Conditions in a bad state: a positive condition False, a pressure condition True."""
    bad: list[str] = []
    for condition in conditions:
        kind = str(condition.get("type", ""))
        status = str(condition.get("status", ""))
        negative = kind.endswith("Pressure") or kind in {"NetworkUnavailable", "ReplicaFailure"}
        if (negative and status == "True") or (not negative and status == "False"):
            reason = condition.get("reason") or ""
            message = str(condition.get("message") or "")[:MAX_LINE]
            bad.append(f"{kind}={status} {reason}: {message}".rstrip(": "))
    return bad
