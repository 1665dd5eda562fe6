"""Floor rows: outputs that need no training, scored exactly like a cell's, under the task's protocol.

Per task, on the test items and targets a cell scores (``bench.cell.evaluated_indices``; a video's
every frame), these predictions ignore what a method must learn:

* ``floor:source`` (pairs) / ``floor:reference`` (face animation): the source image itself, for a
  video its reference (first) frame, i.e. a warp with zero flow and a perfect decoder;
* ``floor:mean_colour``: a flat image in the source's (reference frame's) per-channel mean colour;
* ``floor:gt_warp``: the image-space oracle, the source bilinearly warped by the ground-truth flow
  (a video: reference -> frame), invisible pixels in the source's mean colour; only where the data
  has ground truth (:class:`FloorNotApplicable` elsewhere).

A floor is a cell of its own (method ``floor:<name>``, seed 0, record ``"role": "floor"``) that the
runner writes through the same record path as the methods' cells.  Its key covers only what its
numbers depend on (task, profile, dataset and eval config, perceptual backbone), so it is computed
once per task and protocol and a rerun skips it unless ``--force``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from bench import distributed
from bench.cell import (
    VIDEO_KINDS,
    cell_protocol,
    evaluated_indices,
    per_image_values,
    phase,
    prepare_data,
    score_outputs,
    to_uint8,
)
from bench.config import TaskConfig
from bench.metrics.transport import NO_FLOW, NO_GROUND_TRUTH, NO_MASK, TransportStats
from bench.ops import flow_warp
from bench.warp import TransportTruth

FLOOR_PREFIX = "floor:"
REFERENCE = 1  # video ground truth holds the sources (previous, reference)

Prediction = Callable[[torch.Tensor, TransportTruth | None], torch.Tensor]


class FloorNotApplicable(Exception):
    """This floor does not exist for this task (e.g. the image-space oracle without ground truth)."""


def _mean_colour(source: torch.Tensor) -> torch.Tensor:
    return source.mean(dim=(2, 3), keepdim=True).expand_as(source)


def gt_warp(source: torch.Tensor, truth: TransportTruth) -> torch.Tensor:
    """The source warped by the ground-truth flow, blended to its mean colour where not visible."""
    visibility = truth.visibility[0].to(source.dtype)
    return flow_warp(source, truth.flows[0].to(source.dtype)) * visibility + _mean_colour(source) * (1 - visibility)


PAIR_FLOORS: dict[str, Prediction] = {
    "floor:source": lambda source, truth: source,
    "floor:mean_colour": lambda source, truth: _mean_colour(source),
    "floor:gt_warp": gt_warp,
}
VIDEO_FLOORS: dict[str, Prediction] = {
    "floor:reference": lambda source, truth: source,
    "floor:mean_colour": lambda source, truth: _mean_colour(source),
    "floor:gt_warp": gt_warp,
}
NEEDS_GROUND_TRUTH = frozenset({"floor:gt_warp"})


def is_floor(method: str) -> bool:
    return method.startswith(FLOOR_PREFIX)


def floors_for(kind: str) -> dict[str, Prediction]:
    """The floors of a task kind, by method name."""
    return VIDEO_FLOORS if kind in VIDEO_KINDS else PAIR_FLOORS


def has_ground_truth(test_set) -> bool:
    """Whether the test samples carry ground-truth transport (checked on the first one)."""
    return len(test_set) > 0 and bool({"flow_gt", "flows_gt"} & set(test_set[0]))


def floor_outputs(cfg: TaskConfig, name: str, test_set) -> list[tuple[torch.Tensor, torch.Tensor, list[str]]]:
    """The floor's (output, target, names) uint8 parts, in the order a cell generates them."""
    floors = floors_for(cfg.kind)
    if name not in floors:
        raise ValueError(f"unknown floor {name!r} for a {cfg.kind} task; its floors: {', '.join(floors)}")
    predict, needs_truth = floors[name], name in NEEDS_GROUND_TRUTH
    indices = evaluated_indices(cfg, test_set)
    parts = []
    if cfg.kind in VIDEO_KINDS:
        for index in indices:
            video = test_set[index]
            frames = video["frames"]
            reference = frames[:1].expand_as(frames)
            truth = None
            if needs_truth:
                truth = TransportTruth.of_sources(video["flows_gt"][:, REFERENCE : REFERENCE + 1],
                                                  video["visibility_gt"][:, REFERENCE : REFERENCE + 1])
            names = [f"{video['name']}_{stem}" for stem in video["frame_names"]]
            parts.append((to_uint8(predict(reference, truth)), to_uint8(frames), names))
        return parts
    for batch in DataLoader(Subset(test_set, indices), batch_size=cfg.eval.batch_size, shuffle=False):
        truth = TransportTruth.of_pairs(batch) if needs_truth else None
        parts.append((to_uint8(predict(batch["source_image"], truth)), to_uint8(batch["target_image"]),
                      list(batch["name"])))
    return parts


def execute_floor(cfg: TaskConfig, name: str, key: str, options: Any, device: torch.device,
                  progress: Any = None) -> dict[str, Any]:
    """Compute and score one floor; returns the record fields, as :func:`bench.cell.execute_cell` does."""
    from bench.models.vgg import VGGFeatures

    timings: dict[str, float] = {}
    tick = time.perf_counter()
    with phase("data"):
        spec, root, fingerprint = prepare_data(cfg, options, progress)
        test_set = spec.test_set(root, cfg)
    timings["data_s"] = round(time.perf_counter() - tick, 3)
    if not distributed.is_main():  # one rank computes a floor
        return {"timings": timings}
    truth = has_ground_truth(test_set)
    if name in NEEDS_GROUND_TRUTH and not truth:
        raise FloorNotApplicable(f"{name} warps by the ground-truth flow; this task's data has none")
    tick = time.perf_counter()
    with phase("eval", ("eval.batch_size", cfg.eval.batch_size)):
        parts = floor_outputs(cfg, name, test_set)
        transport = TransportStats(lacks={NO_FLOW, NO_MASK} if truth else {NO_GROUND_TRUTH})
        out_dir = Path(options.work_dir) / "floors" / key / "outputs"
        evaluation = score_outputs(cfg, spec, root, parts, out_dir, options, device, transport)
        backbone = VGGFeatures(cfg.model.vgg).describe()  # as the trainer builds it: same protocol
    timings["eval_s"] = round(time.perf_counter() - tick, 3)
    return {
        "protocol": cell_protocol(cfg, evaluation, backbone, fingerprint),
        "metrics": {metric: result.to_dict() for metric, result in evaluation["metrics"].items()},
        "per_image": per_image_values(evaluation),
        "timings": timings,
        "artifacts": {},
    }
