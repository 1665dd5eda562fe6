"""GFLA's ResDiscriminator: a spectral-normed residual patch discriminator for the LSGAN loss.

``d_layers`` down-blocks (each starting with LeakyReLU, the first on the raw image too), widths
ndf * 2**i capped at ``d_img_f``, then LeakyReLU and a spectral-normed 1x1 conv to a 1-channel
patch map (no sigmoid: the LSGAN loss is an MSE on raw scores).  No normalisation layers.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.config import ModelConfig
from bench.models.blocks import ResBlockEncoder, conv, init_weights, level_channels, make_activation


class ResDiscriminator(nn.Module):
    """Patch discriminator: (B, C, H, W) -> (B, 1, H / 2**d_layers, W / 2**d_layers)."""

    def __init__(self, model: ModelConfig, in_channels: int = 3, use_spect: bool = True) -> None:
        super().__init__()
        ndf, cap = model.ndf, model.d_img_f
        self.layers = model.d_layers
        self.block0 = ResBlockEncoder(in_channels, ndf, ndf, use_spect)
        for i in range(1, model.d_layers):
            c_in, c_out = level_channels(ndf, cap, i), level_channels(ndf, cap, i + 1)
            setattr(self, f"encoder{i - 1}", ResBlockEncoder(c_in, c_out, c_in, use_spect))
        self.head = nn.Sequential(
            make_activation(), conv(level_channels(ndf, cap, model.d_layers), 1, 1, use_spect=use_spect)
        )
        init_weights(self, model.init_gain)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.block0(image)
        for i in range(self.layers - 1):
            out = getattr(self, f"encoder{i}")(out)
        return self.head(out)
