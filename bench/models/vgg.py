"""Frozen VGG19 features for the perceptual, style and sampling-correctness losses.

``"imagenet"`` loads torchvision's ImageNet weights from the torch hub cache file
``<torch.hub.get_dir()>/checkpoints/vgg19-dcbb9e9d.pth`` (or ``weights_dir``) and never downloads;
``"random"`` is a seeded, machine-independent random init (for offline runs where the file is
absent; the numbers are then not comparable to the paper's).  As in GFLA, images go in in [-1, 1]
*without* ImageNet mean/std normalisation.

The random trunk pads its convolutions by replicating the border instead of with zeros.  With zero
padding its untrained features carry a strong signature of the image border, which on images with
a plain backdrop dominates the sampling-correctness loss: for known shifts of the synthetic persons
the loss was lowest near zero flow instead of at the true one (``tests/test_losses.py``).  The
ImageNet trunk keeps torchvision's zero padding, which its weights were trained with.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

WEIGHTS_FILE = "vgg19-dcbb9e9d.pth"
RANDOM_SEED = 0
BACKBONES = ("imagenet", "random")


def _relu_indices() -> dict[str, int]:
    """torchvision vgg19.features index of each ReLU output, by its conventional name (relu3_1 ...)."""
    indices, position, block, conv = {}, 0, 1, 0
    for item in cfgs["E"]:
        if item == "M":  # one MaxPool module
            position, block, conv = position + 1, block + 1, 0
        else:  # a Conv2d module followed by its ReLU
            conv += 1
            indices[f"relu{block}_{conv}"] = position + 1
            position += 2
    return indices


LAYER_INDEX = _relu_indices()


def weights_path(weights_dir: str | Path | None = None) -> Path:
    """Where the ImageNet VGG19 weights are read from."""
    folder = Path(weights_dir) if weights_dir is not None else Path(torch.hub.get_dir()) / "checkpoints"
    return folder / WEIGHTS_FILE


class VGG19Features(nn.Module):
    """VGG19 ``features`` trunk, frozen; ``forward(x, layers)`` -> {layer name: activation}."""

    def __init__(self, backbone: str = "random", weights_dir: str | Path | None = None) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"model.vgg: expected one of {', '.join(BACKBONES)}, got {backbone!r}")
        self.backbone = backbone
        self.features = make_layers(cfgs["E"], batch_norm=False)
        self.source = ""
        if backbone == "imagenet":
            self._load_imagenet(weights_path(weights_dir))
        else:
            self._init_random()
        self.requires_grad_(False)
        self.eval()

    def _load_imagenet(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(
                f"VGG19 ImageNet weights not found at {path}. Copy torchvision's {WEIGHTS_FILE} there "
                f"(on a machine with internet: torchvision.models.vgg19(weights='IMAGENET1K_V1') saves it to "
                f"<torch.hub.get_dir()>/checkpoints/), set TORCH_HOME, or use model.vgg=random"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        prefix = "features."
        trunk = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        missing = sorted(set(self.features.state_dict()) - set(trunk))
        if missing:
            raise ValueError(
                f"{path}: not a torchvision VGG19 state dict; missing keys features.{missing[0]} ..."
            )
        self.features.load_state_dict(trunk)
        self.source = str(path)

    def _init_random(self) -> None:
        generator = torch.Generator().manual_seed(RANDOM_SEED)
        with torch.no_grad():
            for layer in self.features:
                if isinstance(layer, nn.Conv2d):
                    nn.init.kaiming_normal_(
                        layer.weight, mode="fan_out", nonlinearity="relu", generator=generator
                    )
                    layer.bias.zero_()
                    layer.padding_mode = "replicate"
        self.source = f"random init (kaiming normal, torch.Generator seed {RANDOM_SEED}), replicate padding"

    def train(self, mode: bool = True) -> VGG19Features:
        """Always stays in eval mode (it is a fixed feature extractor)."""
        return super().train(False)

    def describe(self) -> dict[str, str]:
        """Which backbone the losses used, for the protocol record."""
        return {
            "network": "vgg19",
            "weights": "random-replicate" if self.backbone == "random" else self.backbone,
            "source": self.source,
            "input": "[-1, 1], no mean/std",
        }

    def forward(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        wanted = set(layers)
        unknown = wanted - set(LAYER_INDEX)
        if unknown:
            raise ValueError(f"unknown VGG19 layer(s) {sorted(unknown)}; known: {', '.join(LAYER_INDEX)}")
        by_index = {LAYER_INDEX[name]: name for name in wanted}
        last = max(by_index)
        out: dict[str, torch.Tensor] = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in by_index:
                out[by_index[index]] = x
            if index == last:
                break
        return out
