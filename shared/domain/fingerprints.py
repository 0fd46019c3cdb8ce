"""AlertManager's fingerprint of a label set, for senders that do not send one.

It must agree bit for bit with Prometheus' ``model.LabelSet.Fingerprint``: 64-bit
FNV-1a over the label names in sorted order, each name and value followed by the
separator byte 0xff, printed as 16 hex digits.
"""

from __future__ import annotations

from collections.abc import Mapping

_OFFSET64 = 14695981039346656037
_PRIME64 = 1099511628211
_MASK64 = (1 << 64) - 1
_SEPARATOR = 0xFF


def _add(digest: int, data: bytes) -> int:
    for byte in data:
        digest ^= byte
        digest = (digest * _PRIME64) & _MASK64
    return digest


def _utf8(text: str) -> bytes:
    # Go strings are bytes, so AlertManager never sends a lone surrogate; webhooks
    # refuses such alerts before they get here, and "surrogatepass" keeps this
    # function total (a UnicodeEncodeError here was a 500) for any other caller.
    return text.encode("utf-8", "surrogatepass")


def label_set_fingerprint(labels: Mapping[str, str]) -> str:
    digest = _OFFSET64
    for name in sorted(labels):
        digest = _add(digest, _utf8(name))
        digest = _add(digest, bytes((_SEPARATOR,)))
        digest = _add(digest, _utf8(labels[name]))
        digest = _add(digest, bytes((_SEPARATOR,)))
    return f"{digest:016x}"
