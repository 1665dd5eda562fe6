"""KID: torchmetrics' Kernel Inception Distance over the same Inception features as FID."""

from __future__ import annotations

import importlib.metadata
import warnings

import torch
from torch import nn
from torchmetrics.image.kid import KernelInceptionDistance

from bench.metrics.base import EvalContext, MetricResult
from bench.metrics.distribution import DistributionFeatures, DistributionMetric
from bench.registry import METRICS

MAX_SUBSET_SIZE = 1000
DEFAULT_SUBSETS = 100
DEFAULT_SEED = 0


def kernel_inception_distance(
    real_features: torch.Tensor, fake_features: torch.Tensor, subsets: int, subset_size: int, seed: int
) -> tuple[float, float]:
    """(mean, std over subsets) of torchmetrics' KID on precomputed features; the global RNG is untouched."""
    kid = KernelInceptionDistance(feature=nn.Identity(), subsets=subsets, subset_size=subset_size)
    kid.update(real_features, real=True)
    kid.update(fake_features, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = kid.compute()
    return float(mean), float(std)


@METRICS.register("kid")
class KID(DistributionMetric):
    """Kernel Inception Distance (cubic polynomial kernel), mean and std over random subsets."""

    name = "kid"

    def from_features(self, features: DistributionFeatures, ctx: EvalContext) -> MetricResult:
        count = features.fake.shape[0]
        subset_size = min(MAX_SUBSET_SIZE, count, features.reference.count)
        if subset_size < 2:
            raise ValueError(f"KID needs at least 2 generated and 2 reference images, got {count}")
        subsets = int(ctx.options.get("kid_subsets", DEFAULT_SUBSETS))
        seed = int(ctx.options.get("kid_seed", DEFAULT_SEED))
        with warnings.catch_warnings():  # torchmetrics warns that it keeps all features: we hand it them
            warnings.simplefilter("ignore", UserWarning)
            mean, std = kernel_inception_distance(
                torch.from_numpy(features.reference.features).double(),
                torch.from_numpy(features.fake),
                subsets,
                subset_size,
                seed,
            )
        protocol = {
            **features.protocol,
            "implementation": "torchmetrics.image.kid.KernelInceptionDistance "
            f"(torchmetrics {importlib.metadata.version('torchmetrics')}) on precomputed features",
            "kernel": "polynomial degree 3, gamma 1/2048, coef 1",
            "subsets": subsets,
            "subset_size": subset_size,
            "seed": seed,
            "std": "population std over subsets",
        }
        return MetricResult(value=mean, std=std, count=count, protocol=protocol)
