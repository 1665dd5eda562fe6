"""Name -> object registries for tasks, warpers, datasets, metrics and executors.

One small class serves every kind (as timm's `register_model` and lm-eval's registries do):
registration by decorator, a duplicate name is an error, built-ins cannot be shadowed, and an
unknown name fails with the known names and the closest match.  Plugins come from two places:

* entry points in the group ``warpbench.<kind>`` (e.g. ``warpbench.warpers``); the entry point's
  value is a module (or ``module:attr``) whose import registers the names.  Entry points are read
  lazily, so a plugin that fails to import only breaks the lookups that ask for it;
* ``--plugin module.or.path`` on the command line (:func:`load_plugin`), a dotted module name or
  a path to a ``.py`` file.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")

ENTRY_POINT_PREFIX = "warpbench."


class RegistryError(Exception):
    """Base class of registry errors."""


class DuplicateNameError(RegistryError):
    """A name is registered twice."""


class UnknownNameError(RegistryError, KeyError):
    """A lookup names nothing registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class PluginLoadError(RegistryError):
    """A plugin (entry point or --plugin module) failed to import."""


class Registry(Generic[T]):
    """A registry of one kind of component (``warper``, ``metric``, ...)."""

    def __init__(self, kind: str, builtin_modules: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.group = f"{ENTRY_POINT_PREFIX}{kind}s"
        self._items: dict[str, T] = {}
        self._origin: dict[str, str] = {}
        self._builtin_modules = builtin_modules
        self._builtins_loaded = False
        self._entry_points: dict[str, importlib.metadata.EntryPoint] | None = None
        self._lock = threading.RLock()

    # -- registration -------------------------------------------------------------------------
    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: register the decorated object under ``name`` (default: its ``__name__``)."""

        def decorator(obj: T) -> T:
            self.add(name or obj.__name__, obj)  # type: ignore[attr-defined]
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        """Register ``obj`` under ``name``; a name already taken is an error, whoever took it."""
        if not name or not isinstance(name, str) or any(c.isspace() for c in name):
            raise RegistryError(f"invalid {self.kind} name {name!r}: use a non-empty name without spaces")
        origin = getattr(obj, "__module__", None) or "<unknown>"
        with self._lock:
            if name in self._items:
                raise DuplicateNameError(
                    f"{self.kind} {name!r} is already registered by {self._origin[name]}; "
                    f"{origin} cannot register it again (built-ins cannot be shadowed, plugins must "
                    "pick a new name)"
                )
            self._items[name] = obj
            self._origin[name] = origin

    # -- discovery ----------------------------------------------------------------------------
    def _load_builtins(self) -> None:
        if self._builtins_loaded:
            return
        self._builtins_loaded = True
        for module in self._builtin_modules:
            importlib.import_module(module)

    def _discover_entry_points(self) -> dict[str, importlib.metadata.EntryPoint]:
        if self._entry_points is None:
            self._entry_points = {ep.name: ep for ep in importlib.metadata.entry_points(group=self.group)}
        return self._entry_points

    def _load_entry_point(self, name: str) -> None:
        ep = self._discover_entry_points()[name]
        try:
            ep.load()
        except Exception as exc:  # a broken plugin only fails the lookups that ask for it
            raise PluginLoadError(
                f"{self.kind} plugin {name!r} (entry point {ep.value!r} in group {self.group!r}) "
                f"failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        if name not in self._items:
            raise PluginLoadError(
                f"entry point {name!r} in group {self.group!r} was imported from {ep.value!r} "
                f"but registered no {self.kind} named {name!r}"
            )

    # -- lookup -------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        """Return the object registered as ``name``, loading built-ins and entry points on demand."""
        with self._lock:
            self._load_builtins()
            if name not in self._items and name in self._discover_entry_points():
                self._load_entry_point(name)
            if name in self._items:
                return self._items[name]
            known = self.names()
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{hint} Known {self.kind}s: {', '.join(known) or '(none)'}"
            )

    def names(self) -> list[str]:
        """Every known name: registered ones and entry points not yet imported."""
        with self._lock:
            self._load_builtins()
            return sorted(set(self._items) | set(self._discover_entry_points()))

    def origin(self, name: str) -> str:
        """The module that registered ``name`` (after it has been loaded)."""
        self.get(name)
        return self._origin[name]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> dict[str, Any]:
        """Load everything (entry points included) and return name -> object; broken plugins raise."""
        for name in self.names():
            self.get(name)
        return dict(self._items)


def load_plugin(spec: str) -> None:
    """Import a plugin given as a dotted module name or a path to a ``.py`` file (``--plugin``)."""
    path = Path(spec)
    try:
        if spec.endswith(".py") or path.is_file():
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {path}")
            module_name = f"warpbench_plugin_{path.stem}"
            loaded = sys.modules.get(module_name)
            if loaded is not None and Path(getattr(loaded, "__file__", "")).resolve() == path.resolve():
                return  # already imported: importing again would register its names twice
            module_spec = importlib.util.spec_from_file_location(module_name, path)
            if module_spec is None or module_spec.loader is None:
                raise ImportError(f"cannot import {path}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[module_name] = module
            module_spec.loader.exec_module(module)
        else:
            importlib.import_module(spec)
    except RegistryError:
        raise
    except Exception as exc:
        raise PluginLoadError(f"--plugin {spec!r} failed to import: {type(exc).__name__}: {exc}") from exc


TASKS: Registry[Any] = Registry("task", ("bench.taskspec",))
WARPERS: Registry[Any] = Registry("warper", ("bench.warpers.gfla",))
DATASETS: Registry[Any] = Registry("dataset", ("bench.data",))
METRICS: Registry[Any] = Registry("metric", ("bench.metrics",))
EXECUTORS: Registry[Any] = Registry("executor", ("bench.executors",))
