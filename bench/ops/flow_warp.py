"""Backward warping of feature maps by a dense pixel-offset flow.

GFLA's flow fields are *backward* offsets in pixels of the map they act on: the output at (x, y)
samples the source at (x + flow[0], y + flow[1]).  Sampling is bilinear with the border clamped
(``grid_sample`` with ``padding_mode="border"`` and ``align_corners=True``, whose normalised
coordinates -1 and 1 are the centres of the first and last pixel), which is the same arithmetic as
the original CUDA ops: floor/ceil neighbours, each clamped to [0, size - 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pixel_grid(height: int, width: int, device: torch.device | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Absolute pixel coordinates as a (1, 2, H, W) tensor, channel 0 = x, channel 1 = y."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack((xs, ys)).unsqueeze(0)


def _check_flow(source: torch.Tensor, flow: torch.Tensor) -> None:
    if source.dim() != 4:
        raise ValueError(f"source must be (B, C, H, W), got shape {tuple(source.shape)}")
    expected = (source.shape[0], 2, source.shape[2], source.shape[3])
    if tuple(flow.shape) != expected:
        raise ValueError(f"flow must have shape {expected} (B, 2, H, W) for this source, "
                         f"got {tuple(flow.shape)}")


def flow_warp(source: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``source`` (B, C, H, W) at (x + flow_x, y + flow_y); flow is (B, 2, H, W) in pixels.

    Bilinear, border-clamped; differentiable in both ``source`` and ``flow``.
    """
    _check_flow(source, flow)
    height, width = source.shape[-2:]
    points = pixel_grid(height, width, flow.device, flow.dtype) + flow
    # align_corners=True: pixel 0 -> -1, pixel size-1 -> +1 (a size-1 axis maps everything to 0).
    scale = torch.tensor([max(width - 1, 1), max(height - 1, 1)], device=flow.device, dtype=flow.dtype)
    grid = (points.permute(0, 2, 3, 1) / scale) * 2 - 1
    return F.grid_sample(source, grid.to(source.dtype), mode="bilinear", padding_mode="border",
                         align_corners=True)
