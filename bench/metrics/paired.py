"""Paired metrics scored image by image with a numpy library (scikit-image): mean and std over images,
and the per-image scores themselves (for the leaderboard's paired differences)."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import torch

from bench.metrics.base import EvalContext, Metric, MetricResult
from bench.metrics.inputs import check_pairs


class PairedImageMetric(Metric):
    """Scores each (fake, real) pair as uint8 (H, W, 3) arrays; the value is the mean over all pairs."""

    kind = "paired"

    @abstractmethod
    def score(self, fake: np.ndarray, real: np.ndarray, ctx: EvalContext) -> float:
        """The metric of one pair of uint8 (H, W, 3) images."""

    @abstractmethod
    def protocol(self, ctx: EvalContext) -> dict[str, Any]:
        """How the metric is computed (library, version, parameters)."""

    def compute(self, fake: torch.Tensor, real: torch.Tensor | None, ctx: EvalContext) -> MetricResult:
        fake, real = check_pairs(fake, real)
        fake_hwc = fake.permute(0, 2, 3, 1).cpu().numpy()
        real_hwc = real.permute(0, 2, 3, 1).cpu().numpy()
        scores = np.array([self.score(f, r, ctx) for f, r in zip(fake_hwc, real_hwc)], dtype=np.float64)
        return MetricResult(
            value=float(scores.mean()),
            std=float(scores.std()),
            count=len(scores),
            per_image=scores,
            protocol={
                **self.protocol(ctx),
                "aggregate": "mean over images; std = population std over images",
            },
        )
