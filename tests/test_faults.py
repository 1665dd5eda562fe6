"""Faults: NaN/Inf losses, out-of-memory, Ctrl-C, and two runners on one results directory."""

from __future__ import annotations

import json
import re
import signal
import textwrap
import time
from pathlib import Path

import pytest
import torch

from bench.checkpoint import load_checkpoint
from bench.cli import main
from bench.records import RecordStore
from bench.runner import Cell
from bench.training import Trainer
from cli_runs import bench_args, records, run_bench, start_bench

POISONED_WARPERS = textwrap.dedent('''
    import torch

    from bench.registry import WARPERS
    from bench.warp import Warper, WarpResult

    @WARPERS.register("nan_features")
    class NanFeatures(Warper):
        """Warped features that are NaN: every loss of the output becomes NaN."""

        def warp(self, scale, source_features, target_feature, plan):
            nan = torch.full_like(target_feature, float("nan"))
            return WarpResult([nan], [torch.ones_like(target_feature[:, :1])])

    @WARPERS.register("inf_extra_loss")
    class InfExtraLoss(Warper):
        """A finite forward pass with an infinite extra loss term named 'poison'."""

        def warp(self, scale, source_features, target_feature, plan):
            return None

        def extra_losses(self, plan, inputs):
            return {"poison": torch.tensor(float("inf"))}
''')
LONG = ("--set", "train.stage2_steps=16", "--set", "train.checkpoint_every=4")


@pytest.mark.slow
def test_non_finite_loss_fails_its_cell_naming_step_and_term_and_others_continue(tmp_path: Path) -> None:
    plugin = tmp_path / "poisoned.py"
    plugin.write_text(POISONED_WARPERS)
    code, output = run_bench(bench_args(tmp_path, "--plugin", str(plugin),
                                        "--methods", "nan_features,inf_extra_loss,none"))
    assert code == 0, output
    latest = {record["cell"]["method"]: record for record in records(tmp_path)}
    assert latest["none"]["status"] == "ok"
    for method, term, value in (("nan_features", r"'\w+'", "nan"), ("inf_extra_loss", "'poison'", "inf")):
        error = latest[method]["error"]
        assert latest[method]["status"] == "failed"
        assert error["phase"] == "train" and error["type"] == "NonFiniteLossError"
        pattern = rf"stage 2, step 1: loss term {term} is not finite \({value}\)"
        assert re.fullmatch(pattern, error["message"]), error["message"]


@pytest.mark.parametrize(
    ("target", "error", "setting", "lower"),
    [
        ("_pair_step", torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
         "train.batch_size=2", "--set train.batch_size=1"),
        ("generate_with_plan", RuntimeError("CUDA error: out of memory"), "eval.batch_size=4",
         "--set eval.batch_size=2"),
    ],
)
def test_out_of_memory_names_the_batch_size_and_how_to_lower_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, error: Exception, setting: str, lower: str
) -> None:
    def run_out_of_memory(*args, **kwargs):
        raise error

    monkeypatch.setattr(Trainer, target, run_out_of_memory)
    # no learning curve: it generates with the same method during training
    assert main(bench_args(tmp_path, "--methods", "none", "--set", "train.eval_every=0")) == 0
    [record] = records(tmp_path)
    assert record["status"] == "failed" and record["error"]["type"] == "OutOfMemoryError"
    message = record["error"]["message"]
    assert setting in message and lower in message and str(error).splitlines()[0] in message
    assert record["error"]["phase"] == ("train" if target == "_pair_step" else "eval")


def _wait_for(path: Path, process, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.02)


@pytest.mark.slow
def test_ctrl_c_exits_130_with_records_and_checkpoints_consistent(tmp_path: Path) -> None:
    process = start_bench(bench_args(tmp_path, "--methods", "none,plain_flow", *LONG))
    key = Cell("pose_synthetic", "plain_flow", 0, "smoke", tuple(LONG[1::2])).key()
    cell_dir = tmp_path / "work" / "cells" / key
    try:
        _wait_for(cell_dir / "checkpoint.pt", process)  # the first cell is recorded, the second trains
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, output
    assert "interrupted" in output
    [record] = RecordStore(tmp_path / "results").read()  # parses: no torn line
    assert record["cell"]["method"] == "none" and record["status"] == "ok"
    state = load_checkpoint(cell_dir / "checkpoint.pt")  # its checksum holds
    assert state["warper"] == "plain_flow"
    assert not [p.name for p in cell_dir.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_two_runners_on_one_results_dir_run_the_cell_once(tmp_path: Path) -> None:
    args = bench_args(tmp_path, "--methods", "plain_flow", *LONG)
    runners = [start_bench(args) for _ in range(2)]
    outputs = [runner.communicate(timeout=180)[0] for runner in runners]
    assert [runner.returncode for runner in runners] == [0, 0], outputs
    lines = (tmp_path / "results" / "records.jsonl").read_text().splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["ok"]
    # the other runner saw the lock (busy) or the finished record (skipped)
    assert sum("another runner" in out or "1 already recorded" in out for out in outputs) == 1, outputs
