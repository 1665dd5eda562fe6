"""The ``none`` warper: no transport of source features (GFLA's "baseline" ablation).

The decoder sees only the target structure; whatever of the source's appearance reaches the output
must come through nothing but the losses, which measures how much the warping itself contributes.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.registry import WARPERS
from bench.warp import Warper, WarpResult, WarpSetup

from .options import positive_int_options


@WARPERS.register("none")
class NoWarp(Warper):
    """Leaves the decoder state untouched at every scale.  Takes no options and has no parameters."""

    def __init__(self, setup: WarpSetup) -> None:
        super().__init__(setup)
        positive_int_options(setup, "none", {})

    def warp(
        self,
        scale: int,
        source_features: list[torch.Tensor],
        target_feature: torch.Tensor,
        plan: dict[str, Any],
    ) -> WarpResult | None:
        return None
