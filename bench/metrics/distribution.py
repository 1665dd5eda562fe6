"""What FID and KID share: Inception features of the generated set and of the cached reference set."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.metrics.base import EvalContext, Metric, MetricResult
from bench.metrics.inception import (
    FID_HELPER_FILE,
    FID_HELPER_PACKAGE,
    FID_HELPER_SHA256,
    FID_HELPER_VERSION,
    PT_INCEPTION_FILE,
    TORCHVISION_INCEPTION_FILE,
    WeightsUnavailable,
    compute_features,
    fid_helper_default_path,
    inception_features,
    resolve_inception,
    verify_fid_helper,
)
from bench.metrics.inputs import check_images
from bench.metrics.reference import ReferenceStatistics, reference_statistics
from bench.metrics.weight_files import weight_row


@dataclass
class DistributionFeatures:
    """Generated-set features, reference statistics, and the protocol fields both metrics record."""

    fake: np.ndarray  # (N, 2048) float64
    reference: ReferenceStatistics
    protocol: dict[str, Any]


def distribution_features(fake: torch.Tensor, ctx: EvalContext) -> DistributionFeatures:
    """Features of ``fake`` (computed once per image set) and of ``ctx.reference`` (cached).

    Raises WeightsUnavailable when no Inception weights can be used.
    """
    check_images(fake, "fake")
    if ctx.reference is None:
        raise ValueError(
            "distribution metrics need ctx.reference (a dataset of uint8 (3, H, W) reference images)"
        )
    options = ctx.options
    source = resolve_inception(
        options.get("fid_inception", "pt_inception"),
        options.get("weights_dir"),
        options.get("fid_helper_path"),
    )
    batch_size = max(1, int(ctx.batch_size))
    cache = Path(ctx.cache_dir) if ctx.cache_dir is not None else None
    fake_features = inception_features(
        fake, source, ctx.device, batch_size, cache / "features" if cache else None
    ).double().numpy()
    reference = reference_statistics(
        ctx.reference,
        lambda images: compute_features(images, source, ctx.device, batch_size),
        source.protocol(),
        ctx.reference_name,
        cache / "reference_stats" if cache else None,
        options.get("fid_reference_size"),
        batch_size,
    )
    protocol = {
        **source.protocol(),
        "reference": ctx.reference_name,
        "fid_reference_split": options.get("fid_reference", "train"),
        **reference.protocol(),
        "generated_count": int(fake_features.shape[0]),
        "generated_resolution": list(fake.shape[2:]),
    }
    return DistributionFeatures(fake_features, reference, protocol)


def inception_weight_rows(metric: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    """Inventory rows of the Inception weights behind FID and KID, in resolution order."""
    weights_dir = options.get("weights_dir")
    user = weight_row(
        metric, PT_INCEPTION_FILE, weights_dir, "pytorch-fid's FID Inception (used first when present)"
    )
    helper_path = options.get("fid_helper_path") or fid_helper_default_path()
    helper = {
        "metric": metric,
        "used_by": metric,
        "name": FID_HELPER_FILE,
        "file": FID_HELPER_FILE,
        "path": str(helper_path) if helper_path else None,
        "present": False,
        "source": "missing",
        "sha256": None,
        "where_to_put": f"pip install {FID_HELPER_PACKAGE}=={FID_HELPER_VERSION}",
        "note": "the FID Inception as TorchScript, mapped onto pytorch-fid's network "
        "(used when the file above is absent)",
    }
    if helper_path is not None:
        try:
            verify_fid_helper(helper_path)
            helper.update(present=True, sha256=FID_HELPER_SHA256)
            helper["source"] = (
                f"available ({FID_HELPER_PACKAGE} {FID_HELPER_VERSION}, sha256 {FID_HELPER_SHA256})"
            )
        except WeightsUnavailable as exc:
            helper["note"] = str(exc)
    torchvision_row = weight_row(
        metric,
        TORCHVISION_INCEPTION_FILE,
        weights_dir,
        "option fid_inception=torchvision (GFLA's script; not TF-FID)",
    )
    return [user, helper, torchvision_row]


class DistributionMetric(Metric):
    """Base of FID and KID: both read Inception features through :func:`distribution_features`."""

    kind = "distribution"
    higher_is_better = False

    def compute(self, fake: torch.Tensor, real: torch.Tensor | None, ctx: EvalContext) -> MetricResult:
        try:
            features = distribution_features(fake, ctx)
        except WeightsUnavailable as exc:
            variant = ctx.options.get("fid_inception", "pt_inception")
            return MetricResult(value=None, unavailable=str(exc), protocol={"fid_inception": variant})
        return self.from_features(features, ctx)

    @abstractmethod
    def from_features(self, features: DistributionFeatures, ctx: EvalContext) -> MetricResult:
        """The metric from the shared features."""

    def weights(self, ctx: EvalContext) -> list[dict[str, Any]]:
        return inception_weight_rows(self.name, ctx.options)
