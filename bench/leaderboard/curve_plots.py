"""Learning-curve figures of one task for the HTML report: records -> an HTML fragment.

One figure per profile, one axis per curve metric (every metric the records hold, so a new entry of
:data:`bench.curves.CURVE_METRICS` gets its axis), one line per method (the mean over its seeds at
each step).  The x axis is the training step counted over both stages: stage 2 starts at the task's
``train.stage1_steps`` for every method (one-stage methods have no stage-1 points), marked by a
dashed line.  The figure is drawn with matplotlib's Agg canvas (no pyplot state) and embedded as a
base64 PNG without a timestamp, so the report regenerates byte for byte.
"""

from __future__ import annotations

import base64
import html
import io
from collections import defaultdict
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DIRECTIONS = {"ssim": "higher is better", "l1": "lower is better", "epe": "lower is better"}


def _curve_records(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Successful records with a learning curve, by profile."""
    by_profile: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record.get("status") == "ok" and (record.get("curves") or {}).get("stages"):
            by_profile[str(record["cell"].get("profile") or "")].append(record)
    return dict(sorted(by_profile.items()))


def _points(record: dict[str, Any], metric: str) -> dict[int, float]:
    """Global step -> value of one record's curve of ``metric`` (stage 2 after the stage-1 steps)."""
    offset = {"1": 0, "2": int(record["config"]["train"]["stage1_steps"])}
    points = {}
    for stage, curve in record["curves"]["stages"].items():
        for step, value in zip(curve["step"], curve["metrics"].get(metric, [])):
            if value is not None:
                points[offset[stage] + step] = value
    return points


def method_lines(records: list[dict[str, Any]], metric: str) -> dict[str, tuple[list[int], list[float], int]]:
    """Method -> (steps, mean over seeds at each step, number of seeds), for the methods with a curve of ``metric``."""
    per_method: dict[str, list[dict[int, float]]] = defaultdict(list)
    for record in records:
        per_method[record["cell"]["method"]].append(_points(record, metric))
    lines = {}
    for method in sorted(per_method):
        runs = [run for run in per_method[method] if run]
        if not runs:  # no curve of this metric (an EPE curve of a method without flow)
            continue
        steps = sorted({step for run in runs for step in run})
        means = [float(np.mean([run[step] for run in runs if step in run])) for step in steps]
        lines[method] = (steps, means, len(runs))
    return lines


def _figure(records: list[dict[str, Any]]) -> str:
    """The PNG of one profile's curves as a data URI."""
    metrics = sorted({name for r in records for curve in r["curves"]["stages"].values() for name in curve["metrics"]})
    figure = Figure(figsize=(4.2 * len(metrics) + 1.6, 3.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    colours = {method: f"C{index % 10}" for index, method in enumerate(sorted({r["cell"]["method"] for r in records}))}
    boundaries = sorted({int(r["config"]["train"]["stage1_steps"]) for r in records if "1" in r["curves"]["stages"]})
    for index, metric in enumerate(metrics):
        axis = figure.add_subplot(1, len(metrics), index + 1)
        for method, (steps, values, seeds) in method_lines(records, metric).items():
            label = method if seeds == 1 else f"{method} (mean of {seeds} seeds)"
            axis.plot(steps, values, marker=".", markersize=4, linewidth=1.3, color=colours[method], label=label)
        for boundary in boundaries:
            axis.axvline(boundary, color="0.6", linestyle="--", linewidth=0.8)
        direction = DIRECTIONS.get(metric)
        axis.set_title(f"{metric.upper()}" + (f" ({direction})" if direction else ""), fontsize=10)
        axis.set_xlabel("training step (stage 1, then stage 2 after the dashed line)", fontsize=8)
        axis.tick_params(labelsize=8)
        axis.grid(alpha=0.3)
    handles = {}  # every method once, from whichever axis has its line
    for axis in figure.axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    labels = sorted(handles)
    figure.legend([handles[label] for label in labels], labels, loc="outside right upper", fontsize=8, frameon=False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _subset_note(records: list[dict[str, Any]]) -> str:
    subsets = sorted({f"{len(r['curves']['subset']['indices'])} {r['curves']['subset']['unit']}" for r in records})
    everies = sorted({r["curves"]["every"] for r in records})
    return (f"Every {', '.join(map(str, everies))} steps of each stage and at its last step: the mean over a "
            f"fixed subset of {' or '.join(subsets)} (drawn per seed, the same for every method), "
            f"scored like the test metrics on the saved 8-bit images. Only observed: no checkpoint is chosen by it.")


def learning_curves_html(records: list[dict[str, Any]]) -> str:
    """The learning-curve section of one task's records ("" when none has a curve)."""
    parts = []
    for profile, chosen in _curve_records(records).items():
        heading = "Learning curves" + (f" <span class='tag'>profile {html.escape(profile)}</span>" if profile else "")
        parts.append(
            f"<h4>{heading}</h4><div class='protocol'>{html.escape(_subset_note(chosen))}</div>"
            f"<img class='curves' style='max-width: 100%' src='{_figure(chosen)}' "
            f"alt='learning curves, profile {html.escape(profile)}'>"
        )
    return "".join(parts)
