"""Released GFLA generators (``<name>_net_G.pth``) loaded into our backbone with the gfla warper.

Three layouts of the original: ``PoseGenerator`` (DeepFashion, Market; one source),
``FaceGenerator`` (FaceForensics; two sources, the previous frame and the reference frame, each with
its own encoder and attention blocks, one FaceFlowNet with 4-channel flow and 2-channel mask heads)
and ``ShapeNetGenerator`` (car, chair; the view code decoded by ``target.block0/1``, its flow net
joining the code difference at the bottleneck through ``cat``).  Their state dicts differ from ours
in prefixes and in a few places inside the blocks; the weights map one to one, shapes unchanged:

    source.*                  (pose, view)  -> sources.0.*
    source_previous.*         (face)        -> sources.0.*
    source_reference.*        (face)        -> sources.1.*
    target.{block<j>,encoder<i>}.*          -> target_encoder.{block<j>,encoder<i>}.*
    target.decoder<i>.0.model.<j>.*         -> decoder<i>.<j>.*           (its ResBlocks wrapper)
    target.decoder<i>.<last>.*              -> decoder<i>.<num_blocks - 1>.*   (the ResBlockDecoder)
    target.attn<i>.*          (pose, view)  -> warper.attention.<scale>.0.*    (scale: the index of
                                               layer ``layers - i`` in the coarse-to-fine scale list;
                                               the first layer's input halves keep their roles,
                                               target patch then source patch: ``PATCH_PAIR`` of
                                               :mod:`bench.ops.local_attention`)
    target.attn_p<i>.*        (face)        -> warper.attention.<scale>.0.*
    target.attn_r<i>.*        (face)        -> warper.attention.<scale>.1.*
    target.outconv.model.2.*                -> outconv.model.2.*
    flow_net.cat.model.0.*    (view)        -> warper.flow_estimator.cat.*     (a ResBlocks wrapper)
    flow_net.*                              -> warper.flow_estimator.*  (FaceFlowNet's heads hold
                                               (previous, reference) in channel order, the order
                                               of our sources)
    ...shortcut.0.*  (ResBlock(Decoder))    -> ...shortcut.*
    ...{jump<i>,outconv}.conv1.*            dropped: the same tensor as ``model.2`` (the original
                                               registers that conv twice)

A ``module.`` prefix (a checkpoint saved from ``DataParallel``) is stripped first.  The model
config must match the checkpoint's (DeepFashion: the ``paper`` profile of ``pose_deepfashion``;
Market: ``pose_market``; face: ``face_faceforensics``; ShapeNet: ``view_shapenet_car`` or
``view_shapenet_chair``); any key left over or missing, or any shape that differs, is an error
naming the key.  Written from the original's module definitions, not yet tried on a released file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from bench.config import ModelConfig
from bench.models.generator import Generator

ALIAS = re.compile(r"(.*\.(?:jump\d+|outconv))\.conv1\.(weight|bias)")


class OfficialCheckpointError(ValueError):
    """A state dict that is not a GFLA generator of the configured shape."""


LAYOUTS = ("PoseGenerator", "FaceGenerator", "ShapeNetGenerator")


def generator_layout(generator: Generator) -> str:
    """The original's generator class that ``generator`` (ours, gfla warper) corresponds to."""
    if generator.warper.setup.structure_is_code:
        return "ShapeNetGenerator"
    return "FaceGenerator" if generator.num_sources == 2 else "PoseGenerator"


Rule = tuple[re.Pattern, Callable[[re.Match], str]]


