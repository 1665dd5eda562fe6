"""GFLA's spatial-transformation ops in pure PyTorch (device-agnostic, differentiable)."""

from bench.ops.block_extractor import extract_blocks, patch_offsets
from bench.ops.flow_resize import downsample_truth, upsample_flow
from bench.ops.flow_warp import flow_warp, pixel_grid, sample_bilinear
from bench.ops.local_attention import LocalAttention, tiled_local_attention, weighted_patch_sum
from bench.ops.resample import gaussian_resample

__all__ = [
    "LocalAttention",
    "downsample_truth",
    "extract_blocks",
    "flow_warp",
    "gaussian_resample",
    "patch_offsets",
    "pixel_grid",
    "sample_bilinear",
    "tiled_local_attention",
    "upsample_flow",
    "weighted_patch_sum",
]
