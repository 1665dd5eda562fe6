"""One training step of each warper on the same backbone, batch and data, timed side by side (issue #9).

Builds a Trainer per method from a task's profile (default: ``pose_synthetic`` at ``quick``) on the
embedded synthetic data, warms each up, then times stage-1 steps (two-stage warpers only) and
stage-2 steps with the methods interleaved round by round, so that load on a shared machine hits
them alike; the best round is kept.  Prints seconds per step and the ratio to ``plain_flow``
(target: GFLA <= 1.5x plain_flow on CPU), and each step against its floor: the step's FLOPs
(convolutions and matrix products, forward and backward, counted by ``torch.utils.flop_counter``)
over the throughput of one 3x3 convolution measured in the same run, forward and backward.

Run:  PYTHONPATH=. python benchmarks/train_step.py [--task pose_synthetic] [--profile quick]
      [--methods gfla,plain_flow,none] [--set train.batch_size=8] [--steps 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.registry import WARPERS
from bench.training import Trainer
from machine import describe
from task_data import add_task_arguments, prepare_task


def timed_steps(trainer: Trainer, steps: int) -> float:
    """Seconds per step over ``steps`` consecutive steps of the trainer's current stage."""
    start = time.perf_counter()
    trainer.run(max_steps=steps)
    return (time.perf_counter() - start) / steps


def step_flops(trainer: Trainer) -> int:
    """FLOPs of one step of the trainer's current stage (the step is taken)."""
    with FlopCounterMode(display=False) as counter:
        trainer.run(max_steps=1)
    return counter.get_total_flops()


def conv_throughput(device: str, repeats: int = 5) -> float:
    """FLOP/s of a 3x3, 128->128 convolution on (8, 128, 32, 32), forward and backward, best of ``repeats``."""
    conv = torch.nn.Conv2d(128, 128, 3, padding=1).to(device)
    x = torch.randn(8, 128, 32, 32, device=device, requires_grad=True)

    def once() -> None:
        conv(x).sum().backward()

    with FlopCounterMode(display=False) as counter:
        once()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return counter.get_total_flops() / best


def enter_stage(trainer: Trainer, stage: int) -> None:
    """Place a trainer at the start of ``stage`` (stage 2: skip the rest of stage 1) and warm it up."""
    if stage == 2 and trainer.stage == 1:
        trainer.step = trainer.cfg.train.stage1_steps
    trainer.run(max_steps=1)
    assert trainer.stage == stage or not trainer.two_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_task_arguments(parser)
    parser.add_argument("--methods", default="gfla,plain_flow,affine_stn,nonlocal_attn,none")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=3, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best is kept")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg, spec, root = prepare_task(args)
    train_set = spec.train_set(root, cfg, 0)
    methods = args.methods.split(",")
    print(describe(args.device))
    print(f"task {args.task}, profile {args.profile}, batch {cfg.train.batch_size}, "
          f"resolution {cfg.dataset.resolution}, overrides {args.set or 'none'}; "
          f"{args.steps} steps per round, best of {args.rounds} interleaved rounds\n")

    best: dict[tuple[str, int], float] = {}
    flops: dict[tuple[str, int], int] = {}
    for stage in (1, 2):
        staged = [m for m in methods if stage == 2 or WARPERS.get(m).two_stage]  # stage 1: two-stage warpers
        trainers = {m: Trainer(cfg, m, train_set, args.device, seed=0) for m in staged}
        for method, trainer in trainers.items():
            enter_stage(trainer, stage)
            flops[method, stage] = step_flops(trainer)
        for _ in range(args.rounds):
            for method, trainer in trainers.items():
                seconds = timed_steps(trainer, args.steps)
                best[method, stage] = min(best.get((method, stage), float("inf")), seconds)

    base = {stage: best.get(("plain_flow", stage)) for stage in (1, 2)}
    print(f"{'method':<15} {'stage 1 s/step':>15} {'/plain_flow':>12} {'stage 2 s/step':>15} {'/plain_flow':>12}")
    for method in methods:
        cells = []
        for stage in (1, 2):
            seconds = best.get((method, stage))
            ratio = f"{seconds / base[stage]:.2f}x" if seconds and base[stage] else "-"
            cells += [f"{seconds:.3f}" if seconds else "-", ratio]
        print(f"{method:<15} {cells[0]:>15} {cells[1]:>12} {cells[2]:>15} {cells[3]:>12}")
    throughput = conv_throughput(args.device)
    print(f"\nfloor: the step's FLOPs over a 3x3 convolution's {throughput / 1e9:.1f} GFLOP/s (forward + backward)")
    print(f"{'method':<15} {'stage':>5} {'GFLOP/step':>11} {'floor s':>8} {'measured s':>11} {'measured/floor':>15}")
    for (method, stage), count in flops.items():
        floor = count / throughput
        print(f"{method:<15} {stage:>5} {count / 1e9:>11.1f} {floor:>8.3f} {best[method, stage]:>11.3f} "
              f"{best[method, stage] / floor:>14.1f}x")
    print("\n(target, issue #9: gfla <= 1.5x plain_flow per step on CPU; one-stage warpers have no stage 1)")


if __name__ == "__main__":
    main()
