"""GFLA's Resample2d: Gaussian-weighted k x k resampling by a pixel-offset flow.

Used by the sampling-correctness loss (kernel_size=4, sigma=2).  For the sample point
p = (x + fx, y + fy) the taps are floor(p) - k/2 + 1 .. floor(p) + k/2 along each axis (k=4:
floor - 1 .. floor + 2), each border-clamped to [0, size - 1], weighted by the separable Gaussian
exp(-d^2 / 2 sigma^2) of the tap's distance d to p and normalised so the weights sum to one.

Unlike the original CUDA kernel, whose input-gradient path truncates with int() where the forward
pass floors (the two disagree for negative coordinates), ``floor`` is used everywhere here, so the
gradient is that of the forward function.  The flow gradient comes from the Gaussian weights alone.
"""

from __future__ import annotations

import torch

from bench.ops.flow_warp import pixel_grid


def _axis_taps(coords: torch.Tensor, kernel_size: int, sigma: float,
               size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clamped tap indices and normalised Gaussian weights along one axis: both (B, k, h, w)."""
    steps = torch.arange(1 - kernel_size // 2, kernel_size // 2 + 1, device=coords.device, dtype=coords.dtype)
    taps = coords.floor().unsqueeze(1) + steps.view(1, -1, 1, 1)
    weights = torch.exp(-((coords.unsqueeze(1) - taps) ** 2) / (2 * sigma**2))
    weights = weights / weights.sum(1, keepdim=True)
    return taps.clamp(0, size - 1).long(), weights


def gaussian_resample(source: torch.Tensor, flow: torch.Tensor, kernel_size: int = 4,
                      sigma: float = 2.0) -> torch.Tensor:
    """Resample ``source`` (B, C, H, W) at (x + fx, y + fy) with flow (B, 2, h, w); returns (B, C, h, w)."""
    if kernel_size < 2 or kernel_size % 2:
        raise ValueError(f"kernel_size must be an even integer >= 2 (as in GFLA's Resample2d), "
                         f"got {kernel_size}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if source.dim() != 4:
        raise ValueError(f"source must be (B, C, H, W), got shape {tuple(source.shape)}")
    batch, channels, height, width = source.shape
    if flow.dim() != 4 or flow.shape[:2] != (batch, 2):
        raise ValueError(f"flow must be (B={batch}, 2, h, w), got shape {tuple(flow.shape)}")
    points = pixel_grid(*flow.shape[2:], flow.device, flow.dtype) + flow
    x_taps, x_weights = _axis_taps(points[:, 0], kernel_size, sigma, width)
    y_taps, y_weights = _axis_taps(points[:, 1], kernel_size, sigma, height)
    # All k*k (y, x) tap pairs per output pixel: flat source indices and product weights, (B, k*k, h, w).
    index = (y_taps.unsqueeze(2) * width + x_taps.unsqueeze(1)).flatten(1, 2)
    weights = (y_weights.unsqueeze(2) * x_weights.unsqueeze(1)).flatten(1, 2).to(source.dtype)
    flat_index = index.flatten(1).unsqueeze(1).expand(-1, channels, -1)
    taps = source.flatten(2).gather(2, flat_index).view(batch, channels, *index.shape[1:])
    return torch.einsum("bckhw,bkhw->bchw", taps, weights)
