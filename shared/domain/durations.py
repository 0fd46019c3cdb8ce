"""Go-style durations (``30s``, ``5m``, ``1h30m``, ``500ms``, ``1.5h``) as seconds.

Kubernetes users write durations the way Go's ``time.ParseDuration`` reads them, and
the seed's resources did (``timeout: 5m``). Units: ``ns``, ``us``, ``ms``, ``s``,
``m``, ``h``; no sign, no bare numbers (``5`` could mean anything).
"""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# Longer units first so that "ms" is not read as "m" followed by a stray "s". Each
# number must be followed by a unit, so the pattern cannot backtrack badly.
_PART = r"[0-9]+(?:\.[0-9]+)?(?:ns|us|ms|s|m|h)"
# For validators and the CRD's OpenAPI ``pattern``.
PATTERN = rf"^(?:{_PART})+$"
_PARTS = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|ms|s|m|h)")
_WHOLE = re.compile(PATTERN)
MESSAGE = "Must be a duration such as 30s, 5m, 1h30m or 500ms (units: ns, us, ms, s, m, h)."


def seconds(text: str) -> float:
    """``"1h30m"`` -> ``5400.0``; ``ValueError`` (with ``MESSAGE``) when it is not one."""
    if not _WHOLE.match(text):
        raise ValueError(MESSAGE)
    return sum(float(number) * _UNITS[unit] for number, unit in _PARTS.findall(text))
