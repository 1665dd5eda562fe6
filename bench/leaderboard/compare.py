"""Paired comparisons outside the leaderboard: two methods of one results directory, or the same
cells in two results directories (a plugin against GFLA; a rerun on another machine)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.leaderboard.metric_info import metric_sort_key
from bench.leaderboard.paired import (
    Difference,
    PerImageReader,
    metric_difference,
    pair_by_seed,
)
from bench.leaderboard.reading import GroupId, group_records, latest_per_cell, newest_per_seed


@dataclass(frozen=True)
class MetricComparison:
    """One metric of a comparison: both sides' mean over the paired seeds, and ``a - b``."""

    metric: str
    a_mean: float | None
    b_mean: float | None
    difference: Difference


@dataclass(frozen=True)
class Comparison:
    """``a - b`` on the cells of one table (task, dataset, profile, protocol, training setup)."""

    group: GroupId
    a_label: str
    b_label: str
    seeds: tuple[int, ...]
    metrics: list[MetricComparison]

    @property
    def title(self) -> str:
        task, dataset, profile, protocol, _ = self.group
        where = f"{task} · {dataset or '–'} · profile {profile or '–'} · protocol {protocol}"
        return f"{where}: {self.a_label} − {self.b_label}"


def _mean_value(records: Sequence[dict], metric: str) -> float | None:
    values = [(r.get("metrics") or {}).get(metric, {}).get("value") for r in records]
    finite = [float(v) for v in values if isinstance(v, (int, float)) and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _compare(
    group: GroupId,
    labels: tuple[str, str],
    pairs: list[tuple[int, dict, dict]],
    readers: tuple[PerImageReader, PerImageReader],
) -> Comparison:
    names = {name for _, a, b in pairs for record in (a, b) for name in (record.get("metrics") or {})}
    metrics = []
    for metric in sorted(names, key=metric_sort_key):
        difference = metric_difference(pairs, metric, *readers)
        a_mean = _mean_value([a for _, a, _ in pairs], metric)
        b_mean = _mean_value([b for _, _, b in pairs], metric)
        metrics.append(MetricComparison(metric, a_mean, b_mean, difference))
    return Comparison(group, *labels, tuple(seed for seed, _, _ in pairs), metrics)


def compare_methods(records: Sequence[dict], results_dir: Path, a: str, b: str) -> list[Comparison]:
    """``a - b`` in every table of ``records`` that has both methods, paired by seed."""
    reader = PerImageReader(results_dir)
    out = []
    for group, members in group_records(latest_per_cell(records)).items():
        side_a = newest_per_seed([r for r in members if r["cell"]["method"] == a])
        side_b = newest_per_seed([r for r in members if r["cell"]["method"] == b])
        pairs = pair_by_seed(side_a, side_b)
        if pairs:
            out.append(_compare(group, (a, b), pairs, (reader, reader)))
    return out


def compare_record_sets(
    records_a: Sequence[dict],
    dir_a: Path,
    records_b: Sequence[dict],
    dir_b: Path,
    methods: Sequence[str] = (),
) -> list[Comparison]:
    """Per table of ``records_a`` and method: its cells against the cells of the same key in
    ``records_b`` (the same task, config, method and seed run elsewhere)."""
    others = {r["cell"]["key"]: r for r in latest_per_cell(records_b) if r["status"] == "ok"}
    readers = (PerImageReader(dir_a), PerImageReader(dir_b))
    labels = (str(dir_a), str(dir_b))
    out = []
    for group, members in group_records(latest_per_cell(records_a)).items():
        for method in sorted({r["cell"]["method"] for r in members}):
            if methods and method not in methods:
                continue
            pairs = [
                (r["cell"]["seed"], r, others[r["cell"]["key"]])
                for r in newest_per_seed([r for r in members if r["cell"]["method"] == method])
                if r["status"] == "ok" and r["cell"]["key"] in others
            ]
            if pairs:
                out.append(_compare(group, (f"{method} in {labels[0]}", f"in {labels[1]}"), pairs, readers))
    return out
