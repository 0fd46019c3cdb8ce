"""The ingest worker quits once, even when a second quit signal lands mid-quit.

Ctrl-C reaches a gunicorn worker twice (SIGINT from the terminal, SIGQUIT from the
arbiter). gthread's handler, entered again while the first call held the thread
pool's shutdown lock, deadlocked: the worker never exited and kept the port.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from services.ingest import workers


class _Config:
    def worker_int(self, _worker: Any) -> None:
        pass


def test_a_quit_signal_during_the_quit_is_ignored() -> None:
    worker = object.__new__(workers.worker_class(read_timeout=1.0, max_body_bytes=10))
    worker.tpool = ThreadPoolExecutor(max_workers=1)
    worker.cfg = _Config()
    worker.alive = True
    queue = worker.tpool._work_queue

    class SignalInside:
        """The pool's queue; its put runs inside shutdown with the lock held."""

        def put(self, item: Any) -> None:
            worker.handle_quit(3, None)  # SIGQUIT from the arbiter, arriving now
            queue.put(item)

    worker.tpool._work_queue = SignalInside()  # type: ignore[assignment]
    exits: list[object] = []

    def quit_worker() -> None:
        try:
            worker.handle_quit(2, None)
        except SystemExit as exc:
            exits.append(exc.code)

    thread = threading.Thread(target=quit_worker, daemon=True)
    thread.start()
    thread.join(timeout=1.5)
    assert not thread.is_alive(), "the worker deadlocked in its quit handler"
    assert exits == [0]
    assert worker.alive is False
