"""GFLA's spatial-transformation ops in pure PyTorch (device-agnostic, differentiable)."""

from bench.ops.flow_warp import flow_warp, pixel_grid

__all__ = ["flow_warp", "pixel_grid"]
