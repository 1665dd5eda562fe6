"""Run several registered metrics on one set of generated images; one failing metric never hides the others."""

from __future__ import annotations

import torch

from bench.metrics.base import EvalContext, MetricResult
from bench.registry import METRICS


def evaluate(
    fake: torch.Tensor, real: torch.Tensor | None, names: list[str], ctx: EvalContext
) -> dict[str, MetricResult]:
    """Metric name -> result for uint8 (N, 3, H, W) ``fake`` (and ``real`` for paired metrics).

    Unknown names raise before anything is computed (with the known names).  A metric that fails
    gives an unavailable result carrying the exception, so the other metrics are still reported.
    """
    metrics = {name: METRICS.get(name)() for name in names}
    results: dict[str, MetricResult] = {}
    for name, metric in metrics.items():
        try:
            if metric.kind == "paired" and real is None:
                raise ValueError(f"{name} is a paired metric and needs the ground-truth images (real is None)")
            results[name] = metric.compute(fake, real if metric.kind == "paired" else None, ctx)
        except Exception as exc:  # reported in the result, never lost
            results[name] = MetricResult(value=None, unavailable=f"{type(exc).__name__}: {exc}")
    return results
