"""Learning curves: cheap paired metrics of a small fixed validation subset during training.

Every ``train.eval_every`` steps of each stage (and at each stage's last step) the trainer
generates a fixed subset of ``train.curve_images`` images and scores them with the
:data:`CURVE_METRICS`; the point also holds the training loss terms averaged over the steps since
the previous point.  The subset is drawn from the *test* split (no dataset here has a validation
split, and the test split is the data the model never trains on), seeded by the cell's seed only,
so every method of a (task, seed) sees the same images.  Curves are only observed: nothing selects
a checkpoint or stops training by them.

Pair tasks score ``curve_images`` pairs (generated ``eval.batch_size`` at a time); video tasks
animate the first :data:`CLIP_FRAMES` frames of ``ceil(curve_images / CLIP_FRAMES)`` test videos
(previous = the generated frame, as in the test).

A point must not change the training trajectory: it runs under inference mode with the generator
in eval mode (its training mode restored by the trainer) and with every RNG state (torch CPU and
CUDA, numpy, python) restored afterwards, and it loads samples without a DataLoader (whose iterator
draws a seed from the global RNG).  The curve state travels in the trainer's checkpoint, so a
resumed run records the curve of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from bench.metrics.base import EvalContext
from bench.metrics.pixel import L1
from bench.metrics.ssim import SSIM
from bench.metrics.transport import finest_epe
from bench.visualize import image_to_uint8
from bench.warp import TransportTruth

CLIP_FRAMES = 8  # frames of each test video a video-task curve animates

# (generated images in [-1, 1] (N, 3, H, W) on the CPU, the batch they were generated from, the
# warper's plan on the CPU) -> (N,) one value per image.  A pair batch is the collated samples
# (bench.data.base); a video batch is one clip: its sample keys cut to CLIP_FRAMES frames, with the
# frames also under "target_image" (so a metric of the targets serves both kinds) and the plan of the
# clip's last frame.  The curve's value is the mean over the subset's images.
CurveMetric = Callable[[torch.Tensor, dict[str, Any], dict[str, Any]], torch.Tensor]
GenerateFn = Callable[[dict[str, Any]], tuple[torch.Tensor, dict[str, Any]]]


def _per_image(score: Callable[[np.ndarray, np.ndarray], float]) -> CurveMetric:
    """A curve metric from a score of one (fake, real) pair of uint8 (H, W, 3) images."""

    def metric(generated: torch.Tensor, batch: dict[str, Any], plan: dict[str, Any]) -> torch.Tensor:
        pairs = zip(generated, batch["target_image"])
        return torch.tensor([score(image_to_uint8(fake), image_to_uint8(real)) for fake, real in pairs],
                            dtype=torch.float64)

    return metric


_GAUSSIAN_SSIM = EvalContext(options={"ssim_variant": "gaussian"})



def _endpoint_error(generated: torch.Tensor, batch: dict[str, Any], plan: dict[str, Any]) -> torch.Tensor:
    """The test table's ``epe`` per image where the batch has ground truth and the plan a flow, else
    NaN; on a video clip only its last frame, whose plan is the one the clip returns."""
    values = torch.full((generated.shape[0],), math.nan, dtype=torch.float64)
    if "frames" in batch:
        truth = TransportTruth.of_frame(batch, generated.shape[0] - 1)
        if truth is not None:
            values[-1] = finest_epe(plan, truth)[0]
    elif (truth := TransportTruth.of_pairs(batch)) is not None:
        values[:] = torch.tensor(finest_epe(plan, truth), dtype=torch.float64)
    return values


# The test tables' SSIM (default Gaussian variant), L1 on [0, 1] (on the images as saved, uint8) and,
# where the data has ground-truth transport, the end-point error of the warper's finest flow.
CURVE_METRICS: dict[str, CurveMetric] = {
    "ssim": _per_image(lambda fake, real: SSIM().score(fake, real, _GAUSSIAN_SSIM)),
    "l1": _per_image(lambda fake, real: L1().score(fake, real, _GAUSSIAN_SSIM)),
    "epe": _endpoint_error,
}


def check_schedule(every: int, images: int) -> None:
    """Fail naming the key when ``train.eval_every`` or ``train.curve_images`` is out of range."""
    if every < 0:
        raise ValueError(f"train.eval_every: expected an integer >= 0 (0: no learning curve), got {every}")
    if every > 0 and images < 1:
        raise ValueError(f"train.curve_images: expected at least 1 image per curve point, got {images}")


def curve_indices(size: int, count: int, seed: int) -> list[int]:
    """``count`` distinct indices of ``range(size)`` drawn with a private generator seeded by ``seed``."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(order[: min(count, size)])


