"""What the tables need to know of a metric: its direction, kind, label and column order."""

from __future__ import annotations

from typing import Any

from bench.registry import METRICS, RegistryError

# Used for metrics the registry does not (yet) know: name -> higher_is_better.
FALLBACK_DIRECTIONS = {"ssim": True, "psnr": True, "l1": False, "lpips": False, "fid": False, "kid": False}
FALLBACK_DISTRIBUTION = frozenset({"fid", "kid"})
METRIC_ORDER = ("ssim", "psnr", "l1", "lpips", "fid", "kid")
METRIC_LABELS = {"ssim": "SSIM", "psnr": "PSNR", "l1": "L1", "lpips": "LPIPS", "fid": "FID", "kid": "KID"}


def _registered_metric(name: str) -> Any | None:
    try:
        return METRICS.get(name)
    except (RegistryError, ImportError):
        return None


def higher_is_better(name: str) -> bool | None:
    """The metric's direction: from the registry when registered, else the fallback table (or None)."""
    metric = _registered_metric(name)
    if metric is not None:
        return bool(metric.higher_is_better)
    return FALLBACK_DIRECTIONS.get(name)


def is_distribution_metric(name: str) -> bool:
    """True for set-level metrics (FID, KID) whose value depends on the image count."""
    metric = _registered_metric(name)
    if metric is not None:
        return getattr(metric, "kind", "paired") == "distribution"
    return name in FALLBACK_DISTRIBUTION


def metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name)


def metric_sort_key(name: str) -> tuple[int, str]:
    return (METRIC_ORDER.index(name) if name in METRIC_ORDER else len(METRIC_ORDER), name)


def metric_header(name: str) -> str:
    """The column header of a metric with its direction, e.g. ``FID ↓``."""
    return metric_label(name) + {True: " ↑", False: " ↓", None: ""}[higher_is_better(name)]

