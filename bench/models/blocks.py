"""GFLA's building blocks: pre-activation conv blocks, norm/activation factories and weight init.

Every block is *pre-activation* (norm -> LeakyReLU(0.1) -> conv), so the first block of an encoder
normalises the raw image or structure maps, as the original does.  With InstanceNorm that makes the
generator blind to the source's colours up to a per-channel positive affine map (scale and offset of
each of R, G, B): the output is unchanged when they change (``tests/test_models.py``), so absolute
colour can only be inferred from what the data makes predictable (a constant backdrop, skin tones).
``model.norm: batch`` normalises with batch statistics instead and keeps per-image colour visible.

Attribute names inside the blocks (``model``, ``shortcut``) follow the original's, so that its
released checkpoints map onto them (:mod:`bench.models.official`).
"""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("instance", "batch", "none")
LEAKY_SLOPE = 0.1


def make_norm(norm: str, channels: int) -> nn.Module:
    """The normalisation layer named by ``ModelConfig.norm`` (GFLA: affine InstanceNorm2d)."""
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"model.norm: expected one of {', '.join(NORMS)}, got {norm!r}")


def make_activation() -> nn.Module:
    """GFLA's non-linearity everywhere: LeakyReLU with slope 0.1."""
    return nn.LeakyReLU(LEAKY_SLOPE)


def conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    use_spect: bool = False,
    transpose: bool = False,
    output_padding: int = 0,
) -> nn.Module:
    """A (transposed) convolution with bias, optionally wrapped in spectral normalisation."""
    if transpose:
        layer: nn.Module = nn.ConvTranspose2d(
            in_channels, out_channels, kernel_size, stride, padding, output_padding=output_padding
        )
    else:
        layer = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)
    return nn.utils.spectral_norm(layer) if use_spect else layer


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """Orthogonal init with ``gain`` for every Conv/Linear weight and zero biases (GFLA's default).

    Spectral-normed layers keep their raw weight in ``weight_orig``; that is what gets initialised
    (the original writes into the same storage).  Norm layers keep PyTorch's init (weight 1, bias 0).
    """
    for layer in module.modules():
        if not isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            continue
        weight = layer.weight_orig if hasattr(layer, "weight_orig") else layer.weight
        with torch.no_grad():
            nn.init.orthogonal_(weight, gain=gain)
            if layer.bias is not None:
                layer.bias.zero_()


class EncoderBlock(nn.Module):
    """norm, act, conv4x4 s2 (in->out), norm, act, conv3x3 (out->out): halves the resolution."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "instance", use_spect: bool = False):
        super().__init__()
        self.model = nn.Sequential(
            make_norm(norm, in_channels),
            make_activation(),
            conv(in_channels, out_channels, 4, 2, 1, use_spect),
            make_norm(norm, out_channels),
            make_activation(),
            conv(out_channels, out_channels, 3, 1, 1, use_spect),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ResBlock(nn.Module):
    """Pre-activation residual block at constant resolution; 1x1 conv shortcut when widths differ."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        hidden_channels: int | None = None,
        norm: str = "instance",
        use_spect: bool = False,
    ):
        super().__init__()
        out_channels = out_channels or in_channels
        hidden_channels = hidden_channels or in_channels
        self.model = nn.Sequential(
            make_norm(norm, in_channels),
            make_activation(),
            conv(in_channels, hidden_channels, 3, 1, 1, use_spect),
            make_norm(norm, hidden_channels),
            make_activation(),
            conv(hidden_channels, out_channels, 3, 1, 1, use_spect),
        )
        self.shortcut = (
            nn.Identity()
            if in_channels == out_channels
            else conv(in_channels, out_channels, 1, use_spect=use_spect)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + self.shortcut(x)


class ResBlockDecoder(nn.Module):
    """Pre-activation residual up-block: doubles the resolution with 3x3 transposed convs.

    ``hidden_channels`` defaults to ``in_channels`` as in the original (the generator's decoder
    stages use that default; the flow estimator passes ``out_channels``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int | None = None,
        norm: str = "instance",
        use_spect: bool = False,
    ):
        super().__init__()
        hidden_channels = hidden_channels or in_channels
        self.model = nn.Sequential(
            make_norm(norm, in_channels),
            make_activation(),
            conv(in_channels, hidden_channels, 3, 1, 1, use_spect),
            make_norm(norm, hidden_channels),
            make_activation(),
            conv(hidden_channels, out_channels, 3, 2, 1, use_spect, transpose=True, output_padding=1),
        )
        self.shortcut = conv(in_channels, out_channels, 3, 2, 1, use_spect, transpose=True, output_padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + self.shortcut(x)


class Jump(nn.Module):
    """Skip connection of the flow estimator: act, reflection pad, conv3x3 (no norm)."""

    def __init__(self, in_channels: int, out_channels: int, use_spect: bool = False):
        super().__init__()
        self.model = nn.Sequential(
            make_activation(), nn.ReflectionPad2d(1), conv(in_channels, out_channels, 3, use_spect=use_spect)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Output(nn.Module):
    """Image head: act, reflection pad, conv3x3, tanh -> values in [-1, 1]."""

    def __init__(self, in_channels: int, out_channels: int = 3, use_spect: bool = False):
        super().__init__()
        self.model = nn.Sequential(
            make_activation(),
            nn.ReflectionPad2d(1),
            conv(in_channels, out_channels, 3, use_spect=use_spect),
            nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ResBlockEncoder(nn.Module):
    """Discriminator down-block (no norm): act, conv3x3, act, conv4x4 s2; shortcut avg-pool + 1x1 conv.

    The leading activation applies to the first block too, raw images included, as in the original.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int | None = None,
        use_spect: bool = True,
    ):
        super().__init__()
        hidden_channels = hidden_channels or in_channels
        self.model = nn.Sequential(
            make_activation(),
            conv(in_channels, hidden_channels, 3, 1, 1, use_spect),
            make_activation(),
            conv(hidden_channels, out_channels, 4, 2, 1, use_spect),
        )
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2), conv(in_channels, out_channels, 1, use_spect=use_spect)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + self.shortcut(x)


def tile_code(structure: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A code structure (B, S, H, W), constant over the map, as its (B, S, 1, 1) code tiled to
    ``height`` x ``width`` (GFLA's ShapeNet networks ``repeat`` the code at their own sizes)."""
    return structure.mean(dim=(2, 3), keepdim=True).expand(-1, -1, height, width)


def level_channels(base: int, cap: int, level: int) -> int:
    """Width of encoder level ``level`` (1 = first down-block): base * 2**(level-1), capped at ``cap``.

    Level 0 (full resolution) has ``base`` channels, as the last decoder stage of the original.
    """
    if level <= 0:
        return base
    return base * min(2 ** (level - 1), max(cap // base, 1))
