"""Structured logging: one line per event, with whatever ``extra`` a caller binds.

Configured once by each entry point; modules only call ``logging.getLogger``. Both
formats carry the same fields: JSON objects for machines (the default), and for a
terminal (``PF_LOG_FORMAT=text``) the message followed by ``key=value`` pairs, so a
line such as ``invalid resource file`` still says which file and why.

Fields can also be bound for a stretch of code (``bound(task_id=..., run_id=...)``,
as the Celery task adapters and ingest's webhook view do): every record logged
meanwhile, by any module, carries them unless it gives the same key itself. They
live in a context variable, so threads and concurrent tasks never see each other's.
The names are the same in every deployable (``alert_id``, ``run_id``, ``step``,
``task_id``), so that ``grep <alert id>`` over all their logs tells one alert's story.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import sys
import types
from collections.abc import Iterator, Mapping
from typing import Any

# Attributes every LogRecord has; anything else came from ``extra=`` and is emitted.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

# Libraries that log set-up chatter at INFO: alembic announces each of its plugins
# (seven lines per process start) before any migration runs.
_QUIET_LOGGERS = ("alembic.runtime.plugins",)


_BOUND: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "punchingfist_log_fields", default=types.MappingProxyType({})
)


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every record logged inside the block (nests; inner wins)."""
    token = _BOUND.set({**_BOUND.get(), **fields})
    try:
        yield
    finally:
        _BOUND.reset(token)


def bind(**fields: Any) -> None:
    """Add ``fields`` to the innermost ``bound`` block, until that block ends.

    For what is learnt half-way through a block (a task binds its run id on entry,
    and the alert and step once it has loaded them). Only inside a ``bound`` block:
    its exit restores what was there before, so nothing outlives it; outside one the
    fields would stay on the thread.
    """
    _BOUND.set({**_BOUND.get(), **fields})


class BoundFields(logging.Filter):
    """Copies the bound fields onto each record; a record's own ``extra`` wins.

    A handler filter rather than a formatter step, so that the fields are taken in
    the thread that logged (where the context variable holds them).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _BOUND.get().items():
            if key not in record.__dict__:
                setattr(record, key, value)
        return True


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields bound to a record, in the order they were given."""
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _STANDARD and not key.startswith("_")
    }


def _timestamp(record: logging.LogRecord) -> str:
    return dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(fields_of(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    # Quote what a reader (or a grep) would otherwise split: spaces, quotes, '='.
    if text == "" or any(char in text for char in ' "=\n\t'):
        return json.dumps(text)
    return text


class TextFormatter(logging.Formatter):
    """``TS LEVEL logger: message key=value ...``; values with spaces are quoted."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        pairs = " ".join(f"{key}={_text_value(value)}" for key, value in fields_of(record).items())
        if pairs:
            line = f"{line} {pairs}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def configure(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(BoundFields())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Python's warnings (Celery's as root, a library's deprecation) as log records,
    # in the same format, instead of raw multi-line text on the same stderr.
    logging.captureWarnings(True)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
