"""The task options every training benchmark takes, and the task's config and data from them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.config import TaskConfig
from bench.registry import DATASETS
from bench.taskspec import load_task


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    """--task, --profile, --set (repeatable) and --data-root."""
    parser.add_argument("--task", default="pose_synthetic")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--data-root", default="datasets", help="where the synthetic data is (generated if absent)")


def prepare_task(args: argparse.Namespace, extra: list[str] | None = None) -> tuple[TaskConfig, Any, Path]:
    """(config, dataset spec, prepared data root) for the parsed task options, plus ``extra`` overrides."""
    cfg = load_task(args.task, args.profile, [*args.set, *(extra or [])])
    spec = DATASETS.get(cfg.dataset.name)
    return cfg, spec, spec.prepare(cfg, Path(args.data_root))
