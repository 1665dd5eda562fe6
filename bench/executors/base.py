"""The executor interface: something that runs a list of cells and returns their records."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from bench.runner import Cell, RunOptions


class Executor(ABC):
    """Runs benchmark cells (each cell appends its own record to the results store)."""

    name: str = ""

    def __init__(self, jobs: int = 1, resources: dict[str, Any] | None = None) -> None:
        if jobs < 1:
            raise ValueError(f"--jobs must be at least 1, got {jobs}")
        self.jobs = jobs
        self.resources = dict(resources or {})

    @abstractmethod
    def run(self, cells: list[Cell], options: RunOptions, progress: Any = None) -> list[dict[str, Any]]:
        """Run every cell; return their records in the order of ``cells``."""
