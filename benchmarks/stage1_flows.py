"""Does stage 1 teach the flow estimator anything?  Held-out flow quality during GFLA's pretraining.

Trains stage 1 of a two-stage warper (default ``gfla`` on ``pose_synthetic`` at ``quick``) and, every
``--every`` steps, measures on the first ``--pairs`` test pairs: the sampling-correctness loss (the
objective, unweighted) and, per warping scale, the L1 between the target image and the source image
warped by that scale's flow (upsampled to the image, offsets rescaled, bilinear, border clamp), next
to the L1 of the unwarped source.  A flow that has learned the correspondence brings the warped L1
below the unwarped one; the correctness loss alone can fall without that (it compares VGG features).

``--set model.vgg=imagenet-vgg16`` trains with the ImageNet VGG16 trunk; ``--vgg-input imagenet`` feeds that
trunk ImageNet mean/std-normalised inputs instead of the trunk's default convention.

Run:  PYTHONPATH=. python benchmarks/stage1_flows.py [--task pose_synthetic] [--profile quick]
      [--method gfla] [--steps 50] [--every 25] [--pairs 32] [--set train.lr=1e-4]
      [--set model.vgg=imagenet-vgg16] [--vgg-input gfla|imagenet]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from bench import losses
from bench.models.vgg import INPUT_CONVENTIONS, VGGFeatures
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


def held_out_inputs(test_set, count: int, video: bool) -> tuple[WarpInputs, torch.Tensor]:
    """(warper inputs, target images) of ``count`` held-out examples.

    Pair tasks: the first ``count`` test pairs.  Video tasks: ``count`` frames spread evenly over the test
    videos, each with the two sources the model takes in stage 1 (the previous real frame, frame 0).
    """
    if not video:
        items = [test_set[i] for i in range(min(count, len(test_set)))]

        def pair(key: str) -> torch.Tensor:
            return torch.stack([item[key] for item in items])

        inputs = WarpInputs([pair("source_image")], [pair("source_structure")], pair("target_structure"))
        return inputs, pair("target_image")
    videos = [test_set[i] for i in range(len(test_set))]
    per_video = -(-count // len(videos))
    picks = [
        (video_index, int(t))
        for video_index, item in enumerate(videos)
        for t in torch.linspace(2, item["frames"].shape[0] - 1, per_video).round().long().unique()
    ][:count]

    def frame(key: str, which: str) -> torch.Tensor:
        """``which``: "target" (frame t), "previous" (t - 1) or "reference" (frame 0)."""
        offset = {"target": lambda t: t, "previous": lambda t: t - 1, "reference": lambda t: 0}[which]
        return torch.stack([videos[v][key][offset(t)] for v, t in picks])

    inputs = WarpInputs(
        [frame("frames", "previous"), frame("frames", "reference")],
        [frame("structures", "previous"), frame("structures", "reference")],
        frame("structures", "target"),
    )
    return inputs, frame("frames", "target")


def flow_quality(
    trainer: Trainer, inputs: WarpInputs, target: torch.Tensor, features: tuple[list[dict], dict]
) -> dict[str, float]:
    """Correctness loss and per-scale, per-source warped-source L1 of the trainer's current flows;
    ``features`` are the VGG features of the source and target images (fixed, computed once)."""
    with torch.no_grad():
        flows, _ = trainer.warper.flow_estimator(inputs)
        row = {"correctness": float(losses.correctness_loss(features[0], features[1], flows, trainer.scale_layers))}
        for spec, scale_flows in zip(trainer.warper.setup.scales, flows):
            for index, (source, flow) in enumerate(zip(inputs.source_images, scale_flows)):
                label = f"@{spec.height}px" + (f" src{index}" if len(inputs.source_images) > 1 else "")
                row[f"L1 warped {label}"] = float((warp_image(source, flow) - target).abs().mean())
                row[f"mean abs flow {label}"] = float(flow.abs().mean())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_task_arguments(parser)
    parser.add_argument("--method", default="gfla")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vgg-input", choices=INPUT_CONVENTIONS, default=None,
                        help="input convention of the perceptual trunk (default: the trunk's own)")
    args = parser.parse_args()

    cfg, spec, root = prepare_task(args, [f"train.stage1_steps={args.steps}"])
    trainer = Trainer(cfg, args.method, spec.train_set(root, cfg, args.seed), "cpu", args.seed)
    if not trainer.two_stage:
        raise SystemExit(f"{args.method} has no stage 1 (not a two-stage warper, or train.stage1_steps is 0)")
    if args.vgg_input is not None:
        trainer.vgg = VGGFeatures(cfg.model.vgg, input_convention=args.vgg_input)
    inputs, target = held_out_inputs(spec.test_set(root, cfg), args.pairs, trainer.video)
    layers = sorted(trainer.correctness_layers)
    with torch.no_grad():
        features = [trainer.vgg(source, layers) for source in inputs.source_images], trainer.vgg(target, layers)

    print(describe())
    print(f"perceptual trunk: {trainer.vgg.describe()}")
    unwarped = ", ".join(f"{float((source - target).abs().mean()):.4f}" for source in inputs.source_images)
    print(f"{args.task} / {args.profile} / {args.method}: stage 1, lr {cfg.train.lr}, batch "
          f"{cfg.train.batch_size}, {target.shape[0]} held-out examples; L1 of the unwarped source(s): {unwarped}")
    rows = [("0", flow_quality(trainer, inputs, target, features))]
    start = time.perf_counter()
    while trainer.stage == 1 and trainer.step < args.steps:
        trainer.run(max_steps=min(args.every, args.steps - trainer.step))
        rows.append((f"{trainer.step} ({time.perf_counter() - start:.0f} s)",
                     flow_quality(trainer, inputs, target, features)))
    columns = list(rows[0][1])
    print("| step | " + " | ".join(columns) + " |")
    print("| --- |" + " --: |" * len(columns))
    for step, row in rows:
        print(f"| {step} | " + " | ".join(f"{row[c]:.4f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
