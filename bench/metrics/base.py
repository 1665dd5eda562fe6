"""What a metric is: a name, a direction, a kind, and a computation that records its protocol.

Metrics see uint8 images (N, 3, H, W), exactly as written to disk by the evaluation, so that a
number can be recomputed from the saved files.  ``paired`` metrics compare each generated image
with its ground truth (SSIM, LPIPS, ...); ``distribution`` metrics compare the generated set with a
reference set (FID, KID); ``transport`` metrics score the warpers' flows and masks against the
ground-truth transport, from statistics gathered while generating (``EvalContext.transport``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class MetricResult:
    """A metric value, or the reason it could not be computed, with its protocol."""

    value: float | None
    std: float | None = None
    unavailable: str | None = None  # reason; set when value is None
    count: int | None = None  # number of generated images it was computed over
    protocol: dict[str, Any] = field(default_factory=dict)
    # one value per evaluated image, in evaluation order (paired metrics); kept out of to_dict(): the
    # record stores them in a side file, so the record itself stays small, readable JSON
    per_image: Any = None
    breakdown: dict[str, Any] | None = None  # sub-values, e.g. per scale and per source (transport metrics)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "value": self.value,
            "std": self.std,
            "unavailable": self.unavailable,
            "count": self.count,
            "protocol": self.protocol,
        }
        return out if self.breakdown is None else {**out, "breakdown": self.breakdown}


@dataclass
class EvalContext:
    """What distribution metrics need besides the generated images."""

    reference: Any = None  # torch Dataset of uint8 (3, H, W) reference images
    reference_name: str = ""  # e.g. "synthetic_persons/train"
    cache_dir: Any = None  # cache root: reference_stats/ and features/ (generated sets) below it
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = 16
    options: dict[str, Any] = field(default_factory=dict)  # EvalConfig as a dict
    transport: Any = None  # bench.metrics.transport.TransportStats of the generated images, where computed


class Metric(ABC):
    """Base class of registered metrics (``@METRICS.register("ssim")`` on a subclass)."""

    name: str = ""
    higher_is_better: bool = True
    kind: str = "paired"  # paired or distribution

    @abstractmethod
    def compute(self, fake: torch.Tensor, real: torch.Tensor | None, ctx: EvalContext) -> MetricResult:
        """``fake`` and ``real`` are uint8 (N, 3, H, W); ``real`` is None for distribution metrics."""

    def weights(self, ctx: EvalContext) -> list[dict[str, Any]]:
        """Weight files this metric needs: dicts with name, path, present, where_to_put."""
        return []
