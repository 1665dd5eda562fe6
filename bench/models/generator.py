"""The method-agnostic generator backbone (GFLA's Local Neural Texture Renderer minus the warping).

One encoder per source image and one for the target structure (``layers`` EncoderBlocks each, no
encoder->decoder skips; for a code structure, the one-hot view of view synthesis, the original
ShapeNet generator's two ResBlockDecoders from the tiled code instead, :class:`CodeDecoder`), then
``layers`` decoder stages (``num_blocks - 1`` ResBlocks and one ResBlockDecoder each) and an Output
conv with tanh.  Before decoder stage ``i`` with
``layers - i`` in ``model.attn_layers`` the warper transports the sources' encoder features at that
scale to the decoder state, and :func:`bench.warp.blend` mixes them in.  The warper only changes
*how* features are transported, so every method is compared under the same backbone.

Shapes follow GFLA's ``PoseGenerator``, ``FaceGenerator`` and ``ShapeNetGenerator`` exactly (its
decoder stages' ResBlockDecoder has a hidden width equal to its input width), so a released
checkpoint loads with :func:`bench.models.official.load_generator`, whose docstring maps the keys.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.config import CODE_STRUCTURES, ModelConfig, TaskConfig
from bench.models.blocks import (
    EncoderBlock,
    Output,
    ResBlock,
    ResBlockDecoder,
    init_weights,
    level_channels,
    tile_code,
)
from bench.registry import WARPERS
from bench.warp import ScaleSpec, Warper, WarpInputs, WarpSetup, blend


class Encoder(nn.Module):
    """``layers`` EncoderBlocks; returns the features of levels 1..layers (finest first)."""

    def __init__(self, in_channels: int, ngf: int, img_f: int, layers: int, norm: str) -> None:
        super().__init__()
        self.layers = layers
        self.block0 = EncoderBlock(in_channels, level_channels(ngf, img_f, 1), norm)
        for i in range(layers - 1):
            block = EncoderBlock(level_channels(ngf, img_f, i + 1), level_channels(ngf, img_f, i + 2), norm)
            setattr(self, f"encoder{i}", block)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.block0(x)
        features = [out]
        for i in range(self.layers - 1):
            out = getattr(self, f"encoder{i}")(out)
            features.append(out)
        return features


class CodeDecoder(nn.Module):
    """The target branch for a code structure (GFLA's ``ShapeNetTargetNet`` front): the code tiled at
    a quarter of the bottleneck's size, then two ResBlockDecoders up to the bottleneck.

    An :class:`Encoder` would erase the code: its first InstanceNorm maps every spatially constant
    channel to its bias, so the output would not depend on the target view at all.  The
    ResBlockDecoders' transposed-conv shortcuts carry the code, as in the original.
    """

    def __init__(self, code_channels: int, ngf: int, img_f: int, layers: int, norm: str) -> None:
        super().__init__()
        self.layers = layers
        self.block0 = ResBlockDecoder(code_channels, ngf, norm=norm)
        self.block1 = ResBlockDecoder(ngf, level_channels(ngf, img_f, layers), norm=norm)

    def forward(self, structure: torch.Tensor) -> list[torch.Tensor]:
        """[the bottleneck feature], the last of what an :class:`Encoder` returns."""
        factor = 2 ** (self.layers + 2)
        code = tile_code(structure, structure.shape[-2] // factor, structure.shape[-1] // factor)
        return [self.block1(self.block0(code))]


def _model_config(cfg: TaskConfig | ModelConfig) -> ModelConfig:
    return cfg.model if isinstance(cfg, TaskConfig) else cfg


def make_warp_setup(
    cfg: TaskConfig,
    num_sources: int,
    structure_channels: int,
    options: dict | None = None,
    image_channels: int = 3,
) -> WarpSetup:
    """The WarpSetup the generator will call its warper with: one ScaleSpec per attention layer."""
    model = cfg.model
    height, width = cfg.dataset.resolution
    structure_is_code = cfg.dataset.structure in CODE_STRUCTURES
    if structure_is_code:  # CodeDecoder tiles the code at a quarter of the bottleneck, InstanceNorm needs 2x2
        factor = 2 ** (model.layers + 2)
        rule = f"2**(model.layers + 2), and at least twice that, for the code structure {cfg.dataset.structure!r}"
        too_small = min(height, width) < 2 * factor
    else:
        factor, rule, too_small = 2**model.layers, "2**model.layers", False
    if height % factor or width % factor or too_small:
        raise ValueError(f"dataset.resolution {height}x{width} must be a multiple of {rule} ({factor})")
    scales = []
    for layer in sorted(set(model.attn_layers), reverse=True):
        if not 1 <= layer <= model.layers:
            raise ValueError(f"model.attn_layers: layer {layer} is outside 1..model.layers ({model.layers})")
        if layer not in model.kernel_sizes:
            raise ValueError(
                f"model.kernel_sizes has no entry for attention layer {layer} "
                f"(has {sorted(model.kernel_sizes)}); add e.g. kernel_sizes.{layer}=3"
            )
        scales.append(
            ScaleSpec(
                layer=layer,
                channels=level_channels(model.ngf, model.img_f, layer),
                kernel_size=model.kernel_sizes[layer],
                height=height // 2**layer,
                width=width // 2**layer,
            )
        )
    return WarpSetup(
        scales=tuple(scales),
        num_sources=num_sources,
        image_channels=image_channels,
        structure_channels=structure_channels,
        image_size=(height, width),
        model=model,
        options=dict(options or {}),
        structure_is_code=structure_is_code,
    )


class Generator(nn.Module):
    """Shared encoder/decoder backbone with a pluggable warper; ``forward`` -> (image, plan)."""

    def __init__(
        self,
        cfg: TaskConfig | ModelConfig,
        warper: Warper,
        num_sources: int,
        structure_channels: int,
        image_channels: int = 3,
    ) -> None:
        super().__init__()
        model = _model_config(cfg)
        self.layers = model.layers
        self.num_sources = num_sources
        ngf, img_f, norm = model.ngf, model.img_f, model.norm
        self.sources = nn.ModuleList(
            Encoder(image_channels, ngf, img_f, model.layers, norm) for _ in range(num_sources)
        )
        if warper.setup.structure_is_code:
            self.target_encoder: nn.Module = CodeDecoder(structure_channels, ngf, img_f, model.layers, norm)
        else:
            self.target_encoder = Encoder(structure_channels, ngf, img_f, model.layers, norm)
        for i in range(model.layers):
            c_in = level_channels(ngf, img_f, model.layers - i)
            c_out = level_channels(ngf, img_f, model.layers - i - 1)
            stage = [ResBlock(c_in, c_in, c_in, norm) for _ in range(model.num_blocks - 1)]
            stage.append(ResBlockDecoder(c_in, c_out, norm=norm))  # hidden width c_in, as the original
            setattr(self, f"decoder{i}", nn.Sequential(*stage))
        self.outconv = Output(ngf, image_channels)
        init_weights(self, model.init_gain)  # the backbone only: the warper initialises itself

        self.stage_scale: dict[int, int] = {}
        for index, spec in enumerate(warper.setup.scales):
            expected = level_channels(ngf, img_f, spec.layer)
            if spec.channels != expected or not 1 <= spec.layer <= model.layers:
                raise ValueError(
                    f"warper scale {index} (layer {spec.layer}, {spec.channels} channels) does not match the "
                    f"backbone (layers {model.layers}, {expected} channels there); use make_warp_setup"
                )
            self.stage_scale[model.layers - spec.layer] = index
        if warper.setup.num_sources != num_sources:
            raise ValueError(
                f"warper built for {warper.setup.num_sources} sources, generator for {num_sources}"
            )
        self.warper = warper

    def forward(self, inputs: WarpInputs) -> tuple[torch.Tensor, dict]:
        """Generate the target image in [-1, 1]; also return the warper's plan (flows/masks)."""
        plan = self.warper.plan(inputs)
        source_features = [encoder(image) for encoder, image in zip(self.sources, inputs.source_images)]
        out = self.target_encoder(inputs.target_structure)[-1]
        for i in range(self.layers):
            scale = self.stage_scale.get(i)
            if scale is not None:
                level = self.layers - i
                warped = self.warper.warp(scale, [f[level - 1] for f in source_features], out, plan)
                out = blend(out, warped)
            out = getattr(self, f"decoder{i}")(out)
        return self.outconv(out), plan


def build_generator(
    cfg: TaskConfig, warper_name: str, num_sources: int, structure_channels: int, image_channels: int = 3
) -> Generator:
    """Look ``warper_name`` up in WARPERS, size it from the config and wrap it in the backbone.

    The warper is built on a forked torch RNG (its own stream, drawn from the current one), so the
    backbone and everything built after it start from the same random weights whatever the warper:
    under one seed, methods differ in the warper only, and their comparison is paired.
    """
    warper_cls = WARPERS.get(warper_name)
    options = cfg.model.methods.get(warper_name, {})
    setup = make_warp_setup(cfg, num_sources, structure_channels, options, image_channels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(2**62, (1,))))
        warper = warper_cls(setup)
    return Generator(cfg, warper, num_sources, structure_channels, image_channels)
