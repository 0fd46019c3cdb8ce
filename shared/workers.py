"""Who holds a claim: ``host:pid`` of a worker process, and whether it is gone.

Claims (a delivery being sent, a step being run) store the claimant; a recovery
pass takes a claim over at once when its owner died on this host, and otherwise
only when its lease runs out. Whether a process on another host is alive cannot be
told from here, so only the lease decides for those.
"""

from __future__ import annotations

import os
import socket

_HOSTNAME = socket.gethostname()


def worker_id() -> str:
    """``host:pid`` of this process."""
    return f"{_HOSTNAME}:{os.getpid()}"


def is_dead(worker: str | None) -> bool:
    """True when ``worker`` was a process on this host that no longer exists."""
    if not worker:
        return False
    host, _, pid = worker.rpartition(":")
    if host != _HOSTNAME or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
