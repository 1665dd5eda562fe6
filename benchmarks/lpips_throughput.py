"""LPIPS throughput on this machine (images/s through the benchmark's metric) and a reproducible sanity case.

Times ``METRICS["lpips"].compute`` (alex and vgg, v0.1) on random uint8 pairs at 64x64 and 256x176 after
one warm-up call, and prints the distances between scikit-image's astronaut (resized) and its Gaussian
blurs, so that a machine's weights can be compared with another's.  Needs the trunks resolved
(``python run_bench.py weights --fetch``).

Run:  PYTHONPATH=. python benchmarks/lpips_throughput.py [--images 100] [--batch-size 50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import skimage.data
import torch
import torchvision.transforms.functional as TF

import bench.metrics  # noqa: F401  (registers the metrics)
from bench.metrics.base import EvalContext
from bench.registry import METRICS
from machine import describe

SIZES = ((64, 64), (256, 176))
BLUR_SIGMAS = (0.5, 1.0, 2.0)


def throughput(net: str, size: tuple[int, int], images: int, batch_size: int, repeats: int) -> float:
    """Best-of-``repeats`` images/s of the LPIPS metric on ``images`` random pairs of ``size``."""
    generator = torch.Generator().manual_seed(0)
    fake, real = (torch.randint(0, 256, (images, 3, *size), generator=generator, dtype=torch.uint8) for _ in range(2))
    ctx = EvalContext(batch_size=batch_size, options={"lpips_net": net})
    metric = METRICS.get("lpips")()
    first = metric.compute(fake[:batch_size], real[:batch_size], ctx)  # warm-up: builds and caches the network
    if first.value is None:
        raise SystemExit(f"LPIPS-{net} unavailable: {first.unavailable}")
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        metric.compute(fake, real, ctx)
        best = min(best, time.perf_counter() - start)
    return images / best


def blur_distances(net: str, size: tuple[int, int]) -> list[float]:
    """LPIPS between the astronaut resized to ``size`` and its Gaussian blurs (kernel 9, BLUR_SIGMAS)."""
    image = TF.resize(torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1)[None], list(size), antialias=True)
    ctx = EvalContext(options={"lpips_net": net})
    blurs = [TF.gaussian_blur(image.float(), 9, sigma).round().clamp(0, 255).to(torch.uint8) for sigma in BLUR_SIGMAS]
    return [METRICS.get("lpips")().compute(blur, image, ctx).value for blur in blurs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(describe())
    print(f"| net | size (H x W) | images/s (batch {args.batch_size}, {args.images} pairs, best of {args.repeats}) | "
          f"astronaut vs blur sigma {' / '.join(map(str, BLUR_SIGMAS))} |")
    print("| --- | --- | --: | --- |")
    for net in ("alex", "vgg"):
        for size in SIZES:
            rate = throughput(net, size, args.images, args.batch_size, args.repeats)
            distances = " / ".join(f"{d:.4f}" for d in blur_distances(net, size))
            print(f"| {net} | {size[0]} x {size[1]} | {rate:.1f} | {distances} |")
    trunk = METRICS.get("lpips")().compute(*(torch.zeros(1, 3, 64, 64, dtype=torch.uint8),) * 2, EvalContext())
    print(f"alex trunk: {trunk.protocol['trunk_file']} sha256 {trunk.protocol['trunk_sha256']} "
          f"({trunk.protocol['trunk_origin']})")


if __name__ == "__main__":
    main()
