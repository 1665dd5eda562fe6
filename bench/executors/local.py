"""The default executor: cells run in this process, or in ``--jobs N`` worker processes."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from bench.executors.base import Executor
from bench.registry import EXECUTORS, load_plugin
from bench.runner import Cell, RunOptions, run_cell


def _init_worker(plugins: list[str], threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    for plugin in plugins:
        load_plugin(plugin)


@EXECUTORS.register("local")
class LocalExecutor(Executor):
    """Sequential in-process execution, or a pool of spawned processes when jobs > 1."""

    name = "local"

    def run(self, cells: list[Cell], options: RunOptions, progress: Any = None) -> list[dict[str, Any]]:
        if self.jobs == 1:
            return [run_cell(cell, options, progress(cell) if progress else None) for cell in cells]
        threads = max(1, (multiprocessing.cpu_count() or 1) // self.jobs)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=self.jobs, mp_context=context, initializer=_init_worker,
            initargs=(list(options.plugins), threads),
        ) as pool:
            futures = [pool.submit(run_cell, cell, options) for cell in cells]
            return [future.result() for future in futures]
