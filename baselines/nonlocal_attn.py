"""The ``nonlocal_attn`` warper: global (non-local) attention from the target layout to the source.

At every scale the decoder state (target features) gives the queries and each source's encoder
features give keys and values, all 1x1-projected; every target location attends to *all* source
locations (GFLA's "global attention" alternative to flow + local attention).  A learned 1x1 output
projection maps the result back to the feature width, and a learned occlusion mask blends it in.

Queries, keys and values share one head dimension (``key_dim``) and are laid out contiguously, so
``F.scaled_dot_product_attention`` can use its fused kernels (flash / memory-efficient on CUDA, flash
on CPU), which never hold the (H*W) x (H*W) attention matrix: at 64x64 that matrix would be 64 MiB per
batch item and head (measured on CPU, batch 2, 128 channels, 8 heads: 83 MiB peak for forward and
backward instead of 3.1 GiB when the math fallback runs).

Options (``model.methods.nonlocal_attn``): ``heads`` (8), ``key_dim`` per head (None: channels //
heads, at least 1, so the heads together are as wide as the features), ``mask_hidden`` (32).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.registry import WARPERS
from bench.warp import Warper, WarpInputs, WarpResult, WarpSetup

from .occlusion_mask import OcclusionMasks, unfilled_masks
from .options import positive_int_options

DEFAULTS: dict[str, int | None] = {"heads": 8, "key_dim": None, "mask_hidden": 32}


class CrossAttention2d(nn.Module):
    """Multi-head attention of a (B, C, H, W) query map over a (B, C, H', W') key/value map."""

    def __init__(self, channels: int, heads: int, key_dim: int) -> None:
        super().__init__()
        self.heads, self.key_dim = heads, key_dim
        inner = heads * key_dim
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, inner, 1)
        self.out = nn.Conv2d(inner, channels, 1)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, heads*key_dim, H, W) -> (B, heads, H*W, key_dim)."""
        return x.flatten(2).unflatten(1, (self.heads, self.key_dim)).transpose(-1, -2).contiguous()

    def forward(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        attended = F.scaled_dot_product_attention(
            self._split_heads(self.query(target)),
            self._split_heads(self.key(source)),
            self._split_heads(self.value(source)),
        )  # (B, heads, H*W, key_dim)
        height, width = target.shape[-2:]
        return self.out(attended.transpose(-1, -2).flatten(1, 2).unflatten(2, (height, width)))


@WARPERS.register("nonlocal_attn")
class NonLocalAttention(Warper):
    """Non-local attention baseline; ``plan()`` returns ``{"masks"}``, filled in by :meth:`warp`."""

    def __init__(self, setup: WarpSetup) -> None:
        super().__init__(setup)
        options = positive_int_options(setup, "nonlocal_attn", DEFAULTS)
        heads = options["heads"]
        self.attention = nn.ModuleList(
            CrossAttention2d(spec.channels, heads, options["key_dim"] or max(spec.channels // heads, 1))
            for spec in setup.scales
        )
        self.occlusion = OcclusionMasks(setup.scales, options["mask_hidden"])

    def plan(self, inputs: WarpInputs) -> dict[str, Any]:
        return {"masks": unfilled_masks(self.setup.scales)}

    def warp(
        self,
        scale: int,
        source_features: list[torch.Tensor],
        target_feature: torch.Tensor,
        plan: dict[str, Any],
    ) -> WarpResult:
        warped = [self.attention[scale](target_feature, features) for features in source_features]
        return self.occlusion.result(scale, warped, target_feature, plan)
