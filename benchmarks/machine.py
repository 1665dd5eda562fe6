"""One header for every benchmark: the machine, the load on it, the libraries and the commit."""

from __future__ import annotations

import os
import platform

import torch

from bench.provenance import git_commit


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "unknown CPU"


def describe(device: torch.device | str = "cpu") -> str:
    """Lines to print above a benchmark's figures, so that they can be compared and reproduced."""
    device = torch.device(device)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    lines = [
        f"CPU: {cpu_model()}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}, "
        f"load average {load}",
        f"torch {torch.__version__}, python {platform.python_version()}, commit {git_commit() or 'unknown'}",
    ]
    if device.type == "cuda":
        lines.append(f"GPU: {torch.cuda.get_device_name(device)}")
    return "\n".join(lines)
