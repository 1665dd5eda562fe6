"""SLURM executor on a real single-node cluster (Debian's slurmctld/slurmd/munge/slurmdbd, loopback).

Skipped, with the reason printed, only where the cluster truly cannot start (e.g. the packages are
not installed and cannot be); .ci/run installs them.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from slurm_cluster import ClusterUnavailable, SlurmCluster

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster():
    # Not under pytest's basetemp: pytest makes it private to its user (0700), and mariadbd and
    # munged run as their own users, who must reach their directories below the cluster root.
    root = Path(tempfile.mkdtemp(prefix="warpbench-slurm-"))
    cluster = SlurmCluster(root)
    try:
        try:
            cluster.start()
        except ClusterUnavailable as exc:
            print(f"SLURM test skipped: {exc}")
            pytest.skip(f"SLURM cannot start here: {exc}")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_smoke_cells_run_as_a_slurm_job_array(cluster, tmp_path):
    results = tmp_path / "results"
    cmd = [sys.executable, str(REPO / "run_bench.py"), "--executor", "slurm", "--jobs", "2", "--profile", "smoke",
           "--tasks", "pose_synthetic", "--methods", "none,plain_flow", "--results-dir", str(results),
           "--work-dir", str(tmp_path / "runs"), "--data-root", str(tmp_path / "data"),
           "--resource", "timeout_min=10", "--resource", "cpus_per_task=1", "--no-floors"]
    env = dict(cluster.env, OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    records = [json.loads(line) for line in (results / "records.jsonl").read_text().splitlines()]
    assert sorted(r["cell"]["method"] for r in records) == ["none", "plain_flow"]
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    # each record was written by a SLURM array task, not by the submitting process
    job_ids = {r["environment"].get("slurm_job_id") for r in records}
    assert None not in job_ids and len(job_ids) == 2
    sacct = subprocess.run(["sacct", "-n", "-X", "-o", "JobID,State"], env=cluster.env, capture_output=True,
                           text=True, timeout=60)
    assert "COMPLETED" in sacct.stdout, sacct.stdout
    assert os.path.exists(results / "leaderboard.md")
