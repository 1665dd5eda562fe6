"""GFLA's content-aware local attention block (the original's ``ExtractorAttn``), in pure PyTorch.

For every target location p = (x, y) with flow f(p):

* source patch S_o(p): the source bilinearly sampled (border clamped) at p + f(p) + o for the k x k
  offsets o = (ox, oy) in -k//2 .. k-1-k//2 (even k: asymmetric, as the original BlockExtractor);
* target patch T_o(p): the target at p + o, border clamped;
* hidden(p) = W1 [T(p); S(p)] + b1, a fully connected layer on the flattened patch pair in the
  original's order (:data:`PATCH_PAIR`); logits = W2 LeakyReLU_0.1(hidden) + b2 with k^2 outputs;
* a(p) = softmax over the k^2 logits; output(p) = sum_o a_o(p) S_o(p) / k^2 (the original's
  ``avg_pool2d`` over the k x k tile, i.e. divided by k^2, not a plain sum).

Checkpoint mapping (1:1 with the original ``ExtractorAttn`` state dict)::

    fully_connect_layer.0.weight  (hidden, 2C, k, k)   Conv2d(2C, hidden, k, stride=k): W1; input
                                                       channels in PATCH_PAIR order (target [0, C),
                                                       source [C, 2C)); kernel index (dy, dx) =
                                                       offset (oy + k//2, ox + k//2)
    fully_connect_layer.0.bias    (hidden,)            b1
    fully_connect_layer.2.weight  (k*k, hidden, 1, 1)  W2; output channel dy * k + dx = offset index
    fully_connect_layer.2.bias    (k*k,)               b2

(index 1 is the parameter-free LeakyReLU(0.1)).

The fast forward never builds the k^2 * C patch tensor of the original.  W1 is linear and bilinear
sampling shares its weights across integer offsets, so W1_source . S(p) is the bilinear sample at
p + f(p) of the k x k convolution of the replicate-padded source with W1_source (evaluated on a map
extended by the window so clamping stays exact), and W1_target . T(p) is an ordinary k x k
convolution of the replicate-padded target.  The weighted patch sum is a sparse-dense product over
the (k+1)^2 integer pixels under each patch (see ``weighted_patch_sum``).
``tiled_local_attention`` is the straightforward port of the original layout, kept as reference.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from bench.ops.block_extractor import extract_blocks
from bench.ops.flow_warp import pixel_grid, sample_bilinear

PATCH_PAIR = ("target", "source")
"""The order of the two patches along W1's input channels, the original's: its ``ExtractorAttn`` feeds
``cat((block_target, block_source), 1)``, so channels [0, C) see the target patch and [C, 2C) the
source patch.  The fast op, the tiled port and the tests all take the order from here; swapped, a
released checkpoint still loads strictly but applies its target weights to the source patch."""


def _window_matrix(weights: torch.Tensor, columns: torch.Tensor, num_columns: int) -> torch.Tensor:
    """The sparse (N, M) CSR matrix with row n holding weights[n, u] at columns[n, u] (U per row)."""
    count, per_row = columns.shape
    row_starts = torch.arange(0, count * per_row + 1, per_row, device=columns.device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        # torch >= 2.10 warns once that invariant checks are off, although check_invariants=False says so
        warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
        return torch.sparse_csr_tensor(row_starts, columns.flatten(), weights.flatten(), (count, num_columns),
                                       check_invariants=False)


def _sparse_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the sparse kernels run in: float32 and float64 as they are, anything else in float32."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


class _WindowRowSum(torch.autograd.Function):
    """out[n] = sum_u weights[n, u] * rows[columns[n, u]]: weights (N, U), rows (M, C), columns (N, U).

    A sparse-dense product, so no (N, U, C) tensor of gathered rows exists in either pass: forward is
    CSR @ rows, the rows' gradient the transposed (COO) product, the weights' gradient a sampled dense
    product (SDDMM).
    """

    @staticmethod
    def forward(ctx, weights: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
        compute = _sparse_dtype(rows.dtype)
        matrix = _window_matrix(weights.to(compute), columns, rows.shape[0])
        ctx.save_for_backward(weights, rows, columns)
        return (matrix @ rows.to(compute)).to(rows.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        weights, rows, columns = ctx.saved_tensors
        compute = _sparse_dtype(rows.dtype)
        grad_out = grad_out.to(compute)
        grad_weights = grad_rows = None
        if ctx.needs_input_grad[0]:
            # sampled_addmm rejects rows with more entries than the matrix has columns (tiny maps):
            # zero rows pad the column count, and no entry points at them.
            padded_rows = F.pad(rows.to(compute), (0, 0, 0, max(0, columns.shape[1] - rows.shape[0])))
            pattern = _window_matrix(weights.to(compute), columns, padded_rows.shape[0])
            products = torch.sparse.sampled_addmm(pattern, grad_out, padded_rows.t(), beta=0)
            grad_weights = products.values().view_as(weights).to(weights.dtype)
        if ctx.needs_input_grad[1]:
            count, per_row = columns.shape
            row_of_entry = torch.arange(count, device=columns.device).repeat_interleave(per_row)
            transposed = torch.sparse_coo_tensor(torch.stack((columns.flatten(), row_of_entry)),
                                                 weights.to(compute).flatten(), (rows.shape[0], count),
                                                 check_invariants=False)
            grad_rows = torch.sparse.mm(transposed, grad_out).to(rows.dtype)
        return grad_weights, grad_rows, None


def weighted_patch_sum(weights: torch.Tensor, source: torch.Tensor, points: torch.Tensor,
                       kernel_size: int) -> torch.Tensor:
    """sum_o weights[:, o] * S_o(p) over the k x k bilinear source patch around ``points`` (B, 2, h, w).

    ``weights`` is (B, k*k, h, w) in the original's row-major offset order; returns (B, C, h, w).
    All k*k samples of a patch share the bilinear weights of the fractional part of p, so the sum is
    one over the (k+1) x (k+1) integer pixels from floor(p) - k//2, each border clamped, weighted by
    the patch weights spread over their four bilinear corners.  Differentiable in all three inputs.
    """
    batch, channels, height, width = source.shape
    out_height, out_width = points.shape[2:]
    before = kernel_size // 2
    corner = points.detach().floor()
    fraction = (points - corner).to(weights.dtype)
    grid_weights = weights.reshape(batch, kernel_size, kernel_size, out_height, out_width)
    spread = 0
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        wy = fraction[:, 1] if dy else 1 - fraction[:, 1]
        wx = fraction[:, 0] if dx else 1 - fraction[:, 0]
        spread = spread + F.pad(grid_weights * (wy * wx).unsqueeze(1).unsqueeze(1),
                                (0, 0, 0, 0, dx, 1 - dx, dy, 1 - dy))
    steps = torch.arange(-before, kernel_size - before + 1, device=points.device).view(1, -1, 1, 1)
    rows_y = (corner[:, 1].long().unsqueeze(1) + steps).clamp(0, height - 1)  # (B, k+1, h, w)
    cols_x = (corner[:, 0].long().unsqueeze(1) + steps).clamp(0, width - 1)
    image_start = torch.arange(batch, device=points.device).view(batch, 1, 1, 1, 1) * (height * width)
    index = rows_y.unsqueeze(2) * width + cols_x.unsqueeze(1) + image_start  # (B, k+1, k+1, h, w)
    window = (kernel_size + 1) ** 2
    # One row per output pixel (b, y, x), its (k+1)^2 window entries in row-major order.
    columns = index.permute(0, 3, 4, 1, 2).reshape(-1, window)
    spread = spread.permute(0, 3, 4, 1, 2).reshape(-1, window)
    rows = source.permute(0, 2, 3, 1).reshape(-1, channels)
    out = _WindowRowSum.apply(spread, rows, columns)
    return out.view(batch, out_height, out_width, channels).permute(0, 3, 1, 2)


class LocalAttention(nn.Module):
    """Content-aware local attention (GFLA's ExtractorAttn); see the module docstring for the math."""

    def __init__(self, channels: int, kernel_size: int, hidden: int = 128) -> None:
        super().__init__()
        if channels < 1 or kernel_size < 1 or hidden < 1:
            raise ValueError(f"channels, kernel_size and hidden must be positive, got "
                             f"{channels}, {kernel_size}, {hidden}")
        self.channels = channels
        self.kernel_size = kernel_size
        self.hidden = hidden
        self.fully_connect_layer = nn.Sequential(
            nn.Conv2d(2 * channels, hidden, kernel_size, stride=kernel_size),
            nn.LeakyReLU(0.1),
            nn.Conv2d(hidden, kernel_size * kernel_size, 1),
        )

    def check_inputs(self, source: torch.Tensor, target: torch.Tensor, flow: torch.Tensor) -> None:
        """Raise a ValueError naming the offending tensor unless the shapes fit this block."""
        if source.dim() != 4 or source.shape[1] != self.channels:
            raise ValueError(f"source must be (B, {self.channels}, H, W), got {tuple(source.shape)}")
        if target.dim() != 4 or target.shape[:2] != source.shape[:2]:
            raise ValueError(f"target must be (B={source.shape[0]}, {self.channels}, h, w), "
                             f"got {tuple(target.shape)}")
        if tuple(flow.shape) != (source.shape[0], 2, *target.shape[2:]):
            raise ValueError(f"flow must be (B, 2, h, w) = {(source.shape[0], 2, *target.shape[2:])} "
                             f"like the target, got {tuple(flow.shape)}")

    def pair_weights(self) -> dict[str, torch.Tensor]:
        """W1's two input halves (hidden, C, k, k) by the patch they see, ``"target"`` and ``"source"``."""
        return dict(zip(PATCH_PAIR, self.fully_connect_layer[0].weight.split(self.channels, dim=1)))

    def attention_logits(self, source: torch.Tensor, target: torch.Tensor,
                         points: torch.Tensor) -> torch.Tensor:
        """The k*k logits (B, k*k, h, w) of the patch-pair MLP, without building the patches."""
        k = self.kernel_size
        before, after = k // 2, k - 1 - k // 2  # offsets run -before .. after
        first, activation, last = self.fully_connect_layer
        weight = self.pair_weights()
        # Projected source on the window-extended domain: index j holds the window at j - after.
        projected = F.conv2d(F.pad(source, (k - 1,) * 4, mode="replicate"), weight["source"])
        hidden = sample_bilinear(projected, points + after)
        hidden = hidden + F.conv2d(F.pad(target, (before, after, before, after), mode="replicate"),
                                   weight["target"], first.bias)
        return last(activation(hidden))

    def forward(self, source: torch.Tensor, target: torch.Tensor, flow: torch.Tensor,
                return_attention: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Attend source (B, C, H, W) around target (B, C, h, w) + flow (B, 2, h, w) -> (B, C, h, w).

        With ``return_attention`` also returns the softmax coefficients (B, k*k, h, w).
        """
        self.check_inputs(source, target, flow)
        points = pixel_grid(*flow.shape[2:], flow.device, flow.dtype) + flow
        attention = torch.softmax(self.attention_logits(source, target, points), dim=1)
        out = weighted_patch_sum(attention / self.kernel_size**2, source, points, self.kernel_size)
        return (out, attention) if return_attention else out


def tiled_local_attention(module: LocalAttention, source: torch.Tensor, target: torch.Tensor,
                          flow: torch.Tensor) -> torch.Tensor:
    """The original's layout, step by step: tiled patch blocks, k-stride conv, pixel shuffle, avg-pool."""
    module.check_inputs(source, target, flow)
    k = module.kernel_size
    blocks = {"source": extract_blocks(source, flow, k), "target": extract_blocks(target, None, k)}
    logits = module.fully_connect_layer(torch.cat([blocks[patch] for patch in PATCH_PAIR], 1))
    coefficients = F.pixel_shuffle(torch.softmax(logits, dim=1), k)
    return F.avg_pool2d(coefficients * blocks["source"], k)
