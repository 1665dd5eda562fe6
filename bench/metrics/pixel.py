"""Pixel metrics: PSNR (scikit-image) and L1 (mean absolute difference on [0, 1])."""

from __future__ import annotations

from typing import Any

import numpy as np
import skimage
from skimage.metrics import peak_signal_noise_ratio

from bench.metrics.base import EvalContext
from bench.metrics.paired import PairedImageMetric
from bench.registry import METRICS


@METRICS.register("psnr")
class PSNR(PairedImageMetric):
    """Peak signal-to-noise ratio per image (dB); identical images give +inf, as scikit-image does."""

    name = "psnr"
    higher_is_better = True

    def score(self, fake: np.ndarray, real: np.ndarray, ctx: EvalContext) -> float:
        return float(peak_signal_noise_ratio(real, fake, data_range=255))

    def protocol(self, ctx: EvalContext) -> dict[str, Any]:
        return {
            "implementation": f"skimage.metrics.peak_signal_noise_ratio (scikit-image {skimage.__version__})",
            "data_range": 255,
            "input": "uint8 images; equal to GFLA's data_range=1 on [0, 1]",
        }


@METRICS.register("l1")
class L1(PairedImageMetric):
    """Mean absolute difference on [0, 1], per image (GFLA's "l1")."""

    name = "l1"
    higher_is_better = False

    def score(self, fake: np.ndarray, real: np.ndarray, ctx: EvalContext) -> float:
        return float(np.abs(fake.astype(np.float64) - real.astype(np.float64)).mean() / 255.0)

    def protocol(self, ctx: EvalContext) -> dict[str, Any]:
        return {"implementation": "numpy mean |fake - real|", "input_range": "[0, 1] (uint8 / 255)"}
