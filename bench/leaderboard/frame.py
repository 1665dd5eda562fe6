"""The leaderboard as one long pandas frame (``leaderboard.csv``): a row per table, block, method and metric.

Blocks: ``reproduced`` (methods), ``oracle`` and ``floor`` (reference rows, never ranked), ``paired``
(each row's difference to the baseline: mean, 95% interval, what was resampled) and ``reported``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from bench.leaderboard.metric_info import higher_is_better, metric_sort_key
from bench.leaderboard.model import ROLES, Table, dims
from bench.leaderboard.paired import Difference

CSV_COLUMNS = (
    "task",
    "task_kind",
    "dataset",
    "profile",
    "protocol_key",
    "training_key",
    "block",
    "method",
    "metric",
    "higher_is_better",
    "mean",
    "std",
    "n_seeds",
    "seeds",
    "values",
    "image_count",
    "status",
    "best",
    "resolution",
    "source",
    "notes",
    "protocol",
    # paired-difference rows (block "paired"): mean is the difference to the baseline
    "baseline",
    "ci_low",
    "ci_high",
    "significant",
    "resampled",
)


def _resampled(difference: Difference) -> str:
    if difference.interval is None:
        return "none (set-level value)" if difference.set_difference is not None else ""
    return "images" if len(difference.seeds) == 1 else "seeds, then images within each"


def _paired_rows(table: Table, base: dict[str, Any], protocol: str, resolution: str) -> list[dict[str, Any]]:
    rows = []
    for row, _, differences in table.difference_rows():
        for column in table.columns:
            difference = differences[column.metric].difference
            interval = difference.interval
            rows.append(
                {
                    **base,
                    "block": "paired",
                    "method": row.method,
                    "metric": column.metric,
                    "higher_is_better": column.higher_is_better,
                    "mean": difference.mean,
                    "std": None,
                    "n_seeds": len(difference.seeds),
                    "seeds": " ".join(map(str, difference.seeds)),
                    "values": " ".join(repr(v) for v in difference.seed_differences),
                    "image_count": difference.image_count,
                    "status": "ok" if difference.mean is not None else "n/a",
                    "best": False,
                    "resolution": resolution,
                    "source": "",
                    "notes": difference.reason,
                    "protocol": protocol,
                    "baseline": table.baseline,
                    "ci_low": interval.low if interval else None,
                    "ci_high": interval.high if interval else None,
                    "significant": interval.significant if interval else None,
                    "resampled": _resampled(difference),
                }
            )
    return rows


def leaderboard_frame(tables: Sequence[Table]) -> pd.DataFrame:
    """One row per (table, method, metric): reproduced entries and reported numbers (long format)."""
    rows = []
    for table in tables:
        base = {
            "task": table.task,
            "task_kind": table.task_kind,
            "dataset": table.dataset,
            "profile": table.profile,
            "protocol_key": table.protocol_key,
            "training_key": table.training_key,
        }
        protocol = json.dumps(table.protocol, sort_keys=True)
        resolution = dims(table.protocol.get("resolution", ""))
        for row in table.rows:
            for column in table.columns:
                entry = row.entries[column.metric]
                rows.append(
                    {
                        **base,
                        "block": row.role if row.role in ROLES else "reproduced",
                        "method": row.method,
                        "metric": column.metric,
                        "higher_is_better": column.higher_is_better,
                        "mean": entry.mean,
                        "std": entry.std,
                        "n_seeds": len(entry.values),
                        "seeds": " ".join(map(str, entry.seeds)),
                        "values": " ".join(repr(v) for v in entry.values),
                        "image_count": column.image_count,
                        "status": entry.status,
                        "best": entry.best,
                        "resolution": resolution,
                        "source": "",
                        "notes": " | ".join(table.footnotes[m - 1] for m in (*row.notes, *entry.notes)),
                        "protocol": protocol,
                    }
                )
        rows += _paired_rows(table, base, protocol, resolution)
        for index, entry in enumerate(table.reported):
            for metric, value in sorted(entry.metrics.items(), key=lambda kv: metric_sort_key(kv[0])):
                rows.append(
                    {
                        **base,
                        "block": "reported",
                        "method": entry.method,
                        "metric": metric,
                        "higher_is_better": higher_is_better(metric),
                        "mean": value,
                        "std": None,
                        "n_seeds": None,
                        "seeds": "",
                        "values": "",
                        "image_count": None,
                        "status": "reported",
                        "best": False,
                        "resolution": dims(entry.resolution),
                        "source": entry.metric_sources.get(metric, entry.source),
                        "notes": " | ".join(table.footnotes[m - 1] for m in table.reported_notes[index]),
                        "protocol": entry.protocol,
                    }
                )
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS)).astype({"n_seeds": "Int64", "image_count": "Int64"})

