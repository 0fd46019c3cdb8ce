"""The common tail of every ``punchingfist`` entry point.

Read the settings, configure logging, run the chosen subcommand, and turn a
configuration error into exit code 2 with a message naming the variable.
"""

from __future__ import annotations

import argparse
import logging
import sys

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
