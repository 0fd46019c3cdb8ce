"""Both log formats carry the fields a caller binds."""

from __future__ import annotations

import json
import logging

from shared import logs


def record(**extra: object) -> logging.LogRecord:
    made = logging.makeLogRecord({"name": "punchingfist", "levelname": "INFO", "msg": "started"})
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_text_lines_end_with_key_value_pairs() -> None:
    line = logs.TextFormatter().format(record(component="ingest", pid=42))
    assert line.endswith("INFO punchingfist: started component=ingest pid=42")


def test_text_values_with_spaces_or_quotes_are_quoted() -> None:
    line = logs.TextFormatter().format(record(error='bad "value" here', empty="", data={"a": 1}))
    assert 'error="bad \\"value\\" here"' in line
    assert 'empty=""' in line
    assert 'data="{\\"a\\": 1}"' in line


def test_json_and_text_carry_the_same_fields() -> None:
    made = record(phase="Succeeded", run_id="r1")
    entry = json.loads(logs.JsonFormatter().format(made))
    text = logs.TextFormatter().format(made)
    for key in ("phase", "run_id"):
        assert f"{key}={entry[key]}" in text


def bound_fields() -> dict[str, object]:
    made = record()
    logs.BoundFields().filter(made)
    return logs.fields_of(made)


def test_fields_bound_half_way_last_until_the_block_ends() -> None:
    with logs.bound(task_id="t1"):
        with logs.bound(run_id="r1"):
            # What a task learns once it has loaded its run.
            logs.bind(step="investigate", alert_id="a1")
            assert bound_fields() == {
                "task_id": "t1",
                "run_id": "r1",
                "step": "investigate",
                "alert_id": "a1",
            }
        assert bound_fields() == {"task_id": "t1"}
    assert bound_fields() == {}


def test_a_record_own_field_wins_over_a_bound_one() -> None:
    with logs.bound(run_id="r1"):
        made = record(run_id="r2")
        logs.BoundFields().filter(made)
        assert logs.fields_of(made)["run_id"] == "r2"
