"""What the fault tests need beyond the harness: a private PostgreSQL cluster, ledgers.

``PrivatePostgres`` is a cluster made with ``initdb`` in a temporary folder and run
with ``pg_ctl`` on a free loopback port, so that a test may stop and restart *its*
server without touching the machine's (which other tests share). PostgreSQL refuses
to run as root: as root, the cluster's folder belongs to the ``postgres`` user and
every command runs as that user.

A ledger is a file a Workflow's cli step appends one line to each time it runs (the
scenarios' ``$TMPDIR/...``; the test gives the engine its ``TMPDIR``). Counting its
lines is how a test sees that a step ran once, not what the engine says it did.

What this module must not do: stop anything it did not start (it ends its cluster
through ``pg_ctl`` and the cluster's own pid file).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.e2e.harness import free_port

PG_BIN = Path(os.environ.get("PF_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


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


class PostgresUnavailableError(Exception):
    """The machine cannot make a private cluster (no binaries, no postgres user)."""


class PrivatePostgres:
    """One ``initdb`` cluster on 127.0.0.1:<free port>, trust authentication, user postgres."""

    def __init__(self) -> None:
        for tool in ("initdb", "pg_ctl"):
            if not (PG_BIN / tool).exists():
                raise PostgresUnavailableError(f"{PG_BIN / tool} is not installed")
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PostgresUnavailableError("root, and no postgres user to run as") from exc
            self.user = "postgres"
        self.port = free_port()
        # Not under pytest's tmp_path: that is private to root, and the server runs
        # as postgres.
        self.folder = Path(tempfile.mkdtemp(prefix="ft_pg_"))
        self.data = self.folder / "data"
        self.log_path = self.folder / "postgres.log"
        if self.user is not None:
            shutil.chown(self.folder, self.user, self.user)
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, timeout: float = 60.0) -> None:
        done = subprocess.run(
            argv,
            user=self.user,
            group=self.user,
            extra_groups=[] if self.user else None,
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}\n"
                f"{self.log()[-3000:]}"
            )

    def init(self) -> PrivatePostgres:
        self._run(
            str(PG_BIN / "initdb"),
            "--pgdata",
            str(self.data),
            "--username",
            "postgres",
            "--auth",
            "trust",
            "--no-sync",
            "--encoding",
            "UTF8",
        )
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.folder} "
            # A test cluster: no fsync, and no checkpoint storms in a short run.
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(PG_BIN / "pg_ctl"),
            "--pgdata",
            str(self.data),
            "--log",
            str(self.log_path),
            "--options",
            options,
            "--wait",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends every session (what a restart does to the services)."""
        self._run(str(PG_BIN / "pg_ctl"), "--pgdata", str(self.data), "--mode", mode, "stop")

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    @contextlib.contextmanager
    def running(self) -> Iterator[PrivatePostgres]:
        try:
            self.init()
            self.start()
            yield self
        finally:
            self.close()
