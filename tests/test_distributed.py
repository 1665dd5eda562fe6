"""torchrun inside a cell: a real 2-process CPU run, and gradient averaging over sharded batches."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from bench import distributed
from bench.cli import main
from bench.training import Trainer
from cli_runs import bench_args, metric_values, records, run_bench
from gfla_tiny import ShiftedTextures, tiny_config

TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")


@pytest.mark.slow
def test_torchrun_two_processes_write_one_record_over_the_full_test_set(tmp_path: Path) -> None:
    code, output = run_bench(bench_args(tmp_path / "ddp", "--methods", "plain_flow"), launcher=TORCHRUN)
    assert code == 0, output
    assert output.count("warpbench run summary") == 1  # only rank 0 reports
    [record] = records(tmp_path / "ddp")
    assert record["status"] == "ok", record["error"]
    assert record["environment"]["world_size"] == 2

    single = tmp_path / "single"
    assert main(bench_args(single, "--methods", "plain_flow", data_root=tmp_path / "ddp" / "data")) == 0
    [reference] = records(single)
    assert record["protocol"]["num_generated"] == reference["protocol"]["num_generated"] == 4
    assert reference["environment"]["world_size"] == 1
    outputs = tmp_path / "ddp" / "work" / "cells" / record["cell"]["key"] / "outputs"
    assert len(list(outputs.iterdir())) == 4  # rank 0 wrote both ranks' images
    # global batch 2 = 1 + 1 per rank with averaged gradients: the same training up to float rounding
    values, expected = metric_values(record), metric_values(reference)
    # except the occlusion AUROC: after 5 smoke steps the masks are constant to ~1e-4, so the rank order
    # it scores is the float rounding itself; it is still an AUROC of the same pixels
    occlusion = values.pop("occlusion"), expected.pop("occlusion")
    assert values == pytest.approx(expected, rel=1e-4) and "epe" in values
    assert all(0.0 <= value <= 1.0 for value in occlusion)


class RecordingTextures(ShiftedTextures):
    """ShiftedTextures that remembers which samples this process read."""

    def __init__(self) -> None:
        super().__init__(count=4)
        self.read: list[int] = []

    def __getitem__(self, index: int) -> dict:
        self.read.append(index)
        return super().__getitem__(index)


def _two_steps(cfg) -> tuple[torch.Tensor, list[int]]:
    """One stage-1 and one stage-2 step (every optimiser steps once); flat parameters and samples read."""
    data = RecordingTextures()
    trainer = Trainer(cfg, "gfla", data, "cpu", seed=0)
    trainer.run(max_steps=2)
    flat = torch.cat([p.detach().reshape(-1) for p in [*trainer.generator.parameters(),
                                                         *trainer.discriminator.parameters()]])
    return flat, data.read[1:]  # the first read is the Trainer's structure-channel probe


def _rank_worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    distributed.init_from_env()
    weight = torch.nn.Parameter(torch.zeros(2, 3))
    weight.grad = torch.full((2, 3), float(rank + 1))
    distributed.average_gradients([weight])
    assert torch.equal(weight.grad, torch.full((2, 3), 1.5))  # (1 + 2) / 2 on both ranks
    cfg = tiny_config()
    cfg.train.batch_size, cfg.train.stage1_steps, cfg.train.stage2_steps = 4, 1, 1
    flat, read = _two_steps(cfg)
    torch.save({"params": flat, "read": read}, Path(out_dir) / f"rank{rank}.pt")
    distributed.shutdown()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_sharded_step_leaves_ranks_identical_and_equal_to_the_global_batch(tmp_path: Path) -> None:
    mp.start_processes(_rank_worker, args=(_free_port(), str(tmp_path)), nprocs=2, start_method="fork")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert torch.equal(ranks[0]["params"], ranks[1]["params"])
    # each rank read its own half of each global batch of 4
    assert len(ranks[0]["read"]) == len(ranks[1]["read"]) == 4
    assert not set(ranks[0]["read"][:2]) & set(ranks[1]["read"][:2])

    cfg = tiny_config()
    cfg.train.batch_size, cfg.train.stage1_steps, cfg.train.stage2_steps = 4, 1, 1
    single, read = _two_steps(cfg)
    assert sorted(read[:4]) == sorted(ranks[0]["read"][:2] + ranks[1]["read"][:2])
    fresh = Trainer(cfg, "gfla", ShiftedTextures(count=4), "cpu", seed=0)
    before = torch.cat([p.detach().reshape(-1) for p in [*fresh.generator.parameters(),
                                                           *fresh.discriminator.parameters()]])
    assert not torch.equal(single, before)  # the steps moved the parameters
    # Equal to one process on the global batch up to rounding, which Adam's first step (about
    # lr * sign(grad), so at most 2 lr apart) amplifies on a few near-zero gradients whose sign the
    # summation order can flip; unsynchronised ranks would differ by about lr almost everywhere.
    difference = (ranks[0]["params"] - single).abs()
    assert difference.max() <= 2 * cfg.train.lr * 1.001
    assert difference.gt(1e-6).float().mean() < 0.01


def test_shards_cover_items_in_order_and_batch_size_must_divide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setenv("WORLD_SIZE", "3")
    parts = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        parts.append(distributed.shard(list(range(7))))
    assert parts == [[0, 1, 2], [3, 4], [5, 6]]
    with pytest.raises(ValueError, match=r"train.batch_size=4 .* WORLD_SIZE=3"):
        distributed.shard_batches([[0, 1, 2, 3]], 4)


def test_single_process_is_untouched() -> None:
    assert not distributed.active()
    assert distributed.shard([1, 2, 3]) == [1, 2, 3]
    assert distributed.gather_to_main("x") == ["x"]
    assert distributed.any_rank(torch.tensor([False, True])).tolist() == [False, True]
