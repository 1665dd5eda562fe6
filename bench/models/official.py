"""Released GFLA pose generators (``<name>_net_G.pth``) loaded into our backbone with the gfla warper.

The original ``PoseGenerator`` state dict differs from ours in prefixes and in three places inside
the blocks; the weights themselves map one to one, shapes unchanged:

    source.{block0,encoder<i>}.*            -> sources.0.{block0,encoder<i>}.*
    target.{block0,encoder<i>}.*            -> target_encoder.{block0,encoder<i>}.*
    target.decoder<i>.0.model.<j>.*         -> decoder<i>.<j>.*           (its ResBlocks wrapper)
    target.decoder<i>.<last>.*              -> decoder<i>.<num_blocks - 1>.*   (the ResBlockDecoder)
    target.attn<i>.*                        -> warper.attention.<scale>.0.*    (scale: the index of
                                               layer ``layers - i`` in the coarse-to-fine scale list)
    target.outconv.model.2.*                -> outconv.model.2.*
    flow_net.*                              -> warper.flow_estimator.*
    ...shortcut.0.*  (ResBlockDecoder)      -> ...shortcut.*
    ...{jump<i>,outconv}.conv1.*            dropped: the same tensor as ``model.2`` (the original
                                               registers that conv twice)

A ``module.`` prefix (a checkpoint saved from ``DataParallel``) is stripped first.  The model
config must match the checkpoint's (DeepFashion: the ``paper`` profile of ``pose_deepfashion``;
Market: ``pose_market``); any key left over or missing, or any shape that differs, is an error
naming the key.  Written from the original's module definitions, not yet tried on a released file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from bench.config import ModelConfig

ALIAS = re.compile(r"(.*\.(?:jump\d+|outconv))\.conv1\.(weight|bias)")


class OfficialCheckpointError(ValueError):
    """A state dict that is not a GFLA PoseGenerator of the configured shape."""


Rule = tuple[re.Pattern, Callable[[re.Match], str]]


def _rules(model: ModelConfig) -> list[Rule]:
    """(pattern, our name) for the original's keys under ``model`` (aliases are handled apart)."""
    scales = sorted(set(model.attn_layers), reverse=True)
    last = model.num_blocks - 1
    rules: list[tuple[str, Callable[[re.Match], str]]] = [
        (r"source\.(.*)", lambda m: f"sources.0.{m[1]}"),
        (r"target\.((?:block0|encoder\d+)\..*)", lambda m: f"target_encoder.{m[1]}"),
        (r"target\.attn(\d+)\.(.*)", lambda m: f"warper.attention.{_scale(int(m[1]), model, scales)}.0.{m[2]}"),
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


def _rename(key: str, rules: list[Rule]) -> str:
    """Our name for the original's ``key`` (an alias already removed)."""
    for pattern, build in rules:
        match = pattern.fullmatch(key)
        if match:
            return build(match).replace(".shortcut.0.", ".shortcut.")
    raise OfficialCheckpointError(f"{key}: not a key of GFLA's PoseGenerator")


def _scale(stage: int, model: ModelConfig, scales: list[int]) -> int:
    layer = model.layers - stage
    if layer not in scales:
        raise OfficialCheckpointError(
            f"target.attn{stage}: attention at layer {layer}, but model.attn_layers is {model.attn_layers}"
        )
    return scales.index(layer)


def convert_pose_generator(state: Mapping[str, torch.Tensor], model: ModelConfig) -> dict[str, torch.Tensor]:
    """The original ``PoseGenerator`` state dict under our names (see the module docstring)."""
    state = {key.removeprefix("module."): value for key, value in state.items()}
    rules = _rules(model)
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        alias = ALIAS.fullmatch(key)
        if alias:
            twin = f"{alias[1]}.model.2.{alias[2]}"
            if twin not in state or not torch.equal(state[twin], value):
                raise OfficialCheckpointError(f"{key}: expected the same tensor as {twin}")
            continue
        converted[_rename(key, rules)] = value
    return converted


def load_pose_generator(generator: torch.nn.Module, path: str | Path, model: ModelConfig) -> None:
    """Load a released ``*_net_G.pth`` into ``generator`` (ours, gfla warper, one source).

    Strict: a missing or unexpected key or a shape that differs fails, naming the file.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        generator.load_state_dict(convert_pose_generator(state, model))
    except (OSError, RuntimeError, OfficialCheckpointError) as exc:
        raise OfficialCheckpointError(f"{path}: {exc}") from exc
