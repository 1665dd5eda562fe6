"""The leaderboard as one long pandas frame (``leaderboard.csv``): a row per table, block, method and metric."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pandas as pd

from bench.leaderboard.metric_info import higher_is_better, metric_sort_key
from bench.leaderboard.model import Table, dims

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
)


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
                        "block": "reproduced",
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

