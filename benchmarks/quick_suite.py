"""The ``quick`` suite end to end, twice: wall time, peak memory, and what caching buys the second run.

The first run starts from an empty data root (synthetic data generated, FID/KID reference
statistics computed); the second reruns every cell with ``--force`` on the same data root, so its
data and reference statistics come from the caches.  Prints the wall time and peak resident set
size of each run and, from the records, the time per phase (data, train, eval) summed over cells.
Targets (issue #9): first run <= 20 min and <= 6 GiB on the 2-core machine; second run's
evaluation >= 3x faster than the first's.

Run:        PYTHONPATH=. python benchmarks/quick_suite.py [--workdir DIR] [--once] [-- extra run_bench args]
Compare:    PYTHONPATH=. python benchmarks/quick_suite.py --compare FIRST/records.jsonl SECOND/records.jsonl
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe

REPO = Path(__file__).resolve().parents[1]
PHASES = ("data_s", "train_s", "eval_s", "total_s")


def run_suite(workdir: Path, name: str, extra: list[str], force: bool) -> tuple[float, Path]:
    """Run the quick suite into ``workdir/name``; returns the wall seconds and the records file."""
    results = workdir / name / "results"
    cmd = [sys.executable, str(REPO / "run_bench.py"), "--profile", "quick", "--results-dir", str(results),
           "--work-dir", str(workdir / name / "runs"), "--data-root", str(workdir / "data"), *extra]
    if force:
        cmd.append("--force")
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    return time.perf_counter() - start, results / "records.jsonl"


def latest_records(records_file: Path) -> dict[str, dict]:
    """The latest record of every cell, by cell key."""
    latest: dict[str, dict] = {}
    for line in records_file.read_text().splitlines():
        record = json.loads(line)
        latest[record["cell"]["key"]] = record
    return latest


def phase_totals(records: dict[str, dict], keys: set[str]) -> dict[str, float]:
    """Seconds per phase summed over the cells ``keys``."""
    totals = dict.fromkeys(PHASES, 0.0)
    for key in keys:
        for phase in PHASES:
            totals[phase] += records[key].get("timings", {}).get(phase) or 0.0
    totals["cells"] = len(keys)
    return totals


def print_comparison(first: Path, second: Path) -> None:
    """Phase totals of the cells both runs hold (a second run may cover fewer tasks)."""
    first_records, second_records = latest_records(first), latest_records(second)
    common = set(first_records) & set(second_records)
    a, b = phase_totals(first_records, common), phase_totals(second_records, common)
    print(f"\n{'summed over cells':<20} {'first run':>10} {'second run':>11} {'first/second':>13}")
    for phase in PHASES:
        ratio = f"{a[phase] / b[phase]:.2f}x" if b[phase] else "-"
        print(f"{phase:<20} {a[phase]:10.1f} {b[phase]:11.1f} {ratio:>13}")
    print(f"{'cells':<20} {a['cells']:10d} {b['cells']:11d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=None, help="where both runs go (default: a new temp dir)")
    parser.add_argument("--once", action="store_true", help="only the first run")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("FIRST", "SECOND"),
                        help="only compare two existing records files")
    parser.add_argument("extra", nargs="*", help="arguments passed to run_bench.py (after --)")
    args = parser.parse_args()
    print(describe())
    if args.compare:
        print_comparison(*args.compare)
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="warpbench-quick-"))
    wall, first = run_suite(workdir, "first", args.extra, force=False)
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    print(f"\nfirst run: {wall / 60:.1f} min wall, peak RSS {peak_gib:.2f} GiB (largest process), in {workdir}")
    if args.once:
        return
    wall, second = run_suite(workdir, "second", args.extra, force=True)
    print(f"second run: {wall / 60:.1f} min wall")
    print_comparison(first, second)


if __name__ == "__main__":
    main()
