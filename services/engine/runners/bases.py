"""The runner contract: ``Runner.run(Command) -> Completed``.

A step type builds the ``Command`` (argv or a shell string, environment, limits,
labels); a runner runs it to completion and reports what the command said. Raising
is for what is not the command's own result: ``CommandTimeoutError`` (temporary, the
step may retry) when it ran past its timeout, ``PermanentError`` when it cannot be
started at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Protocol

from shared.errors import TemporaryError


@dataclasses.dataclass(frozen=True)
class Completed:
    """A finished command, from any runner."""

    exit_code: int
    stdout: str
    stderr: str
    # Bytes dropped beyond the output limit (stdout + stderr).
    truncated: int = 0


@dataclasses.dataclass(frozen=True)
class Command:
    """What a runner runs: argv, or a shell string when the step says ``shell: true``."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    timeout: float
    output_limit: int
    shell: bool = False
    image: str | None = None
    # Stable, unique-per-attempt label for what the runner creates (a Job name).
    label: str = ""
    # What the command is for (run id, step, attempt), for labelling what it creates.
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # The Workflow's namespace, and for a Job runner its pod's identity and size.
    namespace: str = ""
    service_account: str | None = None
    automount_token: bool = False
    # {"requests": {...}, "limits": {...}} from runtime.resources, over the defaults.
    resources: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)


class Runner(Protocol):
    def run(self, command: Command) -> Completed:
        """Run to completion; TemporaryError on timeout, PermanentError if it cannot start."""


class CommandTimeoutError(TemporaryError):
    """The command ran past its step's timeout and was killed."""
