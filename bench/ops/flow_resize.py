"""Moving a pixel-offset flow between scales: its values are in pixels of the map it lives on.

A map of size (h, w) covers the image (H, W) with pixels of H / h x W / w image pixels (half-pixel
centres, as strided convolutions and average pooling lay them out), so resizing a flow is a
resampling of the field *and* a scaling of channel 0 by W / w and of channel 1 by H / h.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _scaled(flow: torch.Tensor, from_size: tuple[int, int], to_size: tuple[int, int]) -> torch.Tensor:
    factors = torch.tensor([to_size[1] / from_size[1], to_size[0] / from_size[0]], dtype=flow.dtype,
                           device=flow.device)
    return flow * factors.view(1, 2, 1, 1)


def upsample_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A (B, 2, h, w) flow in pixels of its map -> (B, 2, H, W) in image pixels (bilinear, half-pixel)."""
    if flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow: expected shape (B, 2, h, w), got {tuple(flow.shape)}")
    if tuple(flow.shape[-2:]) == tuple(size):
        return flow
    resized = F.interpolate(flow, size=tuple(size), mode="bilinear", align_corners=False)
    return _scaled(resized, tuple(flow.shape[-2:]), tuple(size))


def downsample_truth(
    flow: torch.Tensor, visibility: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground truth (B, 2, H, W) flow and (B, 1, H, W) visibility at map size ``size``.

    Area averaging: the visibility becomes the visible fraction of each map pixel, the flow the mean
    over its visible image pixels (over all of them where none is visible), in pixels of the map.
    """
    if tuple(flow.shape[-2:]) == tuple(size):
        return flow, visibility
    coverage = F.adaptive_avg_pool2d(visibility, size)
    weighted = F.adaptive_avg_pool2d(flow * visibility, size)
    plain = F.adaptive_avg_pool2d(flow, size)
    mean_flow = torch.where(coverage > 0, weighted / coverage.clamp_min(1e-12), plain)
    return _scaled(mean_flow, tuple(flow.shape[-2:]), tuple(size)), coverage
