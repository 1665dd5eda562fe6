"""Does stage 1 teach the flow estimator anything?  Held-out flow quality during GFLA's pretraining.

Trains stage 1 of a two-stage warper (default ``gfla`` on ``pose_synthetic`` at ``quick``) and, every
``--every`` steps, measures on the first ``--pairs`` test pairs: the sampling-correctness loss (the
objective, unweighted) and, per warping scale, the L1 between the target image and the source image
warped by that scale's flow (upsampled to the image, offsets rescaled, bilinear, border clamp), next
to the L1 of the unwarped source.  A flow that has learned the correspondence brings the warped L1
below the unwarped one; the correctness loss alone can fall without that (it compares VGG features).

Run:  PYTHONPATH=. python benchmarks/stage1_flows.py [--task pose_synthetic] [--profile quick]
      [--method gfla] [--steps 50] [--every 25] [--pairs 32] [--set train.lr=1e-4]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from bench import losses
from bench.ops import flow_warp
from bench.training import Trainer
from bench.warp import WarpInputs
from machine import describe
from task_data import add_task_arguments, prepare_task


def warp_image(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``image`` (B, 3, H, W) warped by ``flow`` (B, 2, h, w), upsampled bilinearly to H x W with its
    pixel offsets rescaled to that size."""
    height, width = image.shape[2:]
    scale = flow.new_tensor([width / flow.shape[3], height / flow.shape[2]]).view(1, 2, 1, 1)
    offsets = F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False) * scale
    return flow_warp(image, offsets)


def flow_quality(
    trainer: Trainer, batch: dict[str, torch.Tensor], features: tuple[dict, dict]
) -> dict[str, float]:
    """Correctness loss and per-scale warped-source L1 of the trainer's current flows on ``batch``;
    ``features`` are the VGG features of its source and target images (fixed, computed once)."""
    source, target = batch["source_image"], batch["target_image"]
    inputs = WarpInputs([source], [batch["source_structure"]], batch["target_structure"])
    with torch.no_grad():
        flows, _ = trainer.warper.flow_estimator(inputs)
        row = {"correctness": float(losses.correctness_loss([features[0]], features[1], flows, trainer.scale_layers))}
        for spec, scale_flows in zip(trainer.warper.setup.scales, flows):
            flow = scale_flows[0]
            row[f"L1 warped @{spec.height}px"] = float((warp_image(source, flow) - target).abs().mean())
            row[f"mean abs flow @{spec.height}px"] = float(flow.abs().mean())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_task_arguments(parser)
    parser.add_argument("--method", default="gfla")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    cfg, spec, root = prepare_task(args, [f"train.stage1_steps={args.steps}"])
    trainer = Trainer(cfg, args.method, spec.train_set(root, cfg, args.seed), "cpu", args.seed)
    if not trainer.two_stage:
        raise SystemExit(f"{args.method} has no stage 1 (not a two-stage warper, or train.stage1_steps is 0)")
    test_set = spec.test_set(root, cfg)
    count = min(args.pairs, len(test_set))
    keys = ("source_image", "source_structure", "target_structure", "target_image")
    batch = {key: torch.stack([test_set[i][key] for i in range(count)]) for key in keys}
    layers = sorted(trainer.correctness_layers)
    with torch.no_grad():
        features = trainer.vgg(batch["source_image"], layers), trainer.vgg(batch["target_image"], layers)

    print(describe())
    print(f"{args.task} / {args.profile} / {args.method}: stage 1, lr {cfg.train.lr}, batch "
          f"{cfg.train.batch_size}, {count} test pairs; L1 of the unwarped source: "
          f"{float((batch['source_image'] - batch['target_image']).abs().mean()):.4f}")
    rows = [("0", flow_quality(trainer, batch, features))]
    start = time.perf_counter()
    while trainer.stage == 1 and trainer.step < args.steps:
        trainer.run(max_steps=min(args.every, args.steps - trainer.step))
        rows.append((f"{trainer.step} ({time.perf_counter() - start:.0f} s)", flow_quality(trainer, batch, features)))
    columns = list(rows[0][1])
    print("| step | " + " | ".join(columns) + " |")
    print("| --- |" + " --: |" * len(columns))
    for step, row in rows:
        print(f"| {step} | " + " | ".join(f"{row[c]:.4f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
