"""The ``affine_stn`` warper: one global affine transform per scale and source (a spatial transformer).

A small conv encoder reads the target structure together with every source's image and structure,
and a linear head predicts, for each attention scale and each source, a 2x3 affine matrix ``theta``
in the normalised coordinates of ``F.affine_grid`` (``align_corners=False``, so one ``theta`` means
the same transform at every resolution).  The source features are resampled with it (bilinear,
border padding) and blended in with a learned occlusion mask, as GFLA blends its warped features.

The head predicts the offset from the identity, with weight and bias zero at initialisation, so the
warper starts as the identity transform; as an offset it stays close to the identity even if a
generator re-initialises every Linear layer (GFLA's orthogonal init, gain 0.02, bias 0).

Options (``model.methods.affine_stn``): ``hidden`` encoder width (32), ``layers`` stride-2 conv
layers of the encoder (4), ``mask_hidden`` width of the occlusion-mask heads (32).
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

DEFAULTS = {"hidden": 32, "layers": 4, "mask_hidden": 32}
POOLED_SIZE = 4  # the encoder's map is pooled to POOLED_SIZE x POOLED_SIZE before the head


def affine_warp(features: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample ``features`` (B, C, H, W) with affine ``theta`` (B, 2, 3): bilinear, border padding."""
    grid = F.affine_grid(theta.to(features.dtype), list(features.shape), align_corners=False)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="border", align_corners=False)


@WARPERS.register("affine_stn")
class AffineSTN(Warper):
    """Spatial-transformer baseline; ``plan()`` returns ``{"thetas", "masks"}`` (lists over scales of
    lists over sources; masks are filled in as :meth:`warp` visits each scale)."""

    def __init__(self, setup: WarpSetup) -> None:
        super().__init__(setup)
        options = positive_int_options(setup, "affine_stn", DEFAULTS)
        hidden, layers = options["hidden"], options["layers"]
        if min(setup.image_size) < 2**layers:
            raise ValueError(
                f"model.methods.affine_stn.layers={layers} halves the image {layers} times, but the image "
                f"size is {tuple(setup.image_size)}; use at most {min(setup.image_size).bit_length() - 1}"
            )
        in_channels = setup.structure_channels + setup.num_sources * (
            setup.image_channels + setup.structure_channels
        )
        convs: list[nn.Module] = []
        for i in range(layers):
            conv = nn.Conv2d(in_channels if i == 0 else hidden, hidden, 4, stride=2, padding=1)
            convs += [conv, nn.LeakyReLU(0.1)]
        self.encoder = nn.Sequential(
            *convs,
            nn.AdaptiveAvgPool2d(POOLED_SIZE),
            nn.Flatten(),
            nn.Linear(hidden * POOLED_SIZE**2, hidden),
            nn.LeakyReLU(0.1),
        )
        self.theta_head = nn.Linear(hidden, len(setup.scales) * setup.num_sources * 6)
        nn.init.zeros_(self.theta_head.weight)
        nn.init.zeros_(self.theta_head.bias)
        self.register_buffer("identity", torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), persistent=False)
        self.occlusion = OcclusionMasks(setup.scales, options["mask_hidden"])

    def plan(self, inputs: WarpInputs) -> dict[str, Any]:
        num_scales, num_sources = len(self.setup.scales), self.setup.num_sources
        if len(inputs.source_images) != num_sources:
            raise ValueError(f"affine_stn expects {num_sources} source(s), got {len(inputs.source_images)}")
        pieces = [inputs.target_structure]
        for image, structure in zip(inputs.source_images, inputs.source_structures):
            pieces += [image, structure]
        code = self.encoder(torch.cat(pieces, dim=1))
        offsets = self.theta_head(code).view(code.shape[0], num_scales, num_sources, 2, 3)
        thetas = [
            [self.identity + offsets[:, scale, source] for source in range(num_sources)]
            for scale in range(num_scales)
        ]
        return {"thetas": thetas, "masks": unfilled_masks(self.setup.scales)}

    def warp(
        self,
        scale: int,
        source_features: list[torch.Tensor],
        target_feature: torch.Tensor,
        plan: dict[str, Any],
    ) -> WarpResult:
        thetas = plan["thetas"][scale]
        warped = [affine_warp(features, theta) for features, theta in zip(source_features, thetas)]
        return self.occlusion.result(scale, warped, target_feature, plan)
