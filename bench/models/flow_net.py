"""GFLA's global flow-field estimator F (the original's PoseFlowNet / FaceFlowNet).

An encoder of ``flow_layers`` EncoderBlocks over the concatenated inputs, a decoder of
ResBlockDecoders back up to the finest warping scale with Jump skips *added* from the encoder, and,
at each warping scale, a 3x3 conv flow head (2 channels per source, no activation) and a 3x3 conv +
sigmoid occlusion-mask head (1 channel per source).  With GFLA's gain-0.02 init the heads start
near zero, so initial flows are ~0 px and initial masks ~0.5.

Input channel order: one source -> (source image, source structure, target structure), exactly the
original's 39-channel order; two sources -> (target structure, previous image, previous structure,
reference image, reference structure), the face network's order.  A code structure (view synthesis,
``WarpSetup.structure_is_code``) is taken as the original's ``ShapeNetFlowNet`` takes it: the encoder
reads the source image alone, and the code difference source - target, tiled, joins at the
bottleneck through a ResBlock (``cat``, its 1x1-conv shortcut carrying the code); concatenated at the
input, the constant code maps would be erased by the first InstanceNorm.  Even so the code reaches
the flows weakly, in the original as here: what ``cat`` adds is a per-channel constant, which every
later block's InstanceNorm removes from its main path, so only the blocks' linear shortcuts (and the
patterns their transposed convs make of a constant) carry it on.  Trained at ``quick`` on
``view_synthetic_chair``, the flows of one source image changed by under 0.002 px across four
target views.

Module names (``block0``, ``encoder{i}``, ``decoder{i}``, ``jump{i}``, ``output{i}``, ``mask{i}``,
``cat``) follow the original so its ``flow_net.*`` weights map one to one.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.models.blocks import EncoderBlock, Jump, ResBlock, ResBlockDecoder, init_weights, level_channels, tile_code
from bench.warp import WarpInputs, WarpSetup


class FlowEstimator(nn.Module):
    """Predicts per-scale, per-source backward flows (pixels of that scale) and occlusion masks."""

    def __init__(self, setup: WarpSetup) -> None:
        super().__init__()
        model = setup.model
        self.num_sources = setup.num_sources
        self.encoder_layers = model.flow_layers
        layers = [spec.layer for spec in setup.scales]
        if not layers:
            raise ValueError("FlowEstimator needs at least one warping scale (model.attn_layers is empty)")
        if layers != sorted(set(layers), reverse=True):
            raise ValueError(
                f"setup.scales must be ordered coarse -> fine without repeats, got layers {layers}"
            )
        if max(layers) > self.encoder_layers or min(layers) < 1:
            raise ValueError(
                f"model.attn_layers {sorted(layers)} must lie in 1..model.flow_layers ({self.encoder_layers})"
            )
        height, width = setup.image_size
        if height % 2**self.encoder_layers or width % 2**self.encoder_layers:
            raise ValueError(
                f"dataset.resolution {height}x{width} must be divisible by 2**model.flow_layers "
                f"({2**self.encoder_layers}) for the flow estimator"
            )
        self.head_layers = set(layers)
        self.decoder_layers = self.encoder_layers - min(layers)
        ngf, cap, norm = model.flow_ngf, model.flow_img_f, model.norm

        self.structure_is_code = setup.structure_is_code
        if self.structure_is_code:
            if self.num_sources != 1:
                raise ValueError(f"a code structure takes one source, got {self.num_sources}")
            in_channels = setup.image_channels
        else:
            in_channels = setup.num_sources * (setup.image_channels + setup.structure_channels)
            in_channels += setup.structure_channels
        self.block0 = EncoderBlock(in_channels, level_channels(ngf, cap, 1), norm)
        for i in range(self.encoder_layers - 1):
            block = EncoderBlock(level_channels(ngf, cap, i + 1), level_channels(ngf, cap, i + 2), norm)
            setattr(self, f"encoder{i}", block)
        if self.structure_is_code:
            deepest = level_channels(ngf, cap, self.encoder_layers)
            widened = deepest + setup.structure_channels
            self.cat = ResBlock(widened, deepest, widened, norm)
        for i in range(self.decoder_layers):
            level = self.encoder_layers - i - 1  # resolution level this decoder stage outputs
            c_in, c_out = level_channels(ngf, cap, level + 1), level_channels(ngf, cap, level)
            setattr(self, f"decoder{i}", ResBlockDecoder(c_in, c_out, c_out, norm))
            setattr(self, f"jump{i}", Jump(c_out, c_out))
            if level in self.head_layers:
                setattr(self, f"output{i}", nn.Conv2d(c_out, 2 * self.num_sources, 3, 1, 1))
                setattr(
                    self, f"mask{i}", nn.Sequential(nn.Conv2d(c_out, self.num_sources, 3, 1, 1), nn.Sigmoid())
                )
        init_weights(self, model.init_gain)

    def assemble(self, inputs: WarpInputs) -> torch.Tensor:
        """Concatenate the inputs in the original's channel order (see the module docstring)."""
        if len(inputs.source_images) != self.num_sources or len(inputs.source_structures) != self.num_sources:
            raise ValueError(
                f"FlowEstimator was built for {self.num_sources} source(s), got {len(inputs.source_images)} "
                f"images and {len(inputs.source_structures)} structures"
            )
        if self.structure_is_code:
            return inputs.source_images[0]
        if self.num_sources == 1:
            parts = [inputs.source_images[0], inputs.source_structures[0], inputs.target_structure]
        else:
            parts = [inputs.target_structure]
            for image, structure in zip(inputs.source_images, inputs.source_structures):
                parts += [image, structure]
        return torch.cat(parts, dim=1)

    def forward(self, inputs: WarpInputs) -> tuple[list[list[torch.Tensor]], list[list[torch.Tensor]]]:
        """(flows, masks): lists over scales (coarse -> fine) of lists over sources."""
        out = self.block0(self.assemble(inputs))
        encoded = [out]
        for i in range(self.encoder_layers - 1):
            out = getattr(self, f"encoder{i}")(out)
            encoded.append(out)
        if self.structure_is_code:
            difference = inputs.source_structures[0] - inputs.target_structure
            out = self.cat(torch.cat([out, tile_code(difference, *out.shape[-2:])], dim=1))
        flows: list[list[torch.Tensor]] = []
        masks: list[list[torch.Tensor]] = []
        for i in range(self.decoder_layers):
            out = getattr(self, f"decoder{i}")(out)
            out = out + getattr(self, f"jump{i}")(encoded[self.encoder_layers - i - 2])
            if self.encoder_layers - i - 1 in self.head_layers:
                flow = getattr(self, f"output{i}")(out)
                mask = getattr(self, f"mask{i}")(out)
                flows.append(list(flow.split(2, dim=1)))
                masks.append(list(mask.split(1, dim=1)))
        return flows, masks
