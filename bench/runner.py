"""Benchmark cells: expansion of (task x method x seed), and running one cell end to end.

A cell is the unit of work and of idempotence: it prepares and checks its data, trains its method,
generates the test outputs, computes the metrics and appends exactly one record.  A cell whose
newest record succeeded is skipped (``--force`` reruns it).  A failing cell records its error
(phase, type, message, traceback) and the run goes on with the other cells.  Under torchrun every
rank runs the cell, but only rank 0 takes its lock and appends its record (``bench.distributed``).

Floor rows (``bench.floors``) are cells too, one per task and floor, keyed by what their numbers
depend on; records of floors and oracles carry ``"role"`` (``"floor"``, ``"oracle"``).
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from bench import distributed
from bench.cell import CellFailure, execute_cell
from bench.config import TaskConfig, to_dict
from bench.floors import FloorNotApplicable, execute_floor, floors_for, is_floor
from bench.records import CellBusyError, RecordStore
from bench.registry import DATASETS, WARPERS, RegistryError
from bench.taskspec import load_task

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Cell:
    """One (task, method, seed) run under one profile and set of overrides."""

    task: str
    method: str
    seed: int
    profile: str
    overrides: tuple[str, ...] = ()

    def config(self) -> TaskConfig:
        cfg = load_task(self.task, self.profile, self.overrides)
        cfg.seeds = [self.seed]
        cfg.methods = [self.method]
        return cfg

    def key(self, cfg: TaskConfig | None = None) -> str:
        """Content key: the resolved configuration, method and seed (not the code version).  A floor's
        key holds only what its numbers depend on: the profile, dataset and eval config and the
        perceptual backbone (named in the protocol), so one floor serves every training setup."""
        cfg = cfg or self.config()
        config = to_dict(cfg)
        if is_floor(self.method):
            config = {"profile": config["profile"], "dataset": config["dataset"], "eval": config["eval"],
                      "vgg": config["model"]["vgg"]}
        payload = json.dumps(
            {"task": self.task, "method": self.method, "seed": self.seed, "config": config},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def fallback_key(self) -> str:
        """Key used for the record of a cell whose configuration does not even resolve."""
        payload = json.dumps([self.task, self.method, self.seed, self.profile, list(self.overrides)])
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def label(self) -> str:
        return f"{self.task}/{self.method}/seed{self.seed}"


@dataclass
class RunOptions:
    """Where things go and how cells run."""

    results_dir: Path = Path("results")
    work_dir: Path = Path("runs")
    data_root: Path = Path("datasets")
    weights_dir: Path | None = None
    force: bool = False
    device: str | None = None  # overrides train.device
    plugins: list[str] = field(default_factory=list)


def expand_cells(
    tasks: list[str], methods: list[str] | None, seeds: list[int] | None, profile: str, overrides: list[str]
) -> list[Cell]:
    """The grid: every task x method x seed (methods and seeds default to the task's own lists)."""
    cells = []
    for task in tasks:
        cfg = load_task(task, profile, overrides)
        for method in methods or cfg.methods:
            for seed in seeds if seeds is not None else cfg.seeds:
                cells.append(Cell(task, method, seed, profile, tuple(overrides)))
    return cells


def expand_floors(tasks: list[str], profile: str, overrides: list[str]) -> list[Cell]:
    """The floor cells of every task: one per floor of its kind (seed 0; they have no randomness)."""
    cells = []
    for task in tasks:
        kind = load_task(task, profile, overrides).kind
        cells += [Cell(task, name, 0, profile, tuple(overrides)) for name in floors_for(kind)]
    return cells


def role_of(method: str) -> str:
    """``"floor"``, a warper's declared role (``"oracle"``), or ``"method"`` (also for a broken plugin,
    whose cell then fails in its train phase, naming the plugin)."""
    if is_floor(method):
        return "floor"
    try:
        return getattr(WARPERS.get(method), "role", "method")
    except RegistryError:
        return "method"


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={requested!r} but CUDA is not available on this machine")
    return torch.device(requested)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextmanager
def claim_cell(store: RecordStore, key: str, force: bool) -> Iterator[None]:
    """Hold the cell's lock; CellBusyError if another runner holds it, or recorded it since this run
    listed the cells to do (so a cell is never run twice, at once or one after the other)."""
    with store.cell_lock(key):
        if not force and key in store.completed():
            raise CellBusyError(f"cell {key} was recorded by another runner meanwhile")
        yield


def run_cell(cell: Cell, options: RunOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Run one cell and append its record; returns the record (errors are recorded, not raised)."""
    from bench.provenance import environment

    store = RecordStore(options.results_dir)
    started = time.perf_counter()
    record: dict[str, Any] = {
        "schema": 1,
        "record_id": uuid.uuid4().hex,
        "created": _now(),
        "cell": {"task": cell.task, "method": cell.method, "seed": cell.seed, "profile": cell.profile,
                 "overrides": list(cell.overrides), "key": None},
        "status": "failed",
        "error": None,
        "config": None,
        "protocol": {},
        "metrics": {},
        "timings": {},
        "environment": {},
        "artifacts": {},
    }
    device = torch.device("cpu")
    per_image = None
    try:
        record["cell"]["key"] = cell.fallback_key()
        try:
            cfg = cell.config()
        except Exception as exc:
            raise CellFailure("config", exc) from exc
        key = cell.key(cfg)
        record["cell"].update(key=key, task_kind=cfg.kind, dataset=cfg.dataset.name)
        role = role_of(cell.method)
        if role != "method":
            record["role"] = role
        record["config"] = to_dict(cfg)
        if options.device:
            cfg.train.device = options.device
        device = distributed.rank_device(resolve_device(cfg.train.device))
        with distributed.main_decides(lambda: claim_cell(store, key, options.force)):
            outcome = (execute_floor(cfg, cell.method, key, options, device, progress) if is_floor(cell.method)
                       else execute_cell(cfg, cell.method, cell.seed, key, options, device, progress))
        per_image = outcome.pop("per_image", None)  # to its side file, not into the JSON line
        record.update(status="ok", **outcome)
    except CellBusyError as exc:  # another runner has it: not an outcome of this cell, so no record
        record.update(status="busy", error={"phase": "runner", "type": "CellBusyError", "message": str(exc)})
        return record
    except FloorNotApplicable as exc:  # e.g. the image-space oracle on data without ground truth: no record
        record.update(status="n/a", error={"phase": "floor", "type": "FloorNotApplicable", "message": str(exc)})
        return record
    except KeyboardInterrupt:
        raise
    except CellFailure as failure:
        record["error"] = {
            "phase": failure.phase,
            "type": type(failure.error).__name__,
            "message": str(failure.error),
            "traceback": "".join(traceback.format_exception(failure.error)),
        }
    except Exception as exc:  # a bug outside the phases still only fails this cell
        record["error"] = {
            "phase": "runner",
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": traceback.format_exc(),
        }
    record["timings"]["total_s"] = round(time.perf_counter() - started, 3)
    record["environment"] = environment(device)
    if distributed.is_main():
        store.append(record, per_image)
    return record


def check_data(dataset_name: str, root: Path, cfg: TaskConfig) -> list:
    """Every problem of a dataset directory, as ``bench.data.base.Problem`` objects."""
    spec = DATASETS.get(dataset_name)
    return spec.check(Path(root), cfg)
