"""The Warper contract: how a spatial-transformation method plugs into the shared generator.

warpbench compares warping methods under one backbone.  The generator (``bench.models.generator``)
encodes each source image, encodes the target structure, and decodes; at every configured
attention scale it asks the warper for source features transported to the target layout and blends
them in, per source ``s``::

    out <- sum_s [ out * (1 - m_s) + warped_s * m_s ]

(one source: the usual occlusion blend of GFLA; two sources, as in face animation with the previous
frame and the reference frame: both blended paths are summed, as the original does).

A warper is an ``nn.Module`` subclass of :class:`Warper`, registered with
``@bench.registry.WARPERS.register("name")``.  It implements

``plan(inputs) -> dict``
    called once per generator forward, before decoding; gets the source images and structures and
    the target structure (:class:`WarpInputs`).  Flow-based warpers run their flow estimator here.
    The returned dict is passed back to :meth:`Warper.warp` and to the losses.  Reserved keys:

    * ``"flows"``: list over scales (coarse -> fine) of lists over sources of ``(B, 2, h, w)``
      backward-warping offsets in pixels of that scale, channel 0 = x.  When present, GFLA's
      sampling-correctness and local-affine regularisation losses apply to them;
    * ``"masks"``: list over scales of lists over sources of ``(B, 1, h, w)`` occlusion masks in
      [0, 1] (shown in the report).

``warp(scale, source_features, target_feature, plan) -> WarpResult | None``
    for scale index ``scale`` (into ``setup.scales``), the sources' encoder features at that scale
    and the decoder state there; returns one warped feature map and one mask per source, or
    ``None`` to leave the decoder state untouched (the ``none`` baseline).

Class attributes declare what the warper needs from the trainer:

``uses_flow``   its plan carries learned ``"flows"`` (correctness and regularisation losses apply; a
                plan may carry flows without them, as the ``oracle_flow`` warper's given flows);
``two_stage``   train ``pretrain_parameters()`` alone first (stage 1: correctness x20,
                regularisation x0.01), then everything end to end, as GFLA does;
``role``        ``"method"``, or ``"oracle"`` for a warper that reads the ground truth
                (``WarpInputs.ground_truth``); the runner copies it into the record.

``extra_losses(plan, inputs)`` may return additional, already weighted loss terms.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from bench.config import ModelConfig


@dataclass(frozen=True)
class ScaleSpec:
    """One scale at which the generator calls the warper."""

    layer: int  # GFLA layer index L: the feature map is image / 2**L
    channels: int  # feature channels of source and target features here
    kernel_size: int  # local window: GFLA attention kernel, affine-regulariser window
    height: int
    width: int


@dataclass(frozen=True)
class WarpSetup:
    """Everything a warper may size itself from."""

    scales: tuple[ScaleSpec, ...]  # coarse -> fine, the order the decoder visits them
    num_sources: int  # 1 (pose transfer, view synthesis) or 2 (face animation: previous, reference)
    image_channels: int
    structure_channels: int
    image_size: tuple[int, int]
    model: ModelConfig = field(default_factory=ModelConfig)  # backbone widths (flow estimator)
    # the structures are codes tiled over the map (view synthesis: the one-hot view), not spatial maps
    structure_is_code: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # model.methods[<warper name>]


@dataclass
class TransportTruth:
    """Ground-truth transport of a batch, per source: backward flows (B, 2, H, W) target -> source
    in pixels of the image and visibilities (B, 1, H, W) in [0, 1] (``bench.data.base``'s keys)."""

    flows: list[torch.Tensor]
    visibility: list[torch.Tensor]

    @classmethod
    def of_sources(cls, flows: torch.Tensor, visibility: torch.Tensor) -> TransportTruth:
        """From (B, S, 2, H, W) flows and (B, S, 1, H, W) visibilities, sources along dim 1."""
        if flows.dim() != 5 or flows.shape[2] != 2 or visibility.shape[:2] != flows.shape[:2]:
            raise ValueError(f"expected ground-truth flows (B, S, 2, H, W) and visibility (B, S, 1, H, W), "
                             f"got {tuple(flows.shape)} and {tuple(visibility.shape)}")
        return cls(list(flows.unbind(1)), list(visibility.unbind(1)))

    @classmethod
    def of_pairs(cls, batch: dict[str, Any]) -> TransportTruth | None:
        """A collated pair batch's ``flow_gt`` / ``visibility_gt`` (one source), None without them."""
        if "flow_gt" not in batch:
            return None
        return cls.of_sources(batch["flow_gt"].unsqueeze(1), batch["visibility_gt"].unsqueeze(1))

    @classmethod
    def of_frame(cls, video: dict[str, Any], t: int) -> TransportTruth | None:
        """Frame ``t`` of a video (``flows_gt`` (T, 2, 2, H, W)) or of a clip batch (B, T, 2, 2, H, W):
        sources (previous, reference); None without ground truth."""
        if "flows_gt" not in video:
            return None
        flows, visibility = video["flows_gt"], video["visibility_gt"]
        if flows.dim() == 5:  # one video: a batch of one frame
            return cls.of_sources(flows[t : t + 1], visibility[t : t + 1])
        return cls.of_sources(flows[:, t], visibility[:, t])


@dataclass
class WarpInputs:
    """Per-forward inputs: images in [-1, 1], structures as (B, S, H, W) maps, and the ground-truth
    transport where the data has it (the trainer fills it for oracles only: a method never sees it)."""

    source_images: list[torch.Tensor]
    source_structures: list[torch.Tensor]
    target_structure: torch.Tensor
    ground_truth: TransportTruth | None = None


@dataclass
class WarpResult:
    """Warped source features and their blending masks, one per source."""

    features: list[torch.Tensor]
    masks: list[torch.Tensor]


class Warper(nn.Module):
    """Base class of every warping method (see the module docstring for the contract)."""

    uses_flow: ClassVar[bool] = False
    two_stage: ClassVar[bool] = False
    role: ClassVar[str] = "method"

    def __init__(self, setup: WarpSetup) -> None:
        super().__init__()
        self.setup = setup

    def plan(self, inputs: WarpInputs) -> dict[str, Any]:
        """Work done once per forward before decoding (e.g. estimate flows)."""
        return {}

    def warp(
        self,
        scale: int,
        source_features: list[torch.Tensor],
        target_feature: torch.Tensor,
        plan: dict[str, Any],
    ) -> WarpResult | None:
        raise NotImplementedError

    def pretrain_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters trained in stage 1 (two-stage warpers): by default the flow estimator's."""
        estimator = getattr(self, "flow_estimator", None)
        if estimator is None:
            raise NotImplementedError(f"{type(self).__name__} is two_stage but has no flow_estimator")
        return estimator.parameters()

    def extra_losses(self, plan: dict[str, Any], inputs: WarpInputs) -> dict[str, torch.Tensor]:
        """Additional, already weighted loss terms (none by default)."""
        return {}


def blend(target_feature: torch.Tensor, result: WarpResult | None) -> torch.Tensor:
    """GFLA's occlusion blending, summed over sources: sum_s out*(1-m_s) + warped_s*m_s."""
    if result is None:
        return target_feature
    if len(result.features) != len(result.masks):
        raise ValueError("a WarpResult needs one mask per warped feature map")
    out = 0
    for warped, mask in zip(result.features, result.masks):
        if warped.shape != target_feature.shape:
            raise ValueError(
                f"warped features have shape {tuple(warped.shape)}, expected {tuple(target_feature.shape)}"
            )
        out = out + target_feature * (1 - mask) + warped * mask
    return out
