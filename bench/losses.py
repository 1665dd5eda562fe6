"""GFLA's training losses: sampling correctness, local affine regularisation, L1, VGG content/style, LSGAN.

Conventions (gfla-facts.md §0, §2): images in [-1, 1]; VGG19 fed without ImageNet normalisation;
flows are backward pixel offsets at their own scale, channel 0 = x; flow lists are over scales
(coarse -> fine) of lists over sources.  Layer names are those of the trunk (``bench.models.vgg``):
content and correctness use relu<k>_1, which VGG19 and VGG16 both have; the style layers are each
block's last conv in GFLA's VGG19 choice, so on VGG16 (three convs in blocks 3 and 4) relu3_3 / relu4_3
stand for relu3_4 / relu4_4.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from bench.ops import gaussian_resample, pixel_grid

CONTENT_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
STYLE_LAYERS = ("relu2_2", "relu3_4", "relu4_4", "relu5_2")  # GFLA's, on VGG19
STYLE_LAYERS_OF_NETWORK = {"vgg19": STYLE_LAYERS, "vgg16": ("relu2_2", "relu3_3", "relu4_3", "relu5_2")}
# The original's lookup by layer index L (a flow at 1/2**L uses relu(L+1)_1, which has that size);
# it lists L = 0..3, L = 4 extends the same rule.
CORRECTNESS_LAYERS = {0: "relu1_1", 1: "relu2_1", 2: "relu3_1", 3: "relu4_1", 4: "relu5_1"}
RESAMPLE_KERNEL, RESAMPLE_SIGMA = 4, 2.0  # Resample2d(4, sigma=2) of the original
EPS = 1e-8


def correctness_layer(layer: int) -> str:
    """The VGG19 layer the correctness loss compares at GFLA layer index ``layer``."""
    if layer not in CORRECTNESS_LAYERS:
        raise ValueError(
            f"no VGG layer for the correctness loss at attention layer {layer}; "
            f"supported layers: {sorted(CORRECTNESS_LAYERS)}"
        )
    return CORRECTNESS_LAYERS[layer]


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Flow resampled (nearest, as the original) to ``size``, its pixel offsets rescaled to that size.

    The original does not rescale the magnitudes; the sizes agree in every standard setup, where
    this is the identity.
    """
    height, width = flow.shape[2:]
    if (height, width) == tuple(size):
        return flow
    scale = flow.new_tensor([size[1] / width, size[0] / height]).view(1, 2, 1, 1)
    return F.interpolate(flow, size=size, mode="nearest") * scale


def max_cosine(source: torch.Tensor, target: torch.Tensor, chunk_size: int = 1024) -> torch.Tensor:
    """For each target position, the max cosine to any source position: (B, h*w).

    The N_target x N_source similarity is formed ``chunk_size`` target positions at a time, so 64x64
    maps need B * 4096 * chunk_size floats instead of B * 4096**2.
    """
    source_n = source.flatten(2)
    target_n = target.flatten(2)
    source_n = source_n / (source_n.norm(dim=1, keepdim=True) + EPS)
    target_n = target_n / (target_n.norm(dim=1, keepdim=True) + EPS)
    maxima = [
        torch.bmm(target_n[:, :, start : start + chunk_size].transpose(1, 2), source_n).amax(dim=2)
        for start in range(0, target_n.shape[2], chunk_size)
    ]
    return torch.cat(maxima, dim=1)


def sampling_correctness(
    source_feature: torch.Tensor, target_feature: torch.Tensor, flow: torch.Tensor, chunk_size: int = 1024
) -> torch.Tensor:
    """mean_l exp(-mu_l / mu_max_l) - e^-1 for one flow and one VGG layer (minimum 0 at mu = mu_max).

    mu_l: cosine between the Gaussian-resampled source feature and the target feature at l;
    mu_max_l: the best cosine any source position reaches (no gradient: both are real-image features).
    """
    flow = resize_flow(flow, tuple(target_feature.shape[2:]))
    warped = gaussian_resample(source_feature, flow, RESAMPLE_KERNEL, RESAMPLE_SIGMA)
    mu = F.cosine_similarity(warped, target_feature, dim=1, eps=EPS).flatten(1)
    with torch.no_grad():
        mu_max = max_cosine(source_feature, target_feature, chunk_size)
    return torch.exp(-mu / (mu_max + EPS)).mean() - math.exp(-1)


