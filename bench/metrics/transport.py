"""Transport metrics: how well a warper moved the source, scored against the ground-truth flow.

Unlike the image metrics these need the warper's plan and the dataset's ground truth, which exist
only while the test outputs are generated.  :class:`TransportStats` therefore reduces each
generated image to a few numbers at that time (no flow is kept), the cell hands the statistics to
the metrics through :attr:`bench.metrics.base.EvalContext.transport`, and the metrics aggregate them:

* ``epe``: end-point error in pixels of the output image of the warper's finest-scale flow;
* ``occlusion``: AUROC of the warper's finest-scale blending masks against the visibility.

A task whose data has no ground truth gets both as unavailable with the reason "no ground truth",
a warper without flows (masks) gets "no flow" ("no mask").  Both come per scale and per source
(face animation: previous, reference) in the result's ``breakdown``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata

from bench.metrics.base import EvalContext, Metric, MetricResult
from bench.ops import upsample_flow
from bench.registry import METRICS
from bench.warp import TransportTruth

NO_GROUND_TRUTH = "no ground truth"
NO_FLOW = "no flow"
NO_MASK = "no mask"
VISIBLE = 0.5  # visibility_gt at or above this counts as visible
SOURCE_NAMES = {1: ("source",), 2: ("previous", "reference")}


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for boolean ``labels`` (Mann-Whitney U, ties count 1/2);
    NaN when one class is absent."""
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _nanmean(values: list[float]) -> float | None:
    """The mean of the defined values; None (JSON null in the record) where none is."""
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else None


@dataclass
class ImageTransport:
    """One generated image's transport numbers (NaN where undefined)."""

    epe: list[float] | None  # per scale, coarse -> fine, pooled over the sources' visible pixels
    epe_per_source: list[float] | None  # finest scale
    auroc: list[float] | None  # per scale, pooled over sources
    auroc_per_source: list[float] | None  # finest scale


def _image_size(truth: TransportTruth) -> tuple[int, int]:
    return tuple(truth.flows[0].shape[-2:])


def _epe(flows: list[list[torch.Tensor]], truth: TransportTruth, visible: list[torch.Tensor]):
    """Per image: EPE per scale pooled over sources, and per source at the finest scale."""
    size = _image_size(truth)
    per_scale = []
    for scale_flows in flows:
        sums = []
        for flow, gt, mask in zip(scale_flows, truth.flows, visible, strict=True):
            error = torch.linalg.vector_norm(upsample_flow(flow.float(), size) - gt.float(), dim=1)
            sums.append((error * mask[:, 0]).flatten(1).sum(1))
        per_scale.append(torch.stack(sums, 1))  # (B, S)
    counts = torch.stack([mask.flatten(1).sum(1) for mask in visible], 1)  # (B, S)
    pooled = torch.stack([s.sum(1) / counts.sum(1) for s in per_scale], 1)  # (B, scales), NaN: none visible
    finest = per_scale[-1] / counts
    return pooled.tolist(), finest.tolist()


def finest_epe(plan: dict[str, Any], truth: TransportTruth) -> list[float]:
    """Per image, the EPE of the plan's finest-scale flow over the visible pixels of all sources (NaN
    where none is visible or the plan has no flow): the ``epe`` metric's value, for a learning curve."""
    flows = plan.get("flows") or []
    if not flows:
        return [math.nan] * int(truth.flows[0].shape[0])
    visible = [(v.float() >= VISIBLE).float() for v in truth.visibility]
    pooled, _ = _epe(flows[-1:], truth, visible)
    return [values[-1] for values in pooled]


def _auroc(masks: list[list[torch.Tensor]], truth: TransportTruth, visible: list[torch.Tensor]):
    """Per image: AUROC per scale pooled over sources, and per source at the finest scale."""
    size = _image_size(truth)
    labels = torch.stack(visible, 1).flatten(2).numpy().astype(bool)  # (B, S, H*W)
    scores = []
    for scale_masks in masks:
        up = [torch.nn.functional.interpolate(m.float(), size=size, mode="bilinear", align_corners=False)
              for m in scale_masks]
        scores.append(torch.stack(up, 1).flatten(2).numpy())  # (B, S, H*W)
    pooled = [[auroc(s[b].ravel(), labels[b].ravel()) for s in scores] for b in range(labels.shape[0])]
    finest = [[auroc(scores[-1][b, s], labels[b, s]) for s in range(labels.shape[1])]
              for b in range(labels.shape[0])]
    return pooled, finest


