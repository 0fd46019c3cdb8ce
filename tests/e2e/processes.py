"""Child processes of the end-to-end harness: started, stopped, killed and restarted by pid.

Each process runs in its own session (so its process group is its pid) with its output
appended to one log file; a restart appends to the same file, so a failed run's log
tells the whole story. ``kill`` is SIGKILL of the group and of every descendant that
left it (commands the engine runs in their own sessions), as when a container dies.

What this module must not do: find processes by name. Everything it ends, it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.support.waiting import wait_for
from tests.support.workers import descendants


class Process:
    """One command of the harness (``name`` is what the logs and messages call it)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        *,
        cwd: Path | None = None,
        stop_timeout: float = 15.0,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.cwd = cwd
        self.stop_timeout = stop_timeout
        # What "stop" sends: SIGTERM, but SIGINT for PostgreSQL (its SIGTERM waits for
        # every client to leave; SIGINT is its fast shutdown).
        self.stop_signal = stop_signal
        self.popen: subprocess.Popen[bytes] | None = None
        # Every pid this object started, for the leak check at the end of a run.
        self.pids: list[int] = []

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> Process:
        assert not self.running(), f"{self.name} is already running (pid {self.pid})"
        with self.log_path.open("ab") as log:
            log.write(f"\n=== harness: starting {self.name}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pids.append(self.popen.pid)
        return self

    def stop(self) -> int | None:
        """SIGTERM the group, wait for it, then SIGKILL what is left; the exit code."""
        self.terminate()
        return self.wait_stopped()

    def terminate(self) -> None:
        """``stop_signal`` to the group without waiting (``wait_stopped`` finishes the stop)."""
        self._leftovers: list[int] = []
        if self.popen is None or self.popen.poll() is not None:
            return
        self._leftovers = descendants(self.popen.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, self.stop_signal)

    def wait_stopped(self) -> int | None:
        if self.popen is None:
            return None
        try:
            self.popen.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self._note(f"did not stop within {self.stop_timeout:g} s; killed")
            self.kill()
            return self.popen.returncode
        self._reap(getattr(self, "_leftovers", []))
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL the process, its group and every descendant at once."""
        if self.popen is None:
            return
        doomed = descendants(self.popen.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.popen.wait(10)
        self._note("killed (SIGKILL)")

    def signal(self, signum: int) -> None:
        assert self.popen is not None
        os.killpg(self.popen.pid, signum)

    def restart(self) -> Process:
        self.stop()
        return self.start()

    def _reap(self, pids: list[int]) -> None:
        """Children that outlived a clean stop (none should): killed, and said so."""
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, 0)
                os.kill(pid, signal.SIGKILL)
                self._note(f"descendant {pid} outlived the stop; killed")

    def _note(self, text: str) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"\n=== harness: {self.name} {text}\n".encode())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_exited(self, timeout: float = 10.0) -> int:
        assert self.popen is not None
        popen = self.popen
        wait_for(lambda: popen.poll() is not None, timeout, f"{self.name} to exit")
        return int(popen.returncode)
