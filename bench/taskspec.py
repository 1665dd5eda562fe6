"""Task registry entries: every ``*.yaml`` in the installed ``bench.tasks`` package is a task.

A task is a declarative YAML file (dataset, resolution, structure encoding, metrics, schedule and
profiles); its registry name is the file stem.  Plugins may add tasks with
``TASKS.add(name, path_to_yaml)``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from bench.config import TaskConfig, load_task_config, read_yaml
from bench.registry import TASKS


def tasks_dir() -> Path:
    """The directory of the built-in task YAML files (installed as ``bench.tasks``)."""
    try:
        module = importlib.import_module("bench.tasks")
        return Path(next(iter(module.__path__)))
    except ModuleNotFoundError:  # running from a source checkout that is not installed
        return Path(__file__).resolve().parent.parent / "tasks"


def load_task(name: str, profile: str | None, overrides: list[str] | tuple[str, ...] = ()) -> TaskConfig:
    """Resolve task ``name`` with ``profile`` and ``--set`` overrides."""
    cfg = load_task_config(TASKS.get(name), profile, overrides)
    if cfg.name != name:
        cfg.name = name
    return cfg


def task_tags(name: str) -> list[str]:
    """The ``tags`` of a task YAML without resolving it (used to pick the default suite)."""
    return list(read_yaml(TASKS.get(name)).get("tags", []) or [])


def select_tasks(selection: list[str] | None) -> list[str]:
    """Task names for ``--tasks``: names as given, and a task kind (``pose_transfer``,
    ``face_animation``, ``view_synthesis``) stands for the embedded tasks of that kind.  No selection
    means the embedded suite.  An unknown entry fails with the closest task name."""
    tasks = {name: read_yaml(TASKS.get(name)) for name in TASKS.names()}  # each YAML read once
    kinds = {name: task.get("kind") for name, task in tasks.items() if "embedded" in (task.get("tags") or [])}
    if not selection:
        return list(kinds)
    chosen: list[str] = []
    for entry in selection:
        if entry in TASKS:
            names = [entry]
        else:
            names = [name for name, kind in kinds.items() if kind == entry]
            if not names:
                TASKS.get(entry)  # raises: unknown, with the known names and the closest match
        chosen += [name for name in names if name not in chosen]
    return chosen


for _path in sorted(tasks_dir().glob("*.yaml")):
    TASKS.add(_path.stem, _path)