def _rules(model: ModelConfig, layout: str) -> list[Rule]:
    """(pattern, our name) for the original's keys under ``model`` (aliases are handled apart)."""
    scales = sorted(set(model.attn_layers), reverse=True)
    last = model.num_blocks - 1

    def attention(source: int) -> Callable[[re.Match], str]:
        return lambda m: f"warper.attention.{_scale(m, model, scales)}.{source}.{m[2]}"

    if layout == "FaceGenerator":
        rules: list[tuple[str, Callable[[re.Match], str]]] = [
            (r"source_previous\.(.*)", lambda m: f"sources.0.{m[1]}"),
            (r"source_reference\.(.*)", lambda m: f"sources.1.{m[1]}"),
            (r"target\.attn_p(\d+)\.(.*)", attention(0)),
            (r"target\.attn_r(\d+)\.(.*)", attention(1)),
        ]
    else:
        rules = [
            (r"source\.(.*)", lambda m: f"sources.0.{m[1]}"),
            (r"target\.attn(\d+)\.(.*)", attention(0)),
        ]
    if layout == "ShapeNetGenerator":
        rules.append((r"flow_net\.cat\.model\.0\.(.*)", lambda m: f"warper.flow_estimator.cat.{m[1]}"))
    rules += [
        (r"target\.((?:block\d+|encoder\d+)\..*)", lambda m: f"target_encoder.{m[1]}"),
        (r"target\.outconv\.(.*)", lambda m: f"outconv.{m[1]}"),
        (r"flow_net\.(.*)", lambda m: f"warper.flow_estimator.{m[1]}"),
    ]
    if last:  # decoder<i> = Sequential(ResBlocks(Sequential(ResBlock...)), ResBlockDecoder)
        rules += [
            (r"target\.decoder(\d+)\.0\.model\.(\d+)\.(.*)", lambda m: f"decoder{m[1]}.{m[2]}.{m[3]}"),
            (r"target\.decoder(\d+)\.1\.(.*)", lambda m: f"decoder{m[1]}.{last}.{m[2]}"),
        ]
    else:  # decoder<i> = Sequential(ResBlockDecoder)
        rules.append((r"target\.decoder(\d+)\.0\.(.*)", lambda m: f"decoder{m[1]}.0.{m[2]}"))
    return [(re.compile(pattern), build) for pattern, build in rules]


def _rename(key: str, rules: list[Rule], layout: str) -> str:
    """Our name for the original's ``key`` (an alias already removed)."""
    for pattern, build in rules:
        match = pattern.fullmatch(key)
        if match:
            return build(match).replace(".shortcut.0.", ".shortcut.")
    raise OfficialCheckpointError(f"{key}: not a key of GFLA's {layout}")


def _scale(match: re.Match, model: ModelConfig, scales: list[int]) -> int:
    """The index of the attention block's layer in the coarse-to-fine scale list."""
    layer = model.layers - int(match[1])
    if layer not in scales:
        raise OfficialCheckpointError(
            f"{match[0]}: attention at layer {layer}, but model.attn_layers is {model.attn_layers}"
        )
    return scales.index(layer)


def convert_generator(
    state: Mapping[str, torch.Tensor], model: ModelConfig, layout: str = "PoseGenerator"
) -> dict[str, torch.Tensor]:
    """The state dict of the original's generator class ``layout`` (one of :data:`LAYOUTS`) under
    our names (see the module docstring)."""
    if layout not in LAYOUTS:
        raise OfficialCheckpointError(f"unknown GFLA generator {layout!r}; released ones: {', '.join(LAYOUTS)}")
    state = {key.removeprefix("module."): value for key, value in state.items()}
    rules = _rules(model, layout)
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        alias = ALIAS.fullmatch(key)
        if alias:
            twin = f"{alias[1]}.model.2.{alias[2]}"
            if twin not in state or not torch.equal(state[twin], value):
                raise OfficialCheckpointError(f"{key}: expected the same tensor as {twin}")
            continue
        converted[_rename(key, rules, layout)] = value
    return converted


def load_generator(generator: Generator, path: str | Path, model: ModelConfig) -> None:
    """Load a released ``*_net_G.pth`` into ``generator`` (ours, gfla warper; the layout follows
    :func:`generator_layout`).  Strict: a missing or unexpected key or a shape that differs fails,
    naming the file."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        generator.load_state_dict(convert_generator(state, model, generator_layout(generator)))
    except (OSError, RuntimeError, OfficialCheckpointError) as exc:
        raise OfficialCheckpointError(f"{path}: {exc}") from exc
