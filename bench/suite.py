"""``make bench``: every benchmark once, then the one table in docs/performance.md.

Runs bench/ingest.py, engine.py, notifier.py, agent.py and storm.py one after the
other, each as its own process with its default settings, against one private
``redis-server`` (a database each), so that no benchmark flushes a Redis database
anybody else uses. Each writes its raw figures to bench/results/<name>.json and its
output to bench/results/<name>.log; this script records the machine, the load before
and after (``uptime``), each benchmark's exit code and time in bench/results/run.json,
then has bench/report.py write the table.

A benchmark that fails is recorded as failed in the table and the others still run;
the exit code is then 1. Nothing here compares a figure with a target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import processes, report  # noqa: E402

NAMES = [bench.name for bench in report.BENCHMARKS]


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    mem_kib = next(
        (
            int(line.split()[1])
            for line in _read("/proc/meminfo").splitlines()
            if line.startswith("MemTotal:")
        ),
        0,
    )
    return {
        "CPU": cpu,
        "cores": os.cpu_count(),
        "RAM": f"{mem_kib / 1024 / 1024:.1f} GiB" if mem_kib else None,
        "Python": platform.python_version(),
        "OS": f"{platform.system()} {platform.release()}",
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def uptime() -> str:
    try:
        return subprocess.run(
            ["uptime"], capture_output=True, text=True, check=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + (" + local changes" if dirty else "")


def run_one(name: str, broker: str, results: Path) -> dict[str, Any]:
    argv = [sys.executable, str(ROOT / "bench" / f"{name}.py")]
    env = dict(os.environ)
    # One Redis database per benchmark on the private server; each flushes its own.
    base = broker.rsplit("/", 1)[0]
    env["PF_BENCH_REDIS_URL"] = f"{base}/1"
    env["PF_BENCH_ENGINE_REDIS_URL"] = f"{base}/2"
    env["PF_BENCH_NOTIFIER_REDIS_URL"] = f"{base}/3"
    if name == "storm":
        argv += ["--redis-url", f"{base}/4", "--out", str(results / "storm.json")]
    print(f"\n=== {name}: {' '.join(argv[1:])}", flush=True)
    started = time.monotonic()
    with (results / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log)
        assert process.stdout is not None
        for line in process.stdout:  # the table on the terminal as well as in the log
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
            log.write(line)
        code = process.wait()
    seconds = time.monotonic() - started
    print(f"=== {name}: exit {code} after {seconds:.0f} s", flush=True)
    return {"exit_code": code, "seconds": round(seconds, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", default=",".join(NAMES), help=f"comma-separated subset of {','.join(NAMES)}"
    )
    parser.add_argument("--doc", type=Path, default=report.DOC, help="document to update")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(NAMES))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    # Fixed: every benchmark writes its figures there.
    results = report.RESULTS
    results.mkdir(parents=True, exist_ok=True)
    # Figures of an earlier run must not pass for this one's.
    for bench in report.BENCHMARKS:
        (results / bench.results).unlink(missing_ok=True)

    run: dict[str, Any] = {
        "command": "make bench" if len(chosen) == len(NAMES) else f"make bench ONLY={args.only}",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "machine": machine(),
        "uptime_before": uptime(),
        "benchmarks": {},
    }
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="pf-bench-suite-") as tmp,
        processes.private_redis(Path(tmp)) as broker,
    ):
        for name in chosen:
            run["benchmarks"][name] = run_one(name, broker, results)
    run["seconds"] = round(time.monotonic() - started, 1)
    run["uptime_after"] = uptime()
    (results / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    print()
    print(report.write(results, args.doc))
    failed = [name for name, outcome in run["benchmarks"].items() if outcome["exit_code"]]
    if failed:
        print(f"\nfailed: {', '.join(failed)} (see bench/results/<name>.log)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
