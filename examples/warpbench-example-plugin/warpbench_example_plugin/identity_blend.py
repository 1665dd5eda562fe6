"""``identity_blend``: the smallest useful warper, as a template for your own.

It does no spatial transformation at all: each source's features are handed to the decoder where
they are, blended in with one learned mask value per scale and source.  On pose transfer it shows
how much a method gains over copying features without moving them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bench.registry import WARPERS
from bench.warp import Warper, WarpResult, WarpSetup


@WARPERS.register("identity_blend")
class IdentityBlend(Warper):
    """Source features unmoved; mask = sigmoid(one learned logit per scale and source), 0.5 at init."""

    def __init__(self, setup: WarpSetup) -> None:
        super().__init__(setup)
        self.mask_logits = nn.Parameter(torch.zeros(len(setup.scales), setup.num_sources))

    def warp(
        self,
        scale: int,
        source_features: list[torch.Tensor],
        target_feature: torch.Tensor,
        plan: dict[str, Any],
    ) -> WarpResult:
        ones = target_feature.new_ones(target_feature.shape[0], 1, *target_feature.shape[2:])
        masks = [ones * torch.sigmoid(self.mask_logits[scale, i]) for i in range(len(source_features))]
        return WarpResult(features=list(source_features), masks=masks)
