"""The common tail of every ``punchingfist`` entry point.

Read the settings, configure logging, run the chosen subcommand, and turn a
configuration error into exit code 2 with a message naming the variable. A database
that cannot be reached is the most common first-run mistake (no ``createdb``, wrong
host): it becomes one line saying which database and what to do, not a chained
traceback of ninety lines.
"""

from __future__ import annotations

import argparse
import logging
import sys

import sqlalchemy as sa

from shared import logs, settings
from shared.errors import ConfigError

log = logging.getLogger("punchingfist")


def run(args: argparse.Namespace) -> int:
    """Run ``args.handler(args)``, the function a subcommand registered."""
    try:
        config = settings.from_env()
    except ConfigError as exc:
        print(f"punchingfist: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.log_level, config.log_format)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        log.error("configuration error", extra={"error": str(exc)})
        print(f"punchingfist: configuration error: {exc}", file=sys.stderr)
        return 2
    except sa.exc.OperationalError as exc:
        # Printed, not logged: the log handler writes to the same stderr, and one
        # plain line is what a person starting the command should see.
        print(f"punchingfist: {database_unreachable(config.database.url, exc)}", file=sys.stderr)
        return 1


def database_unreachable(url: str, exc: sa.exc.OperationalError) -> str:
    """One line: which database (password hidden), the driver's reason, and a hint."""
    where = sa.make_url(url)
    shown = where.render_as_string(hide_password=True)
    reason = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
    first = reason[0] if reason else type(exc).__name__
    hint = ""
    if where.get_backend_name() == "postgresql" and "does not exist" in first:
        host = where.host or "localhost"
        user = f" -U {where.username}" if where.username else ""
        hint = f"; create it with: createdb -h {host}{user} {where.database}"
    elif where.get_backend_name() == "sqlite":
        hint = "; check that the folder exists and is writable (PF_VAR_DIR)"
    return f"cannot use the database {shown}: {first}{hint}"
