"""The out-of-tree example plugin (examples/warpbench-example-plugin) installs, is found by name
through its entry point (and by ``--plugin`` path), and runs end to end through the CLI.

The package is installed with pip into a temporary ``--target`` directory that only the
subprocesses see (through PYTHONPATH), so the shared environment is never modified.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIR = ROOT / "examples" / "warpbench-example-plugin"
PLUGIN_MODULE = PLUGIN_DIR / "warpbench_example_plugin" / "identity_blend.py"


def run_python(args: list[str], pythonpath: list[Path], cwd: Path, timeout: int = 600):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(str(p) for p in pythonpath))
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The plugin pip-installed (no deps, no build isolation: offline) into a private target dir."""
    tmp = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(PLUGIN_DIR, tmp / "src")  # keep build/ and *.egg-info out of the repo
    target = tmp / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return target


def test_registry_finds_the_plugin_by_its_entry_point(site):
    done = run_python(
        ["-c", "from bench.registry import WARPERS; print(WARPERS.names()); print(WARPERS.origin('identity_blend'))"],
        [site, ROOT], ROOT,
    )
    assert done.returncode == 0, done.stderr
    names, origin = done.stdout.strip().splitlines()
    assert "identity_blend" in names and "gfla" in names
    assert origin == "warpbench_example_plugin.identity_blend"


def test_plugin_loads_from_a_file_path_too():
    code = (
        "import sys; from bench.registry import WARPERS, load_plugin; load_plugin(sys.argv[1]); "
        "print(WARPERS.get('identity_blend').__name__)"
    )
    done = run_python(["-c", code, str(PLUGIN_MODULE)], [ROOT], ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "IdentityBlend"


@pytest.mark.slow
def test_plugin_runs_end_to_end_through_the_cli(site, tmp_path):
    results = tmp_path / "results"
    done = run_python(
        ["run_bench.py", "--profile", "smoke", "--tasks", "pose_synthetic", "--methods", "identity_blend",
         "--results-dir", str(results), "--work-dir", str(tmp_path / "runs"), "--data-root", str(tmp_path / "data")],
        [site, ROOT], ROOT,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = [json.loads(line) for line in (results / "records.jsonl").read_text().splitlines() if line.strip()]
    ours = [r for r in records if r["cell"]["method"] == "identity_blend"]
    assert len(ours) == 1, records
    assert ours[0]["cell"]["task"] == "pose_synthetic"
    assert ours[0]["status"] == "ok", ours[0].get("error")
    assert {"ssim", "psnr", "l1"} <= set(ours[0]["metrics"])
