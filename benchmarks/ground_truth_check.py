"""Check of the datasets' ground-truth transport: warping each source by its ground-truth flow
(bilinear, ``bench.ops.flow_warp``) must reproduce the target on the pixels marked visible.

For every task given, over the test items a cell scores (``bench.cell.evaluated_indices``), prints the
mean absolute error and the PSNR (images in [0, 1], all channels, pooled over the visible pixels of all
pairs) of the warped source against the target, next to the same figures for the unwarped source on
the same pixels (what a zero flow would give), and the fraction of visible pixels reproduced to
within 1/255 in every channel ("exact").  Pair tasks read ``flow_gt`` / ``visibility_gt``; video
tasks ``flows_gt`` / ``visibility_gt`` with each frame's two sources (previous, reference).

What remains after warping is the rendering's own error: resampling aliased textures bilinearly and,
where the shading depends on the view, the change of shading.  For ``synthetic_shapes`` a second row
("unshaded") re-renders the same test views without shading (the albedo), which separates the two.

Run:  PYTHONPATH=. python benchmarks/ground_truth_check.py --tasks view_synthetic_chair,view_synthetic_car
      [--profile quick] [--data-root datasets]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.cell import VIDEO_KINDS, evaluated_indices
from bench.ops.flow_warp import flow_warp
from bench.registry import DATASETS
from bench.taskspec import load_task


@dataclass
class WarpError:
    """Absolute and squared errors pooled over visible pixels (all channels)."""

    pairs: int = 0
    pixels: int = 0
    exact: int = 0  # visible pixels reproduced to within 1/255 in every channel
    values: int = 0
    absolute: float = 0.0
    squared: float = 0.0
    unwarped_absolute: float = 0.0
    unwarped_squared: float = 0.0
    visible_fraction: list[float] = field(default_factory=list)

    def add(self, source: torch.Tensor, target: torch.Tensor, flow: torch.Tensor, visibility: torch.Tensor) -> None:
        """source, target (3, H, W) in [0, 1]; flow (2, H, W); visibility (1, H, W)."""
        warped = flow_warp(source[None], flow[None])[0]
        visible = visibility.bool().expand_as(target)
        self.pairs += 1
        self.pixels += int(visibility.sum())
        self.exact += int(((warped - target).abs().amax(dim=0) <= 1 / 255)[visibility[0].bool()].sum())
        self.values += int(visible.sum())
        self.absolute += float((warped - target).abs()[visible].sum())
        self.squared += float(((warped - target) ** 2)[visible].sum())
        self.unwarped_absolute += float((source - target).abs()[visible].sum())
        self.unwarped_squared += float(((source - target) ** 2)[visible].sum())
        self.visible_fraction.append(float(visibility.mean()))

    def row(self, task: str, label: str) -> str:
        if not self.values:
            return f"| {task} | {label} | {self.pairs} | 0 | n/a: no visible pixel | | | | |"
        n = self.values
        return (f"| {task} | {label} | {self.pairs} | {sum(self.visible_fraction) / self.pairs:.3f} "
                f"| {self.exact / self.pixels:.3f} | {self.absolute / n:.4f} | {_psnr(self.squared / n):.2f} "
                f"| {self.unwarped_absolute / n:.4f} | {_psnr(self.unwarped_squared / n):.2f} |")


def _psnr(mse: float) -> float:
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _unit(image: torch.Tensor) -> torch.Tensor:
    return (image + 1) / 2


def transports(cfg, test_set) -> Iterator[tuple[torch.Tensor, ...]]:
    """(source, target, flow, visibility) of every ground-truth transport of the scored items."""
    for index in evaluated_indices(cfg, test_set):
        item = test_set[index]
        if cfg.kind in VIDEO_KINDS:
            if "flows_gt" not in item:
                return
            frames = _unit(item["frames"])
            for t in range(len(frames)):
                for k, source in enumerate((max(t - 1, 0), 0)):  # the model's order: previous, reference
                    yield frames[source], frames[t], item["flows_gt"][t, k], item["visibility_gt"][t, k]
        else:
            if "flow_gt" not in item:
                return
            yield _unit(item["source_image"]), _unit(item["target_image"]), item["flow_gt"], item["visibility_gt"]


def unshaded_shapes(cfg, root: Path, test_set) -> WarpError:
    """The warp check of synthetic_shapes test pairs on unshaded (albedo) renders of the same views."""
    from bench.data.shapes import BUILDERS, ShapesParams, grid_camera, model_name, model_rng, render_views

    params = ShapesParams.from_config(cfg)
    index_of = {model_name(params, "test", i): i for i in range(params.models_test)}
    error = WarpError()
    for index in evaluated_indices(cfg, test_set):
        model, source, target, elevation = test_set.pair(index)
        mesh = BUILDERS[params.category](model_rng(params, "test", index_of[model]))
        images, _ = render_views(mesh, [grid_camera(source, elevation), grid_camera(target, elevation)],
                                 params.resolution, lit=False)
        source_image, target_image = (torch.from_numpy(image).permute(2, 0, 1).float() / 255 for image in images)
        item = test_set[index]
        error.add(source_image, target_image, item["flow_gt"], item["visibility_gt"])
    return error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", required=True, help="comma-separated task names")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--data-root", default="datasets", help="where the synthetic data is (generated if absent)")
    args = parser.parse_args()

    print("| task | images | pairs | visible fraction | exact | MAE warped | PSNR warped | MAE unwarped "
          "| PSNR unwarped |")
    print("| --- | --- | --: | --: | --: | --: | --: | --: | --: |")
    for task in [name for name in args.tasks.split(",") if name]:
        cfg = load_task(task, args.profile)
        spec = DATASETS.get(cfg.dataset.name)
        root = spec.prepare(cfg, Path(args.data_root))
        test_set = spec.test_set(root, cfg)
        error = WarpError()
        for source, target, flow, visibility in transports(cfg, test_set):
            error.add(source, target, flow, visibility)
        if not error.pairs:
            print(f"| {task} | n/a: the dataset has no ground truth | | | | | | | |")
            continue
        print(error.row(task, "as stored"))
        written = cfg.dataset.synthetic.get("resolution")
        if cfg.dataset.name == "synthetic_shapes" and written in (None, list(cfg.dataset.resolution)):
            print(unshaded_shapes(cfg, root, test_set).row(task, "unshaded"))


if __name__ == "__main__":
    main()
