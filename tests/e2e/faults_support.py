"""What the fault tests need beyond the harness: ledgers, AlertManager-shaped bodies.

A ledger is a file a Workflow's cli step appends one line to each time it runs (the
scenarios' ``$TMPDIR/...``; the test gives the engine its ``TMPDIR``). Counting its
lines is how a test sees that a step ran once, not what the engine says it did.

What this module must not do: start or stop processes (the harness does).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def ledger(path: Path) -> list[str]:
    """The lines a step appended to ``path`` (none when it never ran)."""
    return path.read_text().split() if path.exists() else []


def ledger_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable 16-hex fingerprint of a label set, like AlertManager's."""
    text = "\xff".join(f"{k}\xfe{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def alertmanager_webhook(
    alerts: Sequence[Mapping[str, str]], group: str, receiver: str = "punchingfist"
) -> dict[str, Any]:
    """An AlertManager webhook body (version 4) carrying firing alerts with these labels."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    return {
        "version": "4",
        "groupKey": f'{{}}:{{group="{group}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": receiver,
        "groupLabels": {"group": group},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example",
        "alerts": [
            {
                "status": "firing",
                "labels": dict(labels),
                "annotations": {"summary": f"{labels.get('alertname', '')} fired"},
                "startsAt": now,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example/graph",
                "fingerprint": fingerprint(labels),
            }
            for labels in alerts
        ],
    }
