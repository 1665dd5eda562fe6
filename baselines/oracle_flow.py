"""The ``oracle_flow`` warper: the ground-truth flow and visibility in place of a learned warper.

At every scale the source features are bilinearly sampled (``bench.ops.flow_warp``) along the
dataset's ground-truth backward flow, area-resized to that scale with its values scaled (over the
visible pixels, ``bench.ops.downsample_truth``), and blended with the visible fraction of each map
pixel as the mask.  The backbone (encoders, decoder) trains as for every method, under the same
budget, so its row is the upper bound of pure transport under this backbone: an *oracle*, shown
apart from the methods and never ranked with them (``role = "oracle"``).

It reads ``WarpInputs.ground_truth``, which the trainer fills from the batch where the dataset
has ``flow_gt`` / ``visibility_gt`` (``flows_gt`` for videos), and fails, naming what is missing,
on a task whose data has none.  Its plan carries the resized ground truth as ``"flows"`` and
``"masks"`` (so the transport metrics and the report show them), without the flow losses:
nothing here is learned.  Takes no options.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.ops import downsample_truth, flow_warp
from bench.registry import WARPERS
from bench.warp import Warper, WarpInputs, WarpResult, WarpSetup

from .options import positive_int_options


class MissingGroundTruthError(ValueError):
    """The oracle was asked to warp without ground-truth transport in its inputs."""


@WARPERS.register("oracle_flow")
class OracleFlow(Warper):
    """Warps by the ground truth; no parameters of its own."""

    role = "oracle"

    def __init__(self, setup: WarpSetup) -> None:
        super().__init__(setup)
        positive_int_options(setup, "oracle_flow", {})

    def plan(self, inputs: WarpInputs) -> dict[str, Any]:
        truth = inputs.ground_truth
        if truth is None:
            raise MissingGroundTruthError(
                "oracle_flow warps by the ground-truth flow, but this task's data has none: its samples lack "
                "'flow_gt'/'visibility_gt' (pairs) or 'flows_gt'/'visibility_gt' (videos); only the generated "
                "datasets carry them"
            )
        if len(truth.flows) != self.setup.num_sources:
            raise ValueError(f"oracle_flow: {len(truth.flows)} ground-truth source(s), expected "
                             f"{self.setup.num_sources}")
        flows, masks = [], []
        for spec in self.setup.scales:
            resized = [downsample_truth(flow.float(), visibility.float(), (spec.height, spec.width))
                       for flow, visibility in zip(truth.flows, truth.visibility)]
            flows.append([flow for flow, _ in resized])
            masks.append([visibility for _, visibility in resized])
        return {"flows": flows, "masks": masks}

    def warp(
        self,
        scale: int,
        source_features: list[torch.Tensor],
        target_feature: torch.Tensor,
        plan: dict[str, Any],
    ) -> WarpResult:
        dtype = source_features[0].dtype
        warped = [flow_warp(features, flow.to(dtype)) for features, flow in zip(source_features, plan["flows"][scale])]
        return WarpResult(features=warped, masks=[mask.to(dtype) for mask in plan["masks"][scale]])
