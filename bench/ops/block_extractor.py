"""GFLA's BlockExtractor: k x k bilinear patches around flowed points, tiled spatially.

The original CUDA op returns a (B, C, k*h, k*w) map in which output pixel (Y, X) belongs to patch
(Y // k, X // k) and holds the sample at offset (oy, ox) = (Y % k - k // 2, X % k - k // 2) from the
flowed point: absolute source pixel (X // k + fx + ox, Y // k + fy + oy).  Even k therefore has the
asymmetric offsets -k/2 .. k/2 - 1.  Bilinear interpolation clamps both neighbours to the border.
"""

from __future__ import annotations

import torch

from bench.ops.flow_warp import pixel_grid, sample_bilinear


def patch_offsets(kernel_size: int) -> range:
    """The offsets -k//2 .. k - 1 - k//2 of a k-wide window, in the original's row-major order."""
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive integer, got {kernel_size}")
    return range(-(kernel_size // 2), kernel_size - kernel_size // 2)


def extract_blocks(source: torch.Tensor, flow: torch.Tensor | None, kernel_size: int) -> torch.Tensor:
    """Tiled k x k patches of ``source`` (B, C, H, W) around (x + fx, y + fy); flow (B, 2, h, w) or None.

    Returns (B, C, k*h, k*w); ``flow=None`` means zero flow at the source's size.  Differentiable in
    ``source`` and ``flow``.
    """
    offsets = patch_offsets(kernel_size)
    if source.dim() != 4:
        raise ValueError(f"source must be (B, C, H, W), got shape {tuple(source.shape)}")
    batch, _, height, width = source.shape
    if flow is None:
        flow = source.new_zeros(batch, 2, height, width)
    if flow.dim() != 4 or flow.shape[:2] != (batch, 2):
        raise ValueError(f"flow must be (B={batch}, 2, h, w), got shape {tuple(flow.shape)}")
    points = pixel_grid(*flow.shape[2:], flow.device, flow.dtype) + flow
    tiled_points = points.repeat_interleave(kernel_size, 2).repeat_interleave(kernel_size, 3)
    offset_values = torch.tensor(list(offsets), device=flow.device, dtype=flow.dtype)
    tile = torch.stack(torch.meshgrid(offset_values, offset_values, indexing="xy"))  # (2, k, k): x, y
    tiled_points = tiled_points + tile.repeat(1, *flow.shape[2:])
    return sample_bilinear(source, tiled_points)
