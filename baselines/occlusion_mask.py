"""Learned occlusion masks for warpers whose transport has no mask of its own (affine STN, non-local).

GFLA blends each warped source feature map into the decoder state with a sigmoid mask
(``out*(1-m) + warped*m``).  Flow estimators predict that mask with the flow; warpers without one
predict it here from what they know at that scale: the decoder state and the warped features.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bench.warp import ScaleSpec, WarpResult


def unfilled_masks(scales: tuple[ScaleSpec, ...]) -> list[list[torch.Tensor]]:
    """The ``plan["masks"]`` entry that :meth:`OcclusionMasks.result` fills in, one list per scale."""
    return [[] for _ in scales]


class OcclusionMasks(nn.Module):
    """One small conv head per scale, shared by the sources: sigmoid(conv(lrelu(conv([target, warped]))))."""

    def __init__(self, scales: tuple[ScaleSpec, ...], hidden: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(2 * spec.channels, hidden, 3, padding=1),
                nn.LeakyReLU(0.1),
                nn.Conv2d(hidden, 1, 3, padding=1),
                nn.Sigmoid(),
            )
            for spec in scales
        )

    def result(
        self, scale: int, warped: list[torch.Tensor], target_feature: torch.Tensor, plan: dict[str, Any]
    ) -> WarpResult:
        """Masks for each warped map at ``scale``, also recorded in ``plan["masks"][scale]`` (report)."""
        masks = [self.heads[scale](torch.cat([target_feature, features], dim=1)) for features in warped]
        plan["masks"][scale] = masks
        return WarpResult(features=warped, masks=masks)
