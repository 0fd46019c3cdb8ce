"""The local runner: a cli step as a subprocess of the worker.

The command runs in its own session (process group) so that a timeout kills it and
everything it started, not only the direct child. Output is read by two threads
that keep the first ``output_limit`` bytes and drain the rest, so a chatty command
can neither fill the worker's memory nor block on a full pipe.

The child gets a small allowlisted environment plus the step's own ``env``, never
the worker's: the worker's environment holds the database URL and credentials.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from typing import IO

from services.engine.steps.registries import Command, Completed
from shared.errors import PermanentError, TemporaryError

# Variables a command may need from the worker's environment (kubectl, locale).
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "KUBECONFIG", "TMPDIR")
_CHUNK = 65536


class CommandTimeoutError(TemporaryError):
    """The command ran past its step's timeout and was killed."""


class _Drain(threading.Thread):
    def __init__(self, stream: IO[bytes], limit: int) -> None:
        super().__init__(daemon=True)
        self._stream = stream
        self._limit = limit
        self.kept = bytearray()
        self.dropped = 0

    def run(self) -> None:
        while chunk := self._stream.read(_CHUNK):
            room = self._limit - len(self.kept)
            if room > 0:
                self.kept += chunk[:room]
            self.dropped += max(0, len(chunk) - max(room, 0))
        self._stream.close()


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


class LocalRunner:
    def __init__(self, base_env: dict[str, str] | None = None) -> None:
        source = os.environ if base_env is None else base_env
        self._base_env = {key: source[key] for key in INHERITED_ENV if key in source}

    def run(self, command: Command) -> Completed:
        argv = ["/bin/sh", "-c", command.argv[0]] if command.shell else list(command.argv)
        try:
            process = subprocess.Popen(
                argv,
                env={**self._base_env, **command.env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise PermanentError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from exc
        assert process.stdout is not None
        assert process.stderr is not None
        # Each stream may keep up to the limit; the sum is bounded by twice of it.
        out = _Drain(process.stdout, command.output_limit)
        err = _Drain(process.stderr, command.output_limit)
        out.start()
        err.start()
        try:
            exit_code = process.wait(timeout=command.timeout)
        except subprocess.TimeoutExpired:
            self._kill_group(process)
            out.join(5)
            err.join(5)
            raise CommandTimeoutError(
                f"timed out after {command.timeout:g}s and was killed", delay=0
            ) from None
        except BaseException:
            # The worker is shutting down (or the task was interrupted): leave no orphan.
            self._kill_group(process)
            raise
        out.join()
        err.join()
        return Completed(
            exit_code=exit_code,
            stdout=_decode(bytes(out.kept)),
            stderr=_decode(bytes(err.kept)),
            truncated=out.dropped + err.dropped,
        )

    @staticmethod
    def _kill_group(process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
