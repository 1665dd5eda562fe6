"""SLURM executor: one cell per array task through submitit, with requeue on preemption.

Resource options come from the tasks' ``executor:`` mapping (profile-dependent) and are overridden
by ``--resource KEY=VALUE`` on the command line; they are submitit's parameter names
(``timeout_min``, ``slurm_partition``, ``cpus_per_task``, ``gpus_per_node``, ``mem_gb``,
``slurm_additional_parameters`` ...).  ``--jobs N`` caps how many array tasks run at once.

A preempted or timed-out cell is requeued (up to ``slurm_max_num_timeout`` times) and resumes from
its last checkpoint.  A job that dies without a result (cancelled, node failure) is recorded as a
failed cell by the submitting process, so the run never loses track of a cell.
"""

from __future__ import annotations

import traceback
import uuid
from pathlib import Path
from typing import Any

import yaml

from bench.executors.base import Executor
from bench.records import RecordStore
from bench.registry import EXECUTORS, load_plugin
from bench.runner import Cell, RunOptions, run_cell

DEFAULT_RESOURCES: dict[str, Any] = {"timeout_min": 24 * 60, "cpus_per_task": 2, "slurm_max_num_timeout": 30}


class CellJob:
    """The callable submitted per array task; ``checkpoint`` makes submitit requeue it on preemption."""

    def __init__(self, plugins: list[str]) -> None:
        self.plugins = plugins

    def __call__(self, cell: Cell, options: RunOptions) -> dict[str, Any]:
        for plugin in self.plugins:
            load_plugin(plugin)
        return run_cell(cell, options)

    def checkpoint(self, cell: Cell, options: RunOptions) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(CellJob(self.plugins), cell, options)


def _parse(value: str) -> Any:
    return yaml.safe_load(value) if isinstance(value, str) else value


@EXECUTORS.register("slurm")
class SlurmExecutor(Executor):
    """Submits the cells as one SLURM job array and waits for their records."""

    name = "slurm"

    def resources_for(self, cells: list[Cell]) -> dict[str, Any]:
        merged = dict(DEFAULT_RESOURCES)
        if cells:
            merged.update(cells[0].config().executor)
        merged.update({key: _parse(value) for key, value in self.resources.items()})
        merged["slurm_array_parallelism"] = self.jobs
        return merged

    def run(self, cells: list[Cell], options: RunOptions, progress: Any = None) -> list[dict[str, Any]]:
        if not cells:
            return []
        import submitit

        folder = Path(options.work_dir) / "slurm" / "%j"
        resources = self.resources_for(cells)
        # submitit takes the requeue limit when the executor is made, not as a job parameter
        requeues = resources.pop("slurm_max_num_timeout")
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=requeues)
        executor.update_parameters(**resources)
        jobs = executor.map_array(CellJob(list(options.plugins)), cells, [options] * len(cells))
        records = []
        for cell, job in zip(cells, jobs):
            try:
                records.append(job.result())
            except Exception as exc:  # the job died without writing its record
                records.append(self._lost_job_record(cell, job, exc, options))
        return records

    @staticmethod
    def _lost_job_record(cell: Cell, job: Any, exc: Exception, options: RunOptions) -> dict[str, Any]:
        record = {
            "schema": 1,
            "record_id": uuid.uuid4().hex,
            "cell": {"task": cell.task, "method": cell.method, "seed": cell.seed, "profile": cell.profile,
                     "overrides": list(cell.overrides), "key": cell.key()},
            "status": "failed",
            "error": {"phase": "executor", "type": type(exc).__name__,
                      "message": f"SLURM job {job.job_id} ended without a result: {exc}",
                      "traceback": traceback.format_exc()},
            "config": None, "protocol": {}, "metrics": {}, "timings": {}, "environment": {}, "artifacts": {},
        }
        RecordStore(options.results_dir).append(record)
        return record
