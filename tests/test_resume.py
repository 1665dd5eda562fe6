"""Kill-and-resume of a real run, damaged checkpoints, and same-seed determinism on the CPU."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest
import torch

from bench.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bench.cli import main
from bench.runner import Cell
from cli_runs import bench_args, metric_values, records, run_bench, start_bench

STEPS, EVERY = 16, 4  # stage 2 steps and checkpoint interval: a few seconds of training
OVERRIDES = ("--set", f"train.stage2_steps={STEPS}", "--set", f"train.checkpoint_every={EVERY}")
ARGS = ("--methods", "plain_flow", *OVERRIDES)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted in-process run (the reference of the tests below), single-threaded like the
    subprocess runs (cli_runs sets OMP_NUM_THREADS=1): CPU results are bitwise only per thread count."""
    base = tmp_path_factory.mktemp("uninterrupted")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(bench_args(base, *ARGS)) == 0
    finally:
        torch.set_num_threads(threads)
    return base


def _cell_dir(base: Path) -> Path:
    key = Cell("pose_synthetic", "plain_flow", 0, "smoke", tuple(OVERRIDES[1::2])).key()
    return base / "work" / "cells" / key


def _wait_for_mid_training_checkpoint(path: Path, process, timeout: float = 120) -> dict:
    """Poll until the checkpoint is in stage 2 with steps still to go; returns its state."""
    deadline, seen = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before a mid-training checkpoint: " + process.stdout.read()
        stamp = path.stat().st_mtime_ns if path.exists() else None
        if stamp is not None and stamp != seen:
            seen = stamp
            state = load_checkpoint(path)
            if state["stage"] == 2 and EVERY <= state["step"] < STEPS:
                return state
        time.sleep(0.02)
    raise AssertionError(f"no mid-training checkpoint at {path} within {timeout} s")


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_metrics_of_an_uninterrupted_run(tmp_path: Path, uninterrupted: Path) -> None:
    args = bench_args(tmp_path, *ARGS, data_root=uninterrupted / "data")
    process = start_bench(args)
    try:
        state = _wait_for_mid_training_checkpoint(_cell_dir(tmp_path) / "checkpoint.pt", process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert records(tmp_path) == []  # killed mid-training: no record yet

    code, output = run_bench(args)
    assert code == 0, output
    [record] = records(tmp_path)
    [reference] = records(uninterrupted)
    assert record["status"] == "ok", record["error"]
    resumed = record["training"]["resumed_from"]
    assert resumed["stage"] == 2 and state["step"] <= resumed["step"] < STEPS
    assert reference["training"]["resumed_from"] is None
    assert metric_values(record) == metric_values(reference)  # exactly
    assert reference["curves"]["stages"]["2"]["step"][-1] == STEPS
    assert record["curves"] == reference["curves"]  # points before the kill came back from the checkpoint


@pytest.mark.slow
def test_same_seed_same_machine_gives_identical_metrics_and_images(tmp_path: Path, uninterrupted: Path) -> None:
    code, output = run_bench(bench_args(tmp_path, *ARGS, data_root=uninterrupted / "data"))  # a fresh process
    assert code == 0, output
    [record], [reference] = records(tmp_path), records(uninterrupted)
    assert metric_values(record) == metric_values(reference)
    ours, theirs = _cell_dir(tmp_path) / "outputs", _cell_dir(uninterrupted) / "outputs"
    names = sorted(p.name for p in theirs.iterdir())
    assert names and names == sorted(p.name for p in ours.iterdir())
    assert all((ours / name).read_bytes() == (theirs / name).read_bytes() for name in names)


@pytest.mark.parametrize("damage", ["truncated", "flipped byte"])
def test_damaged_checkpoint_fails_the_cell_naming_the_file(tmp_path: Path, uninterrupted: Path, damage: str) -> None:
    good = (_cell_dir(uninterrupted) / "checkpoint.pt").read_bytes()
    data = bytearray(good[: len(good) // 2]) if damage == "truncated" else bytearray(good)
    if damage == "flipped byte":
        data[-100] ^= 0xFF
    path = _cell_dir(tmp_path) / "checkpoint.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(path)

    assert main(bench_args(tmp_path, *ARGS, data_root=uninterrupted / "data")) == 0
    [record] = records(tmp_path)
    assert record["status"] == "failed"
    assert record["error"]["phase"] == "train" and record["error"]["type"] == "CheckpointError"
    assert str(path) in record["error"]["message"] and "checksum mismatch" in record["error"]["message"]
    assert path.read_bytes() == bytes(data)  # left for the user to inspect, not overwritten by a new run


def test_checkpoint_of_another_model_shape_fails_the_cell_naming_the_file_and_force(
    tmp_path: Path, uninterrupted: Path
) -> None:
    """A checkpoint written by a version with other layer shapes is not loaded half-way."""
    state = load_checkpoint(_cell_dir(uninterrupted) / "checkpoint.pt")
    weight = state["generator"]["outconv.model.2.weight"]
    state["generator"]["outconv.model.2.weight"] = torch.zeros(weight.shape[0], weight.shape[1] * 2, 3, 3)
    path = _cell_dir(tmp_path) / "checkpoint.pt"
    path.parent.mkdir(parents=True)
    save_checkpoint(state, path)

    assert main(bench_args(tmp_path, *ARGS, data_root=uninterrupted / "data")) == 0
    [record] = records(tmp_path)
    assert record["status"] == "failed" and record["error"]["type"] == "CheckpointError"
    message = record["error"]["message"]
    assert str(path) in message and "outconv.model.2.weight" in message and "--force retrains" in message


def test_resumed_checkpoint_of_a_finished_cell_skips_training(tmp_path: Path, uninterrupted: Path) -> None:
    """A checkpoint at the end of training (e.g. a run killed during evaluation) is evaluated as is."""
    shutil.copytree(_cell_dir(uninterrupted), _cell_dir(tmp_path), ignore=shutil.ignore_patterns("outputs"))
    assert main(bench_args(tmp_path, *ARGS, data_root=uninterrupted / "data")) == 0
    [record], [reference] = records(tmp_path), records(uninterrupted)
    assert record["training"]["resumed_from"] == {"stage": 2, "step": STEPS}
    assert metric_values(record) == metric_values(reference)
    assert record["curves"] == reference["curves"]
