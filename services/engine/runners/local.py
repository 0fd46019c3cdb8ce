"""The local runner: a cli step as a subprocess of the worker.

The command runs in its own session (process group). The group is killed when the
command runs past its timeout and also as soon as the command itself has exited:
whatever it left running in the background (``sleep infinity &``) belongs to the
step, and a step that is over must not keep a worker slot or a process behind.
Output is read with ``select`` against the deadline, never by waiting on a pipe:
a process that escaped the group (``setsid``) and holds the pipe open is given a
short grace after the command ended, then its pipe is closed and the step ends.
The first ``output_limit`` bytes of each stream are kept and the rest is counted.

The child gets a small allowlisted environment plus the step's own ``env``, never
the worker's: the worker's environment holds the database URL and credentials. That
is not isolation: the command runs as the worker's user and can read what that user
can, including ``/proc/<worker pid>/environ``. Whoever can create a Workflow with
``runner: local`` can therefore act as the engine; ``PF_ENGINE_LOCAL_RUNNER=false``
turns this runner off (``DisabledRunner``) where that trust is not given.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from typing import IO

from services.engine.runners.bases import Command, CommandTimeoutError, Completed
from shared.errors import PermanentError

# Variables a command may need from the worker's environment (kubectl, locale).
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "KUBECONFIG", "TMPDIR")
_CHUNK = 65536
# Seconds to keep reading after the command ended and its group was killed: enough
# for the pipes to drain, short because what still holds them escaped the group.
DRAIN_GRACE = 0.5
# Seconds to wait for a killed group's processes to be gone.
KILL_WAIT = 1.0


class _Stream:
    def __init__(self, pipe: IO[bytes], limit: int) -> None:
        self.pipe = pipe
        self.limit = limit
        self.kept = bytearray()
        self.dropped = 0

    def take(self, chunk: bytes) -> None:
        room = self.limit - len(self.kept)
        if room > 0:
            self.kept += chunk[:room]
        self.dropped += max(0, len(chunk) - max(room, 0))

    def text(self) -> str:
        return bytes(self.kept).decode("utf-8", errors="replace")


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
        except ValueError as exc:  # a NUL byte in an argument or a value
            raise PermanentError(f"cannot start {argv[0]!r}: {exc}") from exc
        assert process.stdout is not None
        assert process.stderr is not None
        out = _Stream(process.stdout, command.output_limit)
        err = _Stream(process.stderr, command.output_limit)
        try:
            timed_out = self._communicate(process, (out, err), command.timeout)
        finally:
            # Whatever happened (the end, a timeout, the worker shutting down): no
            # process of the step outlives it, and the pipes are closed.
            self._kill_group(process)
            for stream in (out, err):
                stream.pipe.close()
        if timed_out:
            raise CommandTimeoutError(
                f"timed out after {command.timeout:g}s and was killed", delay=0
            )
        return Completed(
            exit_code=process.returncode,
            stdout=out.text(),
            stderr=err.text(),
            truncated=out.dropped + err.dropped,
        )

    def _communicate(
        self, process: subprocess.Popen[bytes], streams: tuple[_Stream, _Stream], timeout: float
    ) -> bool:
        """Read output until the command ended and its pipes drained; True on a timeout."""
        deadline = time.monotonic() + timeout
        # Set once the command has exited (or was killed): read only until then.
        stop_at: float | None = None
        timed_out = False
        with contextlib.ExitStack() as stack:
            selector = stack.enter_context(selectors.DefaultSelector())
            for stream in streams:
                selector.register(stream.pipe, selectors.EVENT_READ, stream)
            # A pidfd becomes readable when the command exits, so the end of a command
            # whose background children hold the pipes is seen at once, not polled.
            with contextlib.suppress(AttributeError, OSError):
                pidfd = os.pidfd_open(process.pid)
                stack.callback(os.close, pidfd)
                selector.register(pidfd, selectors.EVENT_READ, None)
            while True:
                now = time.monotonic()
                if stop_at is None:
                    if _exited(process.pid):
                        self._kill_group(process)
                        stop_at = now + DRAIN_GRACE
                    elif now >= deadline:
                        self._kill_group(process)
                        timed_out = True
                        stop_at = now + DRAIN_GRACE
                pipes_open = any(key.data is not None for key in selector.get_map().values())
                if stop_at is not None and (now >= stop_at or not pipes_open):
                    break
                wait = min(0.05, max(0.0, (stop_at or deadline) - now))
                for key, _ in selector.select(wait):
                    if key.data is None:  # the pidfd: seen by _exited on the next turn
                        selector.unregister(key.fileobj)
                        continue
                    chunk = os.read(key.fd, _CHUNK)
                    if chunk:
                        key.data.take(chunk)
                    else:
                        selector.unregister(key.fileobj)
        return timed_out

    @staticmethod
    def _kill_group(process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the command's process group, then reap the command.

        The group is killed before the command is reaped: until then its pid (the
        group's id) cannot be reused by an unrelated process.
        """
        if process.returncode is not None:
            return  # reaped: done by an earlier call, and its group id may be reused
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        # SIGKILL is delivered asynchronously: give the rest of the group a moment to
        # die, so that a step that ended has no process left.
        give_up = time.monotonic() + KILL_WAIT
        while not _group_dead(process.pid) and time.monotonic() < give_up:
            time.sleep(0.005)


def _group_dead(pgid: int) -> bool:
    """Whether no process of group ``pgid`` is still running.

    Killed orphans stay zombies (still members) until whoever inherited them reaps
    them, which this process cannot do, so on Linux the group's members are read
    from /proc and zombies count as dead.
    """
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return True
    try:
        entries = os.listdir("/proc")
    except OSError:
        return False
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as stat:
                # After the command name: state, ppid, pgrp, ...
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return False
    return True


def _exited(pid: int) -> bool:
    """Whether the child ``pid`` has exited, without reaping it (its pid stays ours)."""
    try:
        result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return result is not None


class DisabledRunner:
    """Stands for a runner this engine was configured without; says why when used."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def run(self, command: Command) -> Completed:
        raise PermanentError(self.reason)
