"""The ``plain_flow`` warper: GFLA's global flow field estimator with plain bilinear sampling.

The flow-based ablation of GFLA: the same flow estimator, occlusion masks, two-stage training and
sampling-correctness / affine-regularisation losses, but the source features are bilinearly sampled
at the flow's points (``bench.ops.flow_warp``) instead of being gathered by local attention over a
k x k patch around them.  The difference to ``gfla`` therefore isolates the local attention.

Takes no options of its own: the estimator is sized from ``setup.model`` like GFLA's.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.models.flow_net import FlowEstimator
from bench.ops import flow_warp
from bench.registry import WARPERS
from bench.warp import Warper, WarpInputs, WarpResult, WarpSetup

from .options import positive_int_options


@WARPERS.register("plain_flow")
class PlainFlow(Warper):
    """``plan()`` returns the estimator's ``{"flows", "masks"}``; :meth:`warp` samples along the flows."""

    uses_flow = True
    two_stage = True

    def __init__(self, setup: WarpSetup) -> None:
        super().__init__(setup)
        positive_int_options(setup, "plain_flow", {})
        self.flow_estimator = FlowEstimator(setup)

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
        warped = [flow_warp(features, flow) for features, flow in zip(source_features, plan["flows"][scale])]
        return WarpResult(features=warped, masks=list(plan["masks"][scale]))
