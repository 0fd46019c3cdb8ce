"""What a step costs on PostgreSQL, in statements: the engine's per-step overhead
there was its round trips (docs/performance.md), so a change that adds one shows here.

A conditional step is one SELECT (the run and its steps) and one UPDATE (the
compare-and-set with the skips and the run's context riding on it), each committing
on its own: no BEGIN, no COMMIT. A start stays one transaction (it locks the run).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from enginekit import Harness, inprocess_worker, start_run

from services.engine.app import create_app
from services.engine.runtime import runtime_for
from shared.settings import Settings

pytestmark = pytest.mark.postgres


def conditional(name: str, **branches: Any) -> dict[str, Any]:
    return {"name": name, "type": "conditional", "condition": "true", **branches}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_conditional_step_is_one_select_and_one_update_without_a_transaction(
    harness: Harness, engine_settings: Callable[..., Settings]
) -> None:
    harness.put_workflow(
        {
            "steps": [
                conditional("first", then={"skip": ["third"]}),
                conditional("second"),
                conditional("third"),
                conditional("fourth"),
            ],
            "outputs": [{"name": "branch", "value": "{{ steps.first.output.branch }}"}],
        }
    )
    app = create_app(engine_settings())
    runtime = runtime_for(app)
    assert runtime.db_alone is not None
    statements: list[tuple[str, str]] = []
    transactions: list[str] = []

    def seen(engine: str) -> Callable[..., None]:
        def before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            statements.append((engine, statement.split(None, 1)[0].upper()))

        return before

    sa.event.listen(runtime.db, "before_cursor_execute", seen("transaction"))
    sa.event.listen(runtime.db_alone, "before_cursor_execute", seen("alone"))
    sa.event.listen(runtime.db, "commit", lambda _conn: transactions.append("commit"))
    with inprocess_worker(app):
        run_id = harness.add_run()
        start_run(app, run_id)
        run = harness.wait_finished(run_id)

    assert run.phase == "Succeeded", run.error
    assert run.outputs == {"branch": "then"}
    assert [step.phase for step in harness.steps(run_id)] == [
        "Succeeded",
        "Succeeded",
        "Skipped",
        "Succeeded",
    ]
    # The start: one transaction (the run locked, the fingerprint lock, the caps'
    # counts, then steps + run + alert as one statement).
    assert transactions == ["commit"]
    assert [kind for engine, kind in statements if engine == "transaction"] == [
        "SELECT",
        "SELECT",
        "SELECT",
        "WITH",
    ]
    # Three steps ran (the third was skipped by the first, and its message finds
    # it finished: one SELECT), each a SELECT and an UPDATE.
    assert [kind for engine, kind in statements if engine == "alone"] == [
        "SELECT",
        "WITH",
        "SELECT",
        "WITH",
        "SELECT",
        "SELECT",
        "WITH",
    ]
