"""``wait_for``: the one way the tests wait for something another thread or process does.

Functional tests watch real workers, servers and controllers, which finish in their
own time; a fixed ``sleep`` is either slow or flaky. Poll a condition instead, and
when it never holds, fail with what was awaited rather than a bare ``assert``. Not
for proving that something does *not* happen: that needs a deliberate sleep, with a
comment saying how long and why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T],
    timeout: float = 10.0,
    what: str = "",
    *,
    interval: float = 0.02,
    ignoring: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``condition`` until it returns something truthy, and return that.

    ``ignoring`` lists exceptions that mean "not yet" (a server that refuses
    connections while it starts). Raises AssertionError after ``timeout`` seconds,
    naming ``what`` (or the condition) and the last exception ignored.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = condition()
        except ignoring as error:
            last_error = error
        else:
            if value:
                return value
        if time.monotonic() >= deadline:
            because = f" (last: {last_error!r})" if last_error is not None else ""
            awaited = what or repr(condition)
            raise AssertionError(f"timed out after {timeout:g} s waiting for {awaited}{because}")
        time.sleep(interval)