def _clip(video: dict[str, Any], frames: int) -> dict[str, Any]:
    """A test video cut to its first ``frames`` frames (every per-frame key), frames also as targets."""
    length = video["frames"].shape[0]

    def per_frame(value: Any) -> bool:
        if isinstance(value, torch.Tensor):
            return value.dim() > 0 and value.shape[0] == length
        return isinstance(value, list) and len(value) == length

    clip = {key: value[:frames] if per_frame(value) else value for key, value in video.items()}
    clip["target_image"] = clip["frames"]
    return clip


@contextlib.contextmanager
def preserved_rng(device: torch.device) -> Iterator[None]:
    """Restore the torch (CPU and, on CUDA, the device's), numpy and python RNG states on exit."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)


class LearningCurve:
    """Records the curve points of one training run; see the module docstring."""

    def __init__(self, test_set: Dataset, video: bool, every: int, images: int, seed: int, batch_size: int = 16,
                 metrics: dict[str, CurveMetric] | None = None) -> None:
        check_schedule(every, images)
        self.test_set, self.video, self.every, self.batch_size = test_set, video, every, max(1, batch_size)
        self.metrics = dict(CURVE_METRICS if metrics is None else metrics)
        count = math.ceil(images / CLIP_FRAMES) if video else images
        self.indices = curve_indices(len(test_set), count, seed)  # type: ignore[arg-type]
        self.points: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self.seconds = 0.0  # spent scoring in this process (not checkpointed: not part of the curve)

    def due(self, step: int, stage_steps: int) -> bool:
        return step % self.every == 0 or step == stage_steps

    def observe(self, stage: int, step: int, stage_steps: int, losses: dict[str, float],
                generate: GenerateFn, device: torch.device) -> None:
        """Add one step's loss terms; at a due step, score the subset and record a point."""
        for name, value in losses.items():
            self._sums[name] = self._sums.get(name, 0.0) + value
            self._counts[name] = self._counts.get(name, 0) + 1
        if not self.due(step, stage_steps):
            return
        tick = time.perf_counter()
        with preserved_rng(device):
            values = self.score(generate)
        self.seconds += time.perf_counter() - tick
        averaged = {name: total / self._counts[name] for name, total in self._sums.items()}
        self.points[stage].append({"step": step, "metrics": values, "losses": averaged})
        self._sums, self._counts = {}, {}

    def batches(self) -> Iterator[dict[str, Any]]:
        """The subset as generator inputs: pair batches of up to ``batch_size``, or one clip per video."""
        if self.video:
            for index in self.indices:
                yield _clip(self.test_set[index], CLIP_FRAMES)
            return
        for start in range(0, len(self.indices), self.batch_size):
            yield default_collate([self.test_set[i] for i in self.indices[start : start + self.batch_size]])

    def score(self, generate: GenerateFn) -> dict[str, float]:
        """Every curve metric's mean over the subset's images where it is defined (not NaN); a metric
        defined on none of them (no ground truth, no flow) is left out of the point."""
        values: dict[str, list[torch.Tensor]] = {name: [] for name in self.metrics}
        for batch in self.batches():
            generated, plan = generate(batch)
            for name, metric in self.metrics.items():
                values[name].append(metric(generated, batch, plan).double().flatten())
        means = {name: torch.cat(parts) for name, parts in values.items()}
        return {name: float(v[~v.isnan()].mean()) for name, v in means.items() if not v.isnan().all()}

    # -- record and checkpoint ----------------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        """The record's ``curves`` field: the subset, and per stage the steps with column lists of
        metric values and averaged loss terms (None where a term was absent since the last point)."""
        stages = {}
        for stage, points in self.points.items():
            if not points:
                continue
            metric_names = sorted({name for point in points for name in point["metrics"]})
            loss_names = sorted({name for point in points for name in point["losses"]})
            stages[str(stage)] = {
                "step": [point["step"] for point in points],
                "metrics": {name: [point["metrics"].get(name) for point in points] for name in metric_names},
                "losses": {name: [point["losses"].get(name) for point in points] for name in loss_names},
            }
        unit = f"test videos (their first {CLIP_FRAMES} frames)" if self.video else "test pairs"
        return {
            "every": self.every,
            "subset": {"split": "test", "unit": unit, "indices": list(self.indices)},
            "stages": stages,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"points": {str(k): v for k, v in self.points.items()}, "sums": dict(self._sums),
                "counts": dict(self._counts), "indices": list(self.indices)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["indices"] != self.indices:
            raise ValueError(f"checkpoint's learning-curve subset {state['indices']} is not this cell's "
                             f"{self.indices}")
        self.points = {int(k): list(v) for k, v in state["points"].items()}
        self._sums, self._counts = dict(state["sums"]), dict(state["counts"])
