"""Evaluation throughput: FID Inception features, LPIPS and SSIM images/s, and the Fréchet distance cost.

Prints machine information, then for the Inception every combination of threads, batch size and
memory layout (channels_last), under ``torch.inference_mode`` and, as the "before" baseline,
pytorch-fid's own loop style (``torch.no_grad``, batch 50, contiguous).  Every figure is the best
of ``--repeats`` runs, because the machine may be shared: read them as upper bounds of what a quiet
machine does.  Run::

    OMP_NUM_THREADS=2 PYTHONPATH=. python benchmarks/eval_throughput.py --images 16 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import torch

from bench.metrics.base import EvalContext
from bench.metrics.fid import frechet_distance_fast
from bench.metrics.inception import WeightsUnavailable, compute_features, load_inception, resolve_inception
from bench.metrics.reference import gaussian_statistics
from bench.registry import METRICS
from machine import describe


def best_rate(run: Callable[[], object], count: int, repeats: int) -> float:
    """Best images/s over ``repeats`` runs of ``run`` (which processes ``count`` images)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return count / best


def interleaved(configs: dict[str, Callable[[], object]], count: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Best (wall images/s, CPU ms per image) of each config, measured round-robin so that load
    from other users spreads over all configs rather than hitting one."""
    best = {name: (0.0, float("inf")) for name in configs}
    for _ in range(rounds):
        for name, run in configs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            rate = count / (time.perf_counter() - wall)
            cpu_ms = 1000 * (time.process_time() - cpu) / count
            best[name] = (max(best[name][0], rate), min(best[name][1], cpu_ms))
    return best


def inception_throughput(images: torch.Tensor, repeats: int, device: str) -> None:
    try:
        source = resolve_inception()
    except WeightsUnavailable as exc:
        print(f"FID features: unavailable ({exc})")
        return
    shape = tuple(images.shape[2:])
    print(f"\nFID Inception features ({images.shape[0]} images {shape} -> 299), weights {source.origin}")
    network = load_inception(source, device, channels_last=False)

    def pytorch_fid_style() -> None:  # the "before": no_grad, batch 50, contiguous
        with torch.no_grad():
            for start in range(0, images.shape[0], 50):
                network(images[start : start + 50].to(device).float() / 255)

    configs: dict[str, Callable[[], object]] = {"before: no_grad, batch 50, contiguous": pytorch_fid_style}
    for batch_size in (8, 16, 32):
        for channels_last in (False, True):
            name = f"inference_mode, batch {batch_size}, {'channels_last' if channels_last else 'contiguous'}"
            configs[name] = lambda b=batch_size, c=channels_last: compute_features(images, source, device, b, c)
    for threads in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(threads)
        for name, (rate, cpu_ms) in interleaved(configs, images.shape[0], repeats).items():
            print(f"  threads {threads}  {name:40s}: {rate:6.2f} img/s  {cpu_ms:6.0f} CPU ms/img")


def paired_throughput(fake: torch.Tensor, real: torch.Tensor, repeats: int, device: str) -> None:
    print(f"\npaired metrics ({fake.shape[0]} pairs {tuple(fake.shape[2:])})")
    for variant in ("gaussian", "gfla256", "win51"):
        ctx = EvalContext(options={"ssim_variant": variant})
        rate = best_rate(lambda c=ctx: METRICS.get("ssim")().compute(fake, real, c), fake.shape[0], repeats)
        print(f"  ssim {variant:8s}: {rate:8.1f} img/s")
    ctx = EvalContext(device=torch.device(device), batch_size=16)
    result = METRICS.get("lpips")().compute(fake, real, ctx)
    if result.value is None:
        print(f"  lpips: unavailable ({result.unavailable})")
    else:
        rate = best_rate(lambda: METRICS.get("lpips")().compute(fake, real, ctx), fake.shape[0], repeats)
        print(f"  lpips alex: {rate:8.1f} img/s")


def frechet_cost(counts: tuple[int, ...], repeats: int) -> None:
    print("\nFréchet distance, 2048-d features (pytorch-fid's sqrtm is timed once, separately, with --sqrtm)")
    rng = np.random.default_rng(0)
    for count in counts:
        a, b = rng.random((count, 2048)), rng.random((count, 2048))
        start = time.perf_counter()
        for _ in range(repeats):
            frechet_distance_fast(a, b)
        print(f"  fast, {count:5d} images per set: {(time.perf_counter() - start) / repeats:6.2f} s")


def sqrtm_cost(count: int) -> None:
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(0)
    a, b = rng.random((count, 2048)), rng.random((count, 2048))
    start = time.perf_counter()
    value = calculate_frechet_distance(*gaussian_statistics(a), *gaussian_statistics(b))
    elapsed = time.perf_counter() - start
    fast = frechet_distance_fast(a, b)
    print(f"  pytorch_fid, {count:5d} images per set: {elapsed:6.2f} s (FID {value:.6f}, fast {fast:.6f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16, help="images per Inception measurement")
    parser.add_argument("--pairs", type=int, default=64, help="pairs per SSIM/LPIPS measurement")
    parser.add_argument("--resolution", type=int, nargs=2, default=[64, 64], help="H W (the quick profile's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sqrtm", action="store_true", help="also time pytorch-fid's sqrtm (slow: ~1 min)")
    parser.add_argument("--skip-inception", action="store_true")
    args = parser.parse_args()

    print(describe(args.device))
    g = torch.Generator().manual_seed(0)
    size = tuple(args.resolution)
    real = torch.randint(0, 256, (args.pairs, 3, *size), dtype=torch.uint8, generator=g)
    fake = (real.int() + torch.randint(-20, 21, real.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    paired_throughput(fake, real, args.repeats, args.device)
    frechet_cost((100, 500, 1000), args.repeats)
    if args.sqrtm:
        sqrtm_cost(100)
    if not args.skip_inception:
        inception_throughput(real[: args.images], args.repeats, args.device)


if __name__ == "__main__":
    main()
