"""Ablation plugin (not a benchmark method): GFLA with the local attention's 1/k^2 undone.

The original's attention returns ``avg_pool2d`` of the weighted k x k patch, i.e. the weighted patch
mean divided by k^2 (1/9 and 1/25 here).  This warper multiplies that output by k^2 and changes
nothing else, to test whether the scale is why ``gfla`` needs more steps than ``plain_flow``.
Load it with ``--plugin results/cpu-attention-scale/gfla_sum.py --methods gfla_sum``.
"""

from bench.registry import WARPERS
from bench.warpers.gfla import GFLAWarper


@WARPERS.register("gfla_sum")
class GFLAWeightedSum(GFLAWarper):
    """``gfla`` whose attention output is the weighted patch sum (k^2 times the original's)."""

    def warp(self, scale, source_features, target_feature, plan):
        result = super().warp(scale, source_features, target_feature, plan)
        k2 = self.setup.scales[scale].kernel_size ** 2
        result.features[:] = [feature * k2 for feature in result.features]
        return result
