"""File mode: an edit made while the folder is being read is never missed."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import sqlalchemy as sa

from services.controller.configdir import ConfigDirectory
from services.controller.reconciler import Reconciler
from services.controller.secrets import folder_check
from shared.db import resources as db_resources
from shared.db.engines import make_engine, make_session_factory
from shared.settings import DatabaseSettings

WORKFLOW = """\
apiVersion: punchingfist.io/v1alpha1
kind: Workflow
metadata: {{name: {name}}}
spec:
  steps: [{{name: a, type: cli, command: [echo, hi]}}]
"""


class EditingDuringFirstSync(Reconciler):
    """A reconciler that, while the first sync applies, has someone edit a file."""

    def __init__(self, sessions: sa.orm.sessionmaker[sa.orm.Session], edit: Path) -> None:
        super().__init__(sessions, folder_check(edit.parent))
        self._edit: Path | None = edit

    def apply(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        outcome = super().apply(*args, **kwargs)
        if self._edit is not None:
            self._edit.write_text(WORKFLOW.format(name="edited"))
            self._edit = None
        return outcome


def test_an_edit_during_the_first_sync_is_loaded_at_the_next_poll(
    database_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "wf.yaml").write_text(WORKFLOW.format(name="first"))
    engine = make_engine(DatabaseSettings(url=database_url))
    sessions = make_session_factory(engine)
    watcher = ConfigDirectory(EditingDuringFirstSync(sessions, folder / "wf.yaml"), folder)
    stop = threading.Event()
    # A refresh interval far longer than the test: only the file change may reload it.
    thread = threading.Thread(target=watcher.run, args=(stop, 0.05, 3600.0), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        found = None
        while time.monotonic() < deadline and found is None:
            with sessions() as session:
                found = db_resources.get_spec(session, "Workflow", "default", "edited")
            time.sleep(0.05)
        assert found is not None, "the edit made during the first sync was not loaded"
    finally:
        stop.set()
        thread.join(5)
        engine.dispose()
