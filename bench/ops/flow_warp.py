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


def to_sampling_grid(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel coordinates (B, 2, h, w) of a (height, width) map -> grid_sample's (B, h, w, 2) grid.

    align_corners=True convention: pixel 0 -> -1, pixel size-1 -> +1 (a size-1 axis maps to -1,
    which border clamping turns into its only pixel).
    """
    scale = torch.tensor([max(width - 1, 1), max(height - 1, 1)], device=points.device, dtype=points.dtype)
    return points.permute(0, 2, 3, 1) * (2 / scale) - 1


def sample_bilinear(source: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Border-clamped bilinear samples of ``source`` (B, C, H, W) at pixel ``points`` (B, 2, h, w)."""
    if source.dim() != 4 or points.dim() != 4 or points.shape[1] != 2 or points.shape[0] != source.shape[0]:
        raise ValueError(f"expected source (B, C, H, W) and points (B, 2, h, w), got shapes "
                         f"{tuple(source.shape)} and {tuple(points.shape)}")
    grid = to_sampling_grid(points, source.shape[2], source.shape[3]).to(source.dtype)
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=True)


def flow_warp(source: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``source`` (B, C, H, W) at (x + flow_x, y + flow_y); flow is (B, 2, H, W) in pixels.

    Bilinear, border-clamped; differentiable in both ``source`` and ``flow``.
    """
    expected = (source.shape[0], 2, *source.shape[2:]) if source.dim() == 4 else None
    if expected is None or tuple(flow.shape) != expected:
        raise ValueError(f"flow_warp needs source (B, C, H, W) and flow (B, 2, H, W) of the same B, H, W; "
                         f"got source {tuple(source.shape)} and flow {tuple(flow.shape)}")
    height, width = source.shape[-2:]
    return sample_bilinear(source, pixel_grid(height, width, flow.device, flow.dtype) + flow)
