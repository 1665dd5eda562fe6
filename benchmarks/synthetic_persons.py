"""Benchmark of the synthetic person generator and the pose loader (issue #5 persons part).

Prints, per resolution, the generator's throughput writing a dataset (render + PNG encode + CSVs, one
process) by wall clock and by this process's CPU time (the fair figure on a shared machine), the
loader's throughput serving pairs (two image decodes, resize, two heatmap stacks), and check()'s time
over the written directory.

Run:  OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/synthetic_persons.py [--identities N]
Target: about 150 generated images/s at 128x64 on one core; the quick profile's dataset
(tasks/pose_synthetic.yaml: 180 identities x 4 poses at 64x64) well under a minute.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from bench.config import TaskConfig
from bench.data import persons
from bench.registry import DATASETS

RESOLUTIONS = ((64, 64), (128, 64), (256, 176), (256, 256))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--identities", type=int, default=50, help="training identities per resolution")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = DATASETS.get("synthetic_persons")
    header = ("resolution", "images", "gen img/s wall", "gen img/s cpu", "load pairs/s", "check s")
    print("{:>10} {:>7} {:>15} {:>14} {:>13} {:>8}".format(*header))
    for height, width in RESOLUTIONS:
        params = persons.PersonsParams((height, width), identities_train=args.identities, identities_test=1)
        images = (params.identities_train + params.identities_test) * params.poses_per_identity
        with tempfile.TemporaryDirectory() as out:
            tick, cpu = time.perf_counter(), time.process_time()
            persons.write_dataset(params, Path(out))
            generate = images / (time.perf_counter() - tick)
            generate_cpu = images / (time.process_time() - cpu)
            (Path(out) / persons.PARAMS_FILE).write_text(json.dumps(params.to_json()))
            cfg = TaskConfig()
            cfg.dataset.resolution = [height, width]
            cfg.dataset.heatmap_sigma = 6.0 * height / 256
            tick = time.perf_counter()
            problems = spec.check(Path(out), cfg)
            check = time.perf_counter() - tick
            assert problems == [], problems
            pairs = spec.train_set(Path(out), cfg, seed=0)
            count = min(len(pairs), 100)
            tick = time.perf_counter()
            for i in range(count):
                pairs[i]
            load = count / (time.perf_counter() - tick)
        print(f"{height:>5}x{width:<4} {images:>7} {generate:>15.1f} {generate_cpu:>14.1f} {load:>13.1f} {check:>8.2f}")


if __name__ == "__main__":
    main()
