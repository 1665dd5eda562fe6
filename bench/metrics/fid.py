"""FID: the Fréchet distance between Inception pool3 Gaussians of generated and reference images.

The distance is ``pytorch_fid.fid_score.calculate_frechet_distance`` (option ``frechet:
pytorch_fid``, the default).  Its ``scipy.linalg.sqrtm`` of a 2048x2048 matrix takes 25-60 s on a
2-core CPU, so option ``frechet: fast`` computes the same quantity exactly (up to rounding) from
the features: with few images, tr sqrt(S1 S2) is the nuclear norm of a small n1 x n2 matrix;
otherwise it comes from two symmetric eigendecompositions.  Tests check both routes against
pytorch-fid; the method is recorded in the protocol.
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_fid.fid_score import calculate_frechet_distance

from bench.metrics.base import EvalContext, MetricResult
from bench.metrics.distribution import DistributionFeatures, DistributionMetric
from bench.metrics.reference import gaussian_statistics
from bench.registry import METRICS

MIN_UNBIASED_COUNT = 2048
FRECHET_METHODS = {
    "pytorch_fid": "pytorch_fid.fid_score.calculate_frechet_distance (scipy sqrtm)",
    "fast": "bench.metrics.fid.frechet_distance_fast (low-rank SVD or eigh; equals pytorch_fid's up to rounding)",
}


def frechet_distance_eigh(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2), via symmetric eigendecompositions.

    S1 S2 is similar to S1^(1/2) S2 S1^(1/2), which is symmetric positive semi-definite, so the
    trace of the square root is the sum of the square roots of its eigenvalues (negative rounding
    noise clipped to 0).
    """
    eigenvalues, eigenvectors = np.linalg.eigh(sigma1)
    root1 = (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T
    product = root1 @ sigma2 @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)


def frechet_distance_fast(features1: np.ndarray, features2: np.ndarray) -> float:
    """The Fréchet distance of the Gaussians fitted (``np.cov``) to two feature sets (n_i, D).

    With centred X_i and S_i = X_i^T X_i / (n_i - 1), the non-zero eigenvalues of S1 S2 are the
    squared singular values of M = X1 X2^T / sqrt((n1 - 1)(n2 - 1)), so tr sqrt(S1 S2) is the
    nuclear norm of the n1 x n2 matrix M: cheaper than any D x D decomposition while
    n1 * n2 * min(n1, n2) < D^3.
    """
    x1 = np.asarray(features1, dtype=np.float64)
    x2 = np.asarray(features2, dtype=np.float64)
    (n1, dim), n2 = x1.shape, x2.shape[0]
    if n1 * n2 * min(n1, n2) >= dim**3:
        return frechet_distance_eigh(*gaussian_statistics(x1), *gaussian_statistics(x2))
    diff = x1.mean(axis=0) - x2.mean(axis=0)
    x1 = x1 - x1.mean(axis=0)
    x2 = x2 - x2.mean(axis=0)
    cross = (x1 @ x2.T) / np.sqrt((n1 - 1) * (n2 - 1))
    trace_sqrt = np.linalg.svd(cross, compute_uv=False).sum()
    traces = np.square(x1).sum() / (n1 - 1) + np.square(x2).sum() / (n2 - 1)
    return float(diff @ diff + traces - 2.0 * trace_sqrt)


@METRICS.register("fid")
class FID(DistributionMetric):
    """Fréchet Inception Distance over every generated image against the (cached) reference statistics."""

    name = "fid"

    def compute(self, fake: torch.Tensor, real: torch.Tensor | None, ctx: EvalContext) -> MetricResult:
        method = ctx.options.get("frechet", "pytorch_fid")
        if method not in FRECHET_METHODS:  # before the expensive features
            raise ValueError(f"frechet {method!r}: expected one of {', '.join(FRECHET_METHODS)}")
        return super().compute(fake, real, ctx)

    def from_features(self, features: DistributionFeatures, ctx: EvalContext) -> MetricResult:
        count = features.fake.shape[0]
        if count < 2:
            raise ValueError(f"FID needs at least 2 generated images for a covariance, got {count}")
        method = ctx.options.get("frechet", "pytorch_fid")
        reference = features.reference
        if method == "pytorch_fid":
            mu, sigma = gaussian_statistics(features.fake)
            value = float(calculate_frechet_distance(mu, sigma, reference.mu, reference.sigma))
        else:
            value = frechet_distance_fast(features.fake, reference.features)
        protocol = {
            **features.protocol,
            "frechet_distance": FRECHET_METHODS[method],
            "statistics": "mean and np.cov(rowvar=False) of float64 features",
        }
        if min(count, reference.count) < MIN_UNBIASED_COUNT:
            protocol["warning"] = (
                f"fewer than {MIN_UNBIASED_COUNT} images: FID is biased upward and the covariance is "
                "rank-deficient; compare only FIDs over equal image counts"
            )
        return MetricResult(value=value, count=count, protocol=protocol)
