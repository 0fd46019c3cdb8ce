"""The folder where a prefork worker's processes write their Prometheus samples.

Why this is its own module, and why it must not import ``prometheus_client``: the
library chooses how it stores values when it is first imported, from
``PROMETHEUS_MULTIPROC_DIR``. A Celery worker with the prefork pool runs its tasks in
pool processes, so a counter incremented there lives in that process only; in
multiprocess mode each process writes its samples to a memory-mapped file in the
folder and the worker's main process, which serves ``/metrics``, sums the files at
every scrape. The folder therefore has to be set before anything imports
``prometheus_client``, which is what :func:`use_folder` does and checks.

Counters of a pool process that died stay in its files, so totals never go down
when Celery replaces a process. The folder is emptied at start: samples of an
earlier run of the worker would otherwise be added to this one's.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def use_folder(var_dir: Path, name: str) -> Path:
    """Create an empty ``var_dir/metrics/<name>-<pid>`` and point prometheus_client at it."""
    if "prometheus_client" in sys.modules and os.environ.get(ENV) is None:
        # A programming error, not a setting: the samples of every pool process would
        # silently be lost.
        raise RuntimeError(
            "prometheus_client was imported before its multiprocess folder was set; "
            "call shared.multiprocess.use_folder before importing the app"
        )
    folder = var_dir / "metrics" / f"{name}-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ[ENV] = str(folder)
    return folder


def remove_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
