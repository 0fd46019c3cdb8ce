"""``make eval`` with ``PF_EVAL_LLM``: the evals' model path, run as a user runs it.

``python -m pytest tests/evals -m llm_eval`` in a child process, ``PF_EVAL_LLM``
naming the compose stand-in model (``services.standins.llm``, OpenAI-compatible over
HTTP, no internet): the harness parses the setting (the API key from
``apiKeyFile``), every recorded scenario goes through LangChain's loop against that
server and the Kubernetes API double, and the model's score is printed. The stand-in
reads the cluster once and answers ``unknown`` every time, so exactly the ``unknown``
scenario is right: a score of 1 that comes from its answers, not from the rules.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import harness
import pytest

from tests.functional.agent.conftest import REPO


@pytest.mark.timeout(240)
def test_pf_eval_llm_runs_every_scenario_against_the_model_and_prints_its_score(
    standin: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "llm-key"
    key_file.write_text("sk-eval\n")
    env = {
        **os.environ,
        "PF_EVAL_LLM": (
            f"provider=local,endpoint={standin},model=stand-in,apiKeyFile={key_file},timeout=20"
        ),
    }
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/evals", "-m", "llm_eval", "-p", "no:cacheprovider"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    out = finished.stdout
    names = harness.scenario_names()
    # Every scenario ran against the model (none skipped), and a miss fails the run.
    assert finished.returncode == 1, out[-4000:]
    assert f"{len(names) - 1} failed, 1 passed" in out, out[-4000:]
    assert "skipped" not in out.split("short test summary info")[-1]
    assert f"agent eval (llm stand-in): 1/{len(names)} categories right" in out, out[-4000:]
    assert "  ok  unknown      expected unknown      got unknown" in out
    assert "  MISS crashloop    expected crashloop    got unknown" in out
    # The misses carry the model's own summary: it answered over HTTP.
    assert "Stand-in model (services.standins.llm)" in out
    # Only the model's mode ran: the rules' score is not in this run.
    assert "agent eval (rules)" not in out


def test_without_pf_eval_llm_the_model_evals_are_skipped_with_how_to_run_them() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PF_EVAL_LLM"}
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/evals",
            "-m",
            "llm_eval",
            "-rs",
            "-k",
            "unknown",
            "-p",
            "no:cacheprovider",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout[-3000:]
    assert "1 skipped" in finished.stdout
    assert "set PF_EVAL_LLM=provider=...,endpoint=...,model=..." in finished.stdout
