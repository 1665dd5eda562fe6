"""The floor under a leaderboard: paired metrics of outputs that need no training at all.

For each task, on exactly the test items and targets a cell scores (``bench.cell.evaluated_indices``;
a video's every frame), two predictions that ignore the target structure:

* ``source image``: the source itself (for a video, its first frame, the reference the
  generator animates), i.e. a warp with zero flow and a perfect decoder;
* ``source mean colour``: a flat image in the source's per-channel mean colour.

Scored with the task's own SSIM and L1 protocol (``eval``); not PSNR, which is infinite for the
first frame of every video and for view pairs whose source and target views coincide.  A method
whose table row does not clear these has not yet learned to use the source.

Run:  PYTHONPATH=. python benchmarks/trivial_outputs.py [--tasks pose_synthetic,face_synthetic]
      [--profile quick] [--data-root datasets]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench.cell import VIDEO_KINDS, evaluated_indices, to_uint8
from bench.config import to_dict
from bench.metrics.base import EvalContext
from bench.metrics.evaluate import evaluate
from bench.registry import DATASETS
from bench.taskspec import load_task, select_tasks
from machine import describe

METRICS = ("ssim", "l1")  # paired, no weights; PSNR is left out: infinite where a source equals its target


def sources_and_targets(cfg, test_set) -> tuple[torch.Tensor, torch.Tensor]:
    """([-1, 1] source, target) images, one row per scored output, in the order a cell scores them."""
    sources, targets = [], []
    for index in evaluated_indices(cfg, test_set):
        item = test_set[index]
        if cfg.kind in VIDEO_KINDS:
            frames = item["frames"]
            sources.append(frames[:1].expand_as(frames))
            targets.append(frames)
        else:
            sources.append(item["source_image"][None])
            targets.append(item["target_image"][None])
    return torch.cat(sources), torch.cat(targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="", help="comma-separated tasks or kinds (default: the embedded suite)")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--data-root", default="datasets", help="where the synthetic data is (generated if absent)")
    args = parser.parse_args()

    print(describe())
    print("| task | profile | outputs | prediction | " + " | ".join(METRICS) + " |")
    print("| --- | --- | --: | --- |" + " --: |" * len(METRICS))
    for task in select_tasks([name for name in args.tasks.split(",") if name]):
        cfg = load_task(task, args.profile)
        spec = DATASETS.get(cfg.dataset.name)
        test_set = spec.test_set(spec.prepare(cfg, Path(args.data_root)), cfg)
        sources, targets = sources_and_targets(cfg, test_set)
        names = [name for name in METRICS if name in cfg.eval.metrics]
        ctx = EvalContext(batch_size=cfg.eval.batch_size, options=to_dict(cfg.eval))
        predictions = {
            "source image": sources,
            "source mean colour": sources.mean(dim=(2, 3), keepdim=True).expand_as(sources),
        }
        for label, prediction in predictions.items():
            results = evaluate(to_uint8(prediction), to_uint8(targets), names, ctx)
            cells = [_format(results[name]) if name in results else "" for name in METRICS]
            print(f"| {task} | {args.profile} | {len(targets)} | {label} | " + " | ".join(cells) + " |")


def _format(result) -> str:
    return f"{result.value:.4f}" if result.value is not None else f"n/a ({result.unavailable})"


if __name__ == "__main__":
    main()
