"""Agent evals: recorded scenarios, scored by whether the investigator found the category.

The rule-based investigator runs on every scenario in ``make test`` and ``make eval``;
with ``PF_EVAL_LLM`` set (``provider=local,endpoint=http://127.0.0.1:11434,model=llama3.1``,
optional ``apiKeyFile=PATH``) the same scenarios run against that model, marked
``llm_eval`` and off otherwise. The score of each mode is printed at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import SCORES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for mode, rows in sorted(SCORES.items()):
        hits = sum(1 for _, expected, got in rows if expected == got)
        terminalreporter.write_sep("-", f"agent eval ({mode}): {hits}/{len(rows)} categories right")
        for name, expected, got in sorted(rows):
            mark = "ok " if expected == got else "MISS"
            terminalreporter.write_line(f"  {mark} {name:<12} expected {expected:<12} got {got}")
