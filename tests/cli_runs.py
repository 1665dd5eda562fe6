"""Helpers for the end-to-end tests that run ``run_bench.py`` (in a subprocess or in-process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# without the floor rows: these runs test one method cell's record (floors: tests/test_oracle_floors.py)
SMOKE = ("--profile", "smoke", "--tasks", "pose_synthetic", "--no-leaderboard", "--no-floors")


def bench_args(base: Path, *extra: str, data_root: Path | None = None) -> list[str]:
    """CLI arguments of a smoke run whose results and work dirs live under ``base``."""
    return [*SMOKE, "--results-dir", str(base / "results"), "--work-dir", str(base / "work"),
            "--data-root", str(data_root or base / "data"), *extra]


def bench_env() -> dict[str, str]:
    """The environment of a child run: this checkout importable, one thread (the machine is shared)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get(
        "PYTHONPATH", "")]))
    env.pop("WORLD_SIZE", None)
    return env


def start_bench(args: list[str], launcher: tuple[str, ...] = ()) -> subprocess.Popen:
    """Start ``run_bench.py args`` (optionally under a launcher such as torchrun) without waiting."""
    command = [*launcher, str(REPO / "run_bench.py"), *args] if launcher else [
        sys.executable, str(REPO / "run_bench.py"), *args]
    # SIGINT back to its default: a shell starting this suite in the background hands its children
    # SIGINT ignored, and Python then never raises KeyboardInterrupt (the Ctrl-C test needs it)
    return subprocess.Popen(command, cwd=REPO, env=bench_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def run_bench(args: list[str], launcher: tuple[str, ...] = (), timeout: float = 120) -> tuple[int, str]:
    """Run to completion; returns (exit code, combined output)."""
    process = start_bench(args, launcher)
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def records(base: Path) -> list[dict[str, Any]]:
    path = base / "results" / "records.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def metric_values(record: dict[str, Any]) -> dict[str, float]:
    """Name -> value of the metrics that have one (the transport metrics have none without ground truth)."""
    return {name: result["value"] for name, result in record["metrics"].items() if result["value"] is not None}
