"""Per-warper options: ``model.methods.<warper>`` read over documented defaults, checked by key and type.

The baselines size their small networks from a handful of positive integers (hidden widths, head
counts ...).  A typo in a task YAML or ``--set`` must fail loudly, naming the key and what it expects,
rather than silently falling back to a default.
"""

from __future__ import annotations

from collections.abc import Mapping

from bench.config import ConfigError
from bench.warp import WarpSetup


def positive_int_options(
    setup: WarpSetup, warper: str, defaults: Mapping[str, int | None]
) -> dict[str, int | None]:
    """``setup.options`` merged over ``defaults``; every value must be a positive int (or None where
    the default is None, meaning "derived from the feature width")."""
    unknown = sorted(set(setup.options) - set(defaults))
    if unknown:
        valid = ", ".join(f"{k} (default {v})" for k, v in defaults.items()) or "(none)"
        raise ConfigError(
            f"model.methods.{warper}: unknown option(s) {', '.join(unknown)}; valid options: {valid}"
        )
    resolved = dict(defaults)
    for key, value in setup.options.items():
        if value is None and defaults[key] is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"model.methods.{warper}.{key}: expected a positive integer, got {value!r}")
        resolved[key] = value
    return resolved
