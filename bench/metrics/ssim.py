"""SSIM through scikit-image's ``structural_similarity``, in the variants GFLA-era papers report.

* ``gaussian`` (default): Gaussian window sigma 1.5, ``use_sample_covariance=False``,
  ``data_range=255`` on the uint8 images (the Wang et al. 2004 setting);
* ``gfla256``: GFLA's "ssim_256", the same window but ``data_range = fake.max() - fake.min()`` of
  each generated image on the 0-255 scale;
* ``win51``: GFLA's "ssim": uniform 51x51 window, sample covariance, ``data_range=1`` on [0, 1].
"""

from __future__ import annotations

from typing import Any

import numpy as np
import skimage
from skimage.metrics import structural_similarity

from bench.metrics.base import EvalContext
from bench.metrics.paired import PairedImageMetric
from bench.registry import METRICS

GAUSSIAN = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}
VARIANTS: dict[str, dict[str, Any]] = {
    "gaussian": {**GAUSSIAN, "data_range": 255, "input_range": "uint8 [0, 255]"},
    "gfla256": {
        **GAUSSIAN,
        "data_range": "fake.max() - fake.min() per image",
        "input_range": "uint8 [0, 255]",
    },
    "win51": {"win_size": 51, "data_range": 1, "input_range": "[0, 1] (uint8 / 255)"},
}


@METRICS.register("ssim")
class SSIM(PairedImageMetric):
    """Mean SSIM over images (colour: ``channel_axis=2``), variant from ``ctx.options["ssim_variant"]``."""

    name = "ssim"
    higher_is_better = True

    @staticmethod
    def variant(ctx: EvalContext) -> str:
        variant = ctx.options.get("ssim_variant", "gaussian")
        if variant not in VARIANTS:
            raise ValueError(f"ssim_variant {variant!r}: expected one of {', '.join(VARIANTS)}")
        return variant

    def score(self, fake: np.ndarray, real: np.ndarray, ctx: EvalContext) -> float:
        variant = self.variant(ctx)
        if variant == "win51":
            return float(
                structural_similarity(real / 255.0, fake / 255.0, win_size=51, data_range=1, channel_axis=2)
            )
        data_range = 255 if variant == "gaussian" else int(fake.max()) - int(fake.min())
        if data_range == 0:
            raise ValueError("ssim variant gfla256: a generated image is constant, so its data_range is 0")
        return float(structural_similarity(real, fake, data_range=data_range, channel_axis=2, **GAUSSIAN))

    def protocol(self, ctx: EvalContext) -> dict[str, Any]:
        variant = self.variant(ctx)
        return {
            "implementation": f"skimage.metrics.structural_similarity (scikit-image {skimage.__version__})",
            "ssim_variant": variant,
            "channel_axis": 2,
            **VARIANTS[variant],
        }
