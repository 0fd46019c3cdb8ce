"""The table `make bench` writes: figures from the benchmarks' JSON against the issues'
targets, between the markers of docs/performance.md and nowhere else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import report

# Shaped as bench/ingest.py, engine.py, notifier.py, agent.py and storm.py write them.
INGEST = {
    "rows": [
        {
            "scenario": "bare 3-alert",
            "req_per_s": 2000.0,
            "alerts_per_s": 6000.0,
            "p50_ms": 3.0,
            "p99_ms": 6.0,
        },
        {
            "scenario": "bare 50-alert",
            "req_per_s": 1500.0,
            "alerts_per_s": 75000.0,
            "p50_ms": 5.0,
            "p99_ms": 9.0,
        },
        {
            "scenario": "sqlite full 3-alert",
            "req_per_s": 400.0,
            "alerts_per_s": 1200.0,
            "p50_ms": 20.0,
            "p99_ms": 48.0,
        },
        {
            "scenario": "sqlite full 50-alert",
            "req_per_s": 80.0,
            "alerts_per_s": 4000.0,
            "p50_ms": 80.0,
            "p99_ms": 160.0,
        },
        {
            "scenario": "sqlite 3-alert at 300/s (open loop)",
            "req_per_s": 198.0,
            "alerts_per_s": 594.0,
            "p50_ms": 2045.0,
            "p99_ms": 4068.0,
        },
        {
            "scenario": "sqlite 3-alert at 100/s (open loop)",
            "req_per_s": 100.0,
            "alerts_per_s": 300.0,
            "p50_ms": 8.6,
            "p99_ms": 34.0,
        },
        {
            "scenario": "sqlite duplicate 3-alert (1 conn)",
            "req_per_s": 478.0,
            "alerts_per_s": 1434.0,
            "p50_ms": 1.84,
            "p99_ms": 4.36,
        },
    ],
    "million": {
        "alerts": 1_000_000,
        "dedup_lookup_ms": {"p50": 0.147, "p99": 0.241},
        "list_api_ms": {
            "first page": {"p50": 2.28, "p99": 3.2},
            "status=received": {"p50": 2.61, "p99": 12.5},
        },
    },
}
ENGINE = [
    {
        "database": "postgresql",
        "cold_start_ms": 986.0,
        "rate_target": 100.0,
        "rate_achieved": 99.5,
        "first_step_p50_ms": 46.5,
        "first_step_p99_ms": 185.0,
        "first_step_max_ms": 232.0,
        "per_step_ms": 5.23,
        "bare_per_step_ms": 2.15,
        "ratio_per_step": 2.43,
    }
]
NOTIFIER = [
    {
        "database": "SQLite",
        "concurrency": 4,
        "deliveries_per_s": 85.0,
        "latency_rate_per_s": 20.0,
        "latency_p50_ms": 17.6,
        "latency_p99_ms": 30.3,
        "bare_sdk_calls_per_s_1_thread": 766.0,
    }
]
AGENT = {
    "tools": {
        "kubectl get pod": {"median_ms": 0.78, "p95_ms": 2.39},
        "kubectl describe pod": {"median_ms": 2.64, "p95_ms": 10.0},
    },
    "loop": {"wall_ms_per_iteration": 27.2, "overhead_ms_per_iteration": 7.9},
}


def storm_result(runs: int, seen: int) -> dict[str, Any]:
    checks = [
        ("runs created", 100, runs),
        ("alerts recorded", 100, 100),
        ("alerts seen (sum of times_seen)", 48_000, seen),
    ]
    return {
        "database": "PostgreSQL",
        "notifications": 10_000,
        "fingerprints": 100,
        "connections": 16,
        "alerts_posted": 48_000,
        "ingest_p50_ms": 50.0,
        "ingest_p95_ms": 120.0,
        "ingest_p99_ms": 300.0,
        "posting_seconds": 60.0,
        "notifications_per_s": 166.7,
        "all_runs_finished_s": 61.2,
        "last_run_after_last_post_s": 1.2,
        "phases": {"Succeeded": runs},
        "checks": [
            {"check": name, "expected": want, "actual": got, "ok": want == got}
            for name, want, got in checks
        ],
    }


RUN = {
    "command": "make bench",
    "date": "2026-11-29 09:55 UTC",
    "commit": "abc1234",
    "seconds": 900.0,
    "machine": {"CPU": "Test CPU @ 2.0GHz", "cores": 2, "RAM": "7.8 GiB", "Python": "3.11.2"},
    "uptime_before": "09:40:00 up 3:00, load average: 1.00, 2.00, 3.00",
    "uptime_after": "09:55:00 up 3:15, load average: 4.00, 5.00, 6.00",
    "benchmarks": {bench.name: {"exit_code": 0, "seconds": 60} for bench in report.BENCHMARKS},
}


def results_folder(tmp_path: Path, storm: dict[str, Any], run: dict[str, Any]) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    for name, data in [
        ("ingest", INGEST),
        ("engine", ENGINE),
        ("notifier", NOTIFIER),
        ("agent", AGENT),
        ("storm", {"results": [storm]}),
        ("run", run),
    ]:
        (folder / f"{name}.json").write_text(json.dumps(data))
    return folder


def rows_by_figure(section: str) -> dict[str, list[str]]:
    rows = {}
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| benchmark"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[1]] = cells
    return rows


def test_each_figure_is_judged_against_the_target_its_issue_names(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\nHand-written analysis.\n")
    section = report.write(results_folder(tmp_path, storm_result(100, 48_000), RUN), doc)
    rows = rows_by_figure(section)

    # [benchmark, figure, measured, target, verdict, command]
    assert rows["SQLite: alerts/s, 3-alert webhooks"][2:5] == [
        "1,200 alerts/s",
        "≥ 1,000 alerts/s (#2)",
        "met",
    ]
    assert rows["SQLite: alerts/s, 50-alert webhooks"][4] == "**not met**"
    assert rows["SQLite: full path vs bare endpoint, 3-alert"][2].startswith("20.0% (400 req/s")
    assert rows["SQLite: full path vs bare endpoint, 3-alert"][4] == "**not met**"
    assert rows["SQLite: duplicate notification p50"][4] == "met"
    # The list API is judged on its slowest query's p99, which is over 10 ms here.
    slowest = rows["SQLite with 1,000,000 alerts: list API, slowest query p99"]
    assert slowest[2].startswith("12.5 ms (status=received")
    assert slowest[4] == "**not met**"
    assert rows["PostgreSQL: worker cold start -> first task"][3:5] == ["< 1,000 ms (#3)", "met"]
    assert rows["PostgreSQL: per-step overhead vs a bare Celery chain"][4] == "**not met**"
    # Issues that name no target say so, and get no verdict.
    deliveries = rows["SQLite: Slack deliveries/s, one worker (4 processes)"]
    assert deliveries[3:5] == ["none named", ""]
    assert rows["loop overhead per iteration, model and tools excluded"][3] == "none named"
    storm_runs = rows["PostgreSQL: runs created by 10,000 notifications over 100 fingerprints"]
    assert storm_runs[2:5] == [
        "100 runs (100 Succeeded)",
        "exactly 100 runs (#13, a correctness check)",
        "met",
    ]
    assert all(cells[5] == f"`make bench-{cells[0]}`" for cells in rows.values())


def test_the_machine_the_load_and_the_command_head_the_table(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    section = report.write(results_folder(tmp_path, storm_result(100, 48_000), RUN), doc)
    assert "Generated by `make bench` on 2026-11-29 09:55 UTC at commit `abc1234`" in section
    assert "CPU Test CPU @ 2.0GHz; cores 2; RAM 7.8 GiB; Python 3.11.2" in section
    assert "load average: 4.00, 5.00, 6.00" in section
    assert "noisy" in section


def test_a_storm_that_lost_or_doubled_something_is_not_met(tmp_path: Path) -> None:
    storm = storm_result(101, 47_990)
    storm["statuses"] = {"200": 9_999, "422": 1}
    section = report.write(results_folder(tmp_path, storm, RUN), tmp_path / "performance.md")
    rows = rows_by_figure(section)
    runs = rows["PostgreSQL: runs created by 10,000 notifications over 100 fingerprints"]
    assert runs[2:5] == [
        "101 runs (101 Succeeded)",
        "exactly 100 runs (#13, a correctness check)",
        "**not met**",
    ]
    losses = next(cells for figure, cells in rows.items() if "no loss, no double" in figure)
    assert losses[2:5] == [
        "alerts seen (sum of times_seen): 47990 of 48000; answers 1x 422",
        "all hold (#13)",
        "**not met**",
    ]


def test_a_failed_or_missing_benchmark_is_said_so_rather_than_left_out(tmp_path: Path) -> None:
    folder = results_folder(tmp_path, storm_result(100, 48_000), RUN)
    (folder / "engine.json").unlink()
    (folder / "agent.json").unlink()
    run = {**RUN, "benchmarks": {"engine": {"exit_code": 1, "seconds": 3}}}
    (folder / "run.json").write_text(json.dumps(run))
    section = report.write(folder, tmp_path / "performance.md")
    assert (
        "| engine | the benchmark itself | exited 1 |  | **failed** | `make bench-engine` |"
        in section
    )
    assert "| agent | no results | not run |  |  | `make bench-agent` |" in section
    assert "| notifier |" in section


def test_the_section_replaces_the_previous_one_and_leaves_the_rest(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\n## Ingest\n\nHand-written analysis.\n")
    folder = results_folder(tmp_path, storm_result(100, 48_000), RUN)
    report.write(folder, doc)
    first = doc.read_text()
    assert first.startswith("# Performance\n\n## The benchmark table (`make bench`)\n\n")
    assert first.count(report.BEGIN) == first.count(report.END) == 1
    assert first.index(report.END) < first.index("## Ingest\n\nHand-written analysis.\n")

    (folder / "run.json").write_text(json.dumps({**RUN, "date": "2026-12-01 08:00 UTC"}))
    report.write(folder, doc)
    second = doc.read_text()
    assert second.count(report.BEGIN) == 1
    assert "2026-12-01 08:00 UTC" in second
    assert "2026-11-29 09:55 UTC" not in second
    assert second.endswith("## Ingest\n\nHand-written analysis.\n")


def test_a_document_with_one_marker_is_refused_rather_than_cut() -> None:
    with pytest.raises(ValueError, match="one of the two markers"):
        report.replace_section(f"# P\n{report.BEGIN}\nkept\n", "new")
