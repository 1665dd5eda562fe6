"""GFLA's warper: global flow fields from F, then content-aware local attention per scale and source.

``plan`` runs the flow estimator once per forward; ``warp`` attends the source features at that
scale around the flowed positions (kernel from the ScaleSpec) and hands the estimator's occlusion
masks to :func:`bench.warp.blend`.  It is two-stage: F is pretrained alone with the correctness and
regularisation losses, then everything trains end to end.

Options (``model.methods.gfla``): ``attention_hidden`` (default 128, the original's fixed width).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bench.models.blocks import init_weights
from bench.models.flow_net import FlowEstimator
from bench.ops import LocalAttention
from bench.registry import WARPERS
from bench.warp import Warper, WarpInputs, WarpResult, WarpSetup

OPTIONS = {"attention_hidden": 128}


@WARPERS.register("gfla")
class GFLAWarper(Warper):
    """Global-Flow Local-Attention (Ren et al., CVPR 2020)."""

    uses_flow = True
    two_stage = True

    def __init__(self, setup: WarpSetup) -> None:
        super().__init__(setup)
        unknown = set(setup.options) - set(OPTIONS)
        if unknown:
            raise ValueError(
                f"model.methods.gfla: unknown option(s) {sorted(unknown)}; known: {', '.join(OPTIONS)}"
            )
        hidden = int(setup.options.get("attention_hidden", OPTIONS["attention_hidden"]))
        self.flow_estimator = FlowEstimator(setup)
        self.attention = nn.ModuleList(
            nn.ModuleList(
                LocalAttention(spec.channels, spec.kernel_size, hidden) for _ in range(setup.num_sources)
            )
            for spec in setup.scales
        )
        init_weights(self.attention, setup.model.init_gain)

    def plan(self, inputs: WarpInputs) -> dict[str, Any]:
        flows, masks = self.flow_estimator(inputs)
        return {"flows": flows, "masks": masks}

    def warp(
        self,
        scale: int,
        source_features: list[torch.Tensor],
        target_feature: torch.Tensor,
        plan: dict[str, Any],
    ) -> WarpResult:
        flows, masks = plan["flows"][scale], plan["masks"][scale]
        features = [
            attention(source, target_feature, flow)
            for attention, source, flow in zip(self.attention[scale], source_features, flows)
        ]
        return WarpResult(features=features, masks=list(masks))
