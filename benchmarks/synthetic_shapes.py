"""Benchmark of the synthetic chair/car generator and the ShapeNet (M2NV) loader (issues #5, #6).

Prints, per category and render size, the generator's cost writing a dataset (build meshes, float64 z-buffer ray
cast of 54 views per model, texture + shading, lzf HDF5 writes; one process), the loader's throughput
serving training pairs, check()'s time over the written directory, and the file size.

Run:  OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/synthetic_shapes.py [--models N] [--sizes 64,128]
Target: the quick profile's data (~100 models x 54 views at 64 px) well under a minute.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bench.config import DatasetConfig, TaskConfig
from bench.data.shapes import ShapesParams, write_dataset
from bench.registry import DATASETS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=100, help="models per category (80%% train, 20%% test)")
    parser.add_argument("--sizes", default="64,128", help="comma-separated render sizes")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = DATASETS.get("synthetic_shapes")
    train_models = max(1, args.models * 4 // 5)
    print(f"{'category':>8} {'size':>5} {'views':>6} {'wall s':>7} {'cpu ms/view':>12} {'load pairs/s':>13} "
          f"{'check s':>8} {'MB':>6}")
    for size in (int(s) for s in args.sizes.split(",")):
        for category in ("chair", "car"):
            params = ShapesParams(category, size, train_models, max(1, args.models - train_models), 0)
            views = (params.models_train + params.models_test) * 54
            cfg = TaskConfig(kind="view_synthesis", dataset=DatasetConfig(
                name="synthetic_shapes", resolution=[size, size], structure="view_onehot",
                synthetic={"category": category}))
            with tempfile.TemporaryDirectory() as out:
                root = Path(out)
                wall, cpu = time.perf_counter(), time.process_time()
                write_dataset(params, root)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                megabytes = sum(f.stat().st_size for f in root.iterdir()) / 1e6
                tick = time.perf_counter()
                problems = spec.check(root, cfg)
                check_s = time.perf_counter() - tick
                assert not problems, problems[:3]
                train = spec.train_set(root, cfg, seed=0)
                indices = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:200].tolist()
                tick = time.perf_counter()
                for index in indices:
                    train[index]
                pairs_per_s = len(indices) / (time.perf_counter() - tick)
            print(f"{category:>8} {size:>5} {views:>6} {wall:>7.1f} {cpu / views * 1000:>12.2f} {pairs_per_s:>13.0f} "
                  f"{check_s:>8.2f} {megabytes:>6.1f}")


if __name__ == "__main__":
    main()