@dataclass
class TransportStats:
    """Per-image transport numbers of a cell's test outputs, in evaluation order."""

    images: list[ImageTransport] = field(default_factory=list)
    num_sources: int = 1
    lacks: set[str] = field(default_factory=set)  # NO_GROUND_TRUTH / NO_FLOW / NO_MASK, seen in any batch

    def add(self, plan: dict[str, Any], truth: TransportTruth | None, count: int) -> None:
        """Score ``count`` generated images from their (CPU) plan and ground truth."""
        if truth is None:
            self.lacks.add(NO_GROUND_TRUTH)
            return
        self.num_sources = len(truth.flows)
        visible = [(v.float() >= VISIBLE).float() for v in truth.visibility]
        flows = plan.get("flows") or []
        masks = [scale for scale in plan.get("masks") or [] if scale]
        for key, maps in (("flows", flows), ("masks", masks)):
            if any(len(scale) != self.num_sources for scale in maps):
                raise ValueError(f"plan[{key!r}] has {[len(s) for s in maps]} sources per scale, the ground "
                                 f"truth {self.num_sources}")
        if not flows:
            self.lacks.add(NO_FLOW)
        if not masks:
            self.lacks.add(NO_MASK)
        epe, epe_source = _epe(flows, truth, visible) if flows else ([None] * count, [None] * count)
        occ, occ_source = _auroc(masks, truth, visible) if masks else ([None] * count, [None] * count)
        self.images.extend(ImageTransport(*values) for values in zip(epe, epe_source, occ, occ_source))

    @classmethod
    def merged(cls, shards: list[TransportStats]) -> TransportStats:
        """The ranks' statistics concatenated in rank order (the order of the gathered images)."""
        out = cls(num_sources=max((s.num_sources for s in shards), default=1))
        for shard in shards:
            out.images.extend(shard.images)
            out.lacks |= shard.lacks
        return out

    def source_names(self) -> tuple[str, ...]:
        return SOURCE_NAMES.get(self.num_sources, tuple(f"source{i}" for i in range(self.num_sources)))


class TransportMetric(Metric):
    """Aggregates one of :class:`TransportStats`' per-image numbers (``value_field``, ``per_source_field``)."""

    kind = "transport"
    value_field = ""
    per_source_field = ""
    needs = NO_FLOW  # the reason given when the plans lack what this metric scores
    undefined = ""  # what an image needs for a defined value

    def compute(self, fake: torch.Tensor, real: torch.Tensor | None, ctx: EvalContext) -> MetricResult:
        stats: TransportStats | None = ctx.transport
        reason = None
        if stats is None or NO_GROUND_TRUTH in stats.lacks:
            reason = NO_GROUND_TRUTH
        elif self.needs in stats.lacks:
            reason = self.needs
        elif not stats.images:
            reason = NO_GROUND_TRUTH  # nothing was scored
        if reason is not None:
            return MetricResult(value=None, unavailable=reason, protocol=self.protocol(stats))
        per_scale = np.array([getattr(image, self.value_field) for image in stats.images], dtype=np.float64)
        per_source = np.array([getattr(image, self.per_source_field) for image in stats.images], dtype=np.float64)
        per_image = per_scale[:, -1]
        scored = per_image[~np.isnan(per_image)]
        if scored.size == 0:
            return MetricResult(value=None, unavailable=f"no test image has {self.undefined}",
                                protocol=self.protocol(stats), per_image=per_image.tolist())
        return MetricResult(
            value=float(scored.mean()),
            std=float(scored.std()),
            count=int(scored.size),
            protocol=self.protocol(stats),
            per_image=per_image.tolist(),
            breakdown={
                "per_scale": [_nanmean(list(column)) for column in per_scale.T],
                "per_source": {name: _nanmean(list(column))
                               for name, column in zip(stats.source_names(), per_source.T)},
            },
        )

    def protocol(self, stats: TransportStats | None) -> dict[str, Any]:
        return {}


@METRICS.register("epe")
class EndPointError(TransportMetric):
    """Mean end-point error (image pixels) of the finest-scale flow over visible target pixels."""

    name = "epe"
    higher_is_better = False
    value_field, per_source_field, needs = "epe", "epe_per_source", NO_FLOW
    undefined = "a visible pixel"

    def protocol(self, stats: TransportStats | None) -> dict[str, Any]:
        return {
            "flow": "plan['flows'] at the finest scale (per_scale: every scale, coarse -> fine), bilinearly "
                    "upsampled to the image size (half-pixel centres) with its values scaled by the size ratio",
            "truth": "flow_gt / flows_gt of the dataset, backward target -> source in image pixels",
            "pixels": f"target pixels with visibility_gt >= {VISIBLE}, pooled over the sources",
            "aggregate": "per image: mean |flow - flow_gt|_2 over those pixels; value: mean over images with a "
                         "visible pixel; std: population std over them",
            "sources": list(stats.source_names()) if stats else [],
        }


@METRICS.register("occlusion")
class OcclusionAUROC(TransportMetric):
    """AUROC of the finest-scale blending masks as a score for ground-truth visibility, per image."""

    name = "occlusion"
    higher_is_better = True
    value_field, per_source_field, needs = "auroc", "auroc_per_source", NO_MASK
    undefined = "both visible and invisible pixels"

    def protocol(self, stats: TransportStats | None) -> dict[str, Any]:
        return {
            "score": "AUROC (Mann-Whitney U, ties 1/2) of plan['masks'] at the finest scale (per_scale: every "
                     "scale), bilinearly upsampled to the image size, for visibility_gt >= "
                     f"{VISIBLE}; per image, pooled over the sources",
            "why": "threshold-free: the masks are blending weights learned through the image losses, not "
                   "calibrated probabilities, so any fixed threshold (0.5) would score their level rather than "
                   "whether they tell visible from occluded pixels; 0.5 = chance, 1 = perfect",
            "aggregate": "mean over images with both visible and invisible pixels (others: NaN per image); "
                         "std: population std over them",
            "sources": list(stats.source_names()) if stats else [],
        }
