"""``script``: run one of the scripts the Workflow declares, by name, as an argv.

The model picks a name from ``runtime.tools.scripts`` and may add arguments; it never
writes the command. Arguments are appended to the declared argv (no shell ever
sees them) and may not start with ``-``, so that a model cannot turn a value into
an option of the script. The script runs in its own process group with a small
environment; at its timeout the whole group is killed, not just the first process,
so a script that forked a ``sleep`` does not outlive the step.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping
from typing import Any

from services.engine.core import reduction
from services.engine.tools import registries
from services.engine.tools.registries import Status, ToolContext, ToolResult, ToolSettings

MAX_ARGS = 16
MAX_OUTPUT = 256 * 1024


@registries.register()
class RunScript(registries.Tool):
    name = "script"
    description = (
        "Run a script the Workflow declares, by name, with optional plain arguments "
        "(no options, no shell). Returns the exit code and the output (errors and last lines)."
    )
    parameters = registries.parameters(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 63},
            "args": {
                "type": "array",
                "items": {"type": "string", "maxLength": 1024},
                "maxItems": MAX_ARGS,
            },
        },
        required=["name"],
    )

    def unavailable(self, settings: ToolSettings) -> str | None:
        return (
            None if settings.scripts else "the Workflow declares no scripts (runtime.tools.scripts)"
        )

    def _invoke(self, arguments: Mapping[str, Any], ctx: ToolContext) -> ToolResult:
        name = str(arguments["name"])
        script = ctx.settings.scripts.get(name)
        if script is None:
            known = ", ".join(sorted(ctx.settings.scripts)) or "none"
            raise registries.ToolDeniedError(
                f"no script named {name!r} is declared (declared: {known})"
            )
        args = [str(a) for a in arguments.get("args") or []]
        for arg in args:
            if arg.startswith("-") or "\x00" in arg:
                raise registries.ToolDeniedError(
                    f"argument {arg[:40]!r} looks like an option; plain values only"
                )
        timeout = min(script.timeout, registries.require_deadline(ctx, f"script {name}"))
        argv = [*script.command, *args]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise registries.ToolError(
                f"script {name}: cannot start {argv[0]!r}: {exc.strerror}"
            ) from exc
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            output, _ = process.communicate()
            text = reduction.reduce_log(output[:MAX_OUTPUT].decode("utf-8", errors="replace"))
            raise registries.ToolError(
                f"script {name}: killed after {timeout:.0f}s\n{text}"
            ) from None
        text = output[-MAX_OUTPUT:].decode("utf-8", errors="replace")
        data = {"name": name, "exit_code": process.returncode, "output": text}
        summary = f"script {name} exited {process.returncode}\n{reduction.reduce_log(text)}"
        if process.returncode != 0:
            return ToolResult(Status.ERROR, summary, data)
        return ToolResult(Status.OK if text.strip() else Status.EMPTY, summary, data)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