def correctness_loss(
    source_features: Sequence[dict[str, torch.Tensor]],
    target_features: dict[str, torch.Tensor],
    flows: Sequence[Sequence[torch.Tensor]],
    layers: Sequence[int],
) -> torch.Tensor:
    """Sampling correctness summed over scales and sources.

    ``source_features[s]`` and ``target_features`` map VGG layer names to features of the real
    source ``s`` and target images; ``layers[i]`` is the GFLA layer index of scale ``i``.
    """
    total = 0
    for layer, scale_flows in zip(layers, flows, strict=True):
        name = correctness_layer(layer)
        for features, flow in zip(source_features, scale_flows, strict=True):
            total = total + sampling_correctness(features[name], target_features[name], flow)
    return total


def affine_projection_residual(
    kernel_size: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """R = I - A (A^T A)^-1 A^T for A = [u, v, 1] over the k x k patch (row-major): R g = fit residual."""
    offsets = torch.arange(kernel_size, dtype=torch.float64)
    v, u = torch.meshgrid(offsets, offsets, indexing="ij")
    design = torch.stack((u.flatten(), v.flatten(), torch.ones(kernel_size**2, dtype=torch.float64)), dim=1)
    hat = design @ torch.linalg.solve(design.T @ design, design.T)
    return (torch.eye(kernel_size**2, dtype=torch.float64) - hat).to(device=device, dtype=dtype)


def affine_regularization(flow: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Local affine regulariser of one flow: mean over valid k x k windows of the squared residual
    of the least-squares affine fit of the absolute sampling coordinates, summed over x and y.

    Closed form: unfold the coordinates into windows and project them with the fixed residual
    matrix R (the original's K); ||R g||^2 is the squared fit residual of window g.
    """
    batch, channels, height, width = flow.shape
    if channels != 2:
        raise ValueError(f"flow must be (B, 2, H, W), got {tuple(flow.shape)}")
    if height < kernel_size or width < kernel_size:
        raise ValueError(
            f"flow of size {height}x{width} is smaller than the regulariser window {kernel_size}"
        )
    coords = flow + pixel_grid(height, width, flow.device, flow.dtype)
    windows = F.unfold(coords.reshape(batch * 2, 1, height, width), kernel_size)  # (2B, k*k, P)
    projection = affine_projection_residual(kernel_size, flow.dtype, flow.device)
    residual = torch.einsum("ij,njp->nip", projection, windows)
    per_window = residual.pow(2).sum(dim=1).view(batch, 2, -1)
    return per_window.mean(dim=(0, 2)).sum()


def regularization_loss(flows: Sequence[Sequence[torch.Tensor]], kernel_sizes: Sequence[int]) -> torch.Tensor:
    """Affine regulariser summed over scales (window = that scale's kernel size) and sources."""
    total = 0
    for kernel_size, scale_flows in zip(kernel_sizes, flows, strict=True):
        for flow in scale_flows:
            total = total + affine_regularization(flow, kernel_size)
    return total


def l1_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean absolute error on [-1, 1] images."""
    return F.l1_loss(fake, real)


def gram(feature: torch.Tensor) -> torch.Tensor:
    """Gram matrix normalised by C * H * W, as the original."""
    batch, channels, height, width = feature.shape
    flat = feature.reshape(batch, channels, height * width)
    return torch.bmm(flat, flat.transpose(1, 2)) / (channels * height * width)


def content_loss(fake: dict[str, torch.Tensor], real: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over relu1_1..relu5_1 of the L1 distance between VGG features (weight 1 each)."""
    return sum(F.l1_loss(fake[name], real[name]) for name in CONTENT_LAYERS)


def style_layers(network: str) -> tuple[str, ...]:
    """The style layers of trunk ``network`` (vgg19, vgg16)."""
    if network not in STYLE_LAYERS_OF_NETWORK:
        raise ValueError(f"no style layers for network {network!r}; known: {', '.join(STYLE_LAYERS_OF_NETWORK)}")
    return STYLE_LAYERS_OF_NETWORK[network]


def style_loss(
    fake: dict[str, torch.Tensor], real: dict[str, torch.Tensor], layers: Sequence[str] = STYLE_LAYERS
) -> torch.Tensor:
    """Sum over ``layers`` (VGG19: relu2_2, relu3_4, relu4_4, relu5_2) of the L1 distance between Gram matrices."""
    return sum(F.l1_loss(gram(fake[name]), gram(real[name])) for name in layers)


def lsgan_discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """0.5 * (MSE(D(real), 1) + MSE(D(fake), 0)) on the raw patch maps."""
    real = F.mse_loss(real_scores, torch.ones_like(real_scores))
    fake = F.mse_loss(fake_scores, torch.zeros_like(fake_scores))
    return 0.5 * (real + fake)


def lsgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """MSE(D(fake), 1)."""
    return F.mse_loss(fake_scores, torch.ones_like(fake_scores))
