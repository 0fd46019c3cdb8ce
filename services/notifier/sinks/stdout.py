"""The ``stdout`` Sink: a report on the notifier's standard output.

For people running ``make run`` (``format: text``, a few readable lines) and for log
collectors (``format: json``, one JSON object per line). Alert values are printed
with their control characters escaped: a label must not be able to move the cursor
or recolour a terminal (ANSI escape injection).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

from services.notifier.core import messages
from services.notifier.sinks import registries

# C0/C1 control characters but newline (a multi-line value is indented instead).
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
_WIDTH = 11


def _clean(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return _CONTROL.sub(lambda m: repr(m.group(0))[1:-1], text.strip())


def _line(label: str, value: Any) -> str:
    indent = "\n" + " " * (_WIDTH + 2)
    return f"  {label:<{_WIDTH}}{indent.join(_clean(value).splitlines())}"


def text_report(message: Mapping[str, Any]) -> str:
    run = message["run"]
    alert = message.get("alert") or {}
    outputs = message.get("outputs") or {}
    title = alert.get("name") or run["workflow"]
    severity = f" ({alert['severity']})" if alert.get("severity") else ""
    lines = [f"== Punching Fist: {_clean(f'{title}{severity}')}: run {run['phase']} =="]
    if alert:
        labels = " ".join(f"{k}={v}" for k, v in sorted((alert.get("labels") or {}).items()))
        lines.append(_line("alert", f"{alert.get('status', '')}  {labels}"))
        summary = (alert.get("annotations") or {}).get("summary")
        if summary:
            lines.append(_line("summary", summary))
    for label, key in (("findings", "summary"), ("root cause", "rootCause")):
        if outputs.get(key):
            lines.append(_line(label, outputs[key]))
    if outputs.get("confidence") not in (None, ""):
        lines.append(_line("confidence", outputs["confidence"]))
    others = {k: v for k, v in outputs.items() if k not in {"summary", "rootCause", "confidence"}}
    for key, value in sorted(others.items()):
        lines.append(_line(f"{key}", value))
    steps = message.get("steps") or {}
    if steps:
        lines.append(
            _line("steps", ", ".join(f"{name} {s.get('phase')}" for name, s in steps.items()))
        )
    approval = message.get("approval") or {}
    if approval:
        lines.append(
            _line(
                f"approval {approval.get('status', 'pending')}",
                f"{approval.get('what')} (risk {approval.get('risk')}): {approval.get('why')}",
            )
        )
    for change in message.get("approvals") or []:
        check = messages.needs_a_check(change)
        if check is not None:
            lines.append(_line("CHECK", f"{change.get('what')}: {check}"))
    if run.get("error"):
        lines.append(_line("error", run["error"]))
    if run.get("message"):
        lines.append(_line("message", run["message"]))
    lines.append(_line("run", f"{run['workflow']}  {run['url']}"))
    return "\n".join(lines) + "\n"


def json_report(message: Mapping[str, Any]) -> str:
    steps = {name: s.get("phase") for name, s in (message.get("steps") or {}).items()}
    document = {
        "alert": message.get("alert") or None,
        "run": message["run"],
        "outputs": message.get("outputs") or {},
        "steps": steps,
        "sink": message["sink"]["name"],
        "event": message.get("event") or "run_finished",
        "approval": message.get("approval") or None,
    }
    return json.dumps(document, default=str, separators=(",", ":")) + "\n"


def _write_all(data: bytes) -> None:
    # One write per report where the OS allows it, so that reports from several pool
    # processes do not interleave line by line.
    view = memoryview(data)
    while view:
        written = os.write(1, view)
        view = view[written:]


@registries.register()
class StdoutSink(registries.Sink):
    type = "stdout"

    def render(self, target: registries.Target, message: Mapping[str, Any]) -> str:
        if target.config.get("format") == "json":
            return json_report(message)
        return text_report(message)

    def send(self, payload: Any, ctx: registries.SendContext) -> registries.Sent:
        data = str(payload).encode()
        _write_all(data)
        return registries.Sent({"bytes": len(data)})
