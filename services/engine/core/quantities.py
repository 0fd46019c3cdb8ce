"""Kubernetes resource quantities (``250m``, ``1.5``, ``128Mi``, ``12345n``) as numbers. Pure.

``kubectl top`` compares usage with limits; both come as quantity strings. CPU is
returned in millicores, memory in bytes. An unreadable quantity is None, never an
exception: it came from a server (or a recording) we do not control.
"""

from __future__ import annotations

import re

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([a-zA-Z]{0,2})$")
_SUFFIX = {
    "": 1.0,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 1024.0,
    "Mi": 1024.0**2,
    "Gi": 1024.0**3,
    "Ti": 1024.0**4,
}


def parse(value: object) -> float | None:
    """The quantity in base units (cores, bytes), or None."""
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    match = _QUANTITY.match(value.strip())
    if not match or match.group(2) not in _SUFFIX:
        return None
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def millicores(value: object) -> float | None:
    cores = parse(value)
    return None if cores is None else cores * 1000.0


def human_bytes(value: float | None) -> str:
    if value is None:
        return "?"
    for unit in ("", "Ki", "Mi", "Gi"):
        if abs(value) < 1024 or unit == "Gi":
            return f"{value:.0f}{unit}" if unit == "" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}Gi"  # pragma: no cover - the loop returns at Gi
