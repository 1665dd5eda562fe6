"""The table model: per group of records, one row per method with mean ± std per metric column,
best entries, footnotes, protocol details, the published block, the oracle and floor rows (shown
apart, never ranked) and every row's paired difference to a baseline method."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.config import VIDEO_KINDS
from bench.leaderboard.metric_info import (
    higher_is_better,
    is_distribution_metric,
    metric_header,
    metric_label,
    metric_sort_key,
)
from bench.leaderboard.paired import (
    SET_LEVEL_NOTE,
    SPREAD_CAVEAT,
    Difference,
    PerImageReader,
    metric_difference,
    pair_by_seed,
    resampling_text,
)
from bench.leaderboard.reading import (
    GroupId,
    group_records,
    latest_per_cell,
    newest_per_seed,
    training_differences,
)
from bench.leaderboard.reported import ReportedEntry
from bench.records import RECORDS_FILE

# Metric protocol fields that describe this machine's cache rather than the measurement.
VOLATILE_METRIC_FIELDS = frozenset({"reference_cache", "reference_cache_reused"})
STD_NOTE = "mean ± sample std (ddof 1) over n seeds; best per column in bold"
DEFAULT_BASELINE = "none"
ROLES = ("oracle", "floor")  # non-method rows (record key "role"): shown apart, never ranked
ROLE_BLOCK_TITLE = "Oracle and floor rows (references, not ranked with the methods)"
SIGNIFICANT_MARK = "*"


class Footnotes:
    """Numbered footnotes of one table; an identical text gets the same number."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def add(self, text: str) -> int:
        if text not in self.texts:
            self.texts.append(text)
        return self.texts.index(text) + 1


@dataclass
class Column:
    """One metric column."""

    metric: str
    label: str  # e.g. "FID ↓ (200 img)"
    higher_is_better: bool | None
    image_count: int | None  # distribution metrics: the image count all its values share
    ranked: bool  # False when the direction is unknown or image counts differ
    places: int = 4  # decimals of its values (and of their paired differences)

    @property
    def difference_label(self) -> str:
        """The header of its paired-difference column, e.g. ``Δ SSIM ↑``."""
        return "Δ " + metric_header(self.metric)


@dataclass
class Entry:
    """One method's value in one column."""

    text: str  # "0.7100 ± 0.0100", "n/a", "failed" or "–"
    mean: float | None = None
    std: float | None = None
    values: tuple[float, ...] = ()
    seeds: tuple[int, ...] = ()
    image_counts: tuple[int, ...] = ()
    status: str = "ok"  # ok, partial (some seeds n/a), n/a, failed, missing
    best: bool = False
    notes: tuple[int, ...] = ()


@dataclass
class Row:
    """One method: its newest record per seed and its entries per metric."""

    method: str
    records: list[dict]
    entries: dict[str, Entry]
    ok_seeds: tuple[int, ...]
    failed_seeds: tuple[int, ...]
    notes: tuple[int, ...] = ()
    role: str = "method"  # or one of ROLES

    @property
    def label(self) -> str:
        """The method, with its role when it is not a method: ``oracle_flow (oracle)``."""
        return f"{self.method} ({self.role})" if self.role in ROLES else self.method

    @property
    def seeds_text(self) -> str:
        n = str(len(self.ok_seeds))
        return f"{n} (+{len(self.failed_seeds)} failed)" if self.failed_seeds else n


@dataclass
class DifferenceEntry:
    """One row's paired difference to the baseline in one metric, as shown."""

    text: str  # "+0.0100 [+0.0050, +0.0150] *", "+1.20 (no CI)" or "n/a"
    difference: Difference

    @property
    def significant(self) -> bool:
        return self.difference.interval is not None and self.difference.interval.significant


@dataclass
class Table:
    """A leaderboard for one task, dataset, profile and evaluation protocol."""

    task: str
    task_kind: str
    dataset: str
    profile: str
    protocol: dict[str, Any]
    protocol_key: str
    training_key: str
    # config keys (name=value) in which this table's training differs from the other tables of the
    # same task, dataset, profile and protocol; empty when there is no such other table
    training_differences: tuple[str, ...]
    overrides: tuple[str, ...]  # the cells' --set overrides of the profile (eval.* left out)
    columns: list[Column]
    rows: list[Row]
    footnotes: list[str]
    metric_protocols: dict[str, dict[str, list[str]]]
    reported: list[ReportedEntry] = field(default_factory=list)
    reported_columns: list[str] = field(default_factory=list)
    reported_notes: dict[int, tuple[int, ...]] = field(default_factory=dict)  # entry index -> footnotes
    baseline: str = DEFAULT_BASELINE
    # row method -> metric -> its paired difference to the baseline (every row but the baseline's)
    differences: dict[str, dict[str, DifferenceEntry]] = field(default_factory=dict)
    paired_seeds: dict[str, tuple[int, ...]] = field(default_factory=dict)  # row method -> seeds paired

    @property
    def method_rows(self) -> list[Row]:
        """The ranked rows: methods."""
        return [row for row in self.rows if row.role not in ROLES]

    @property
    def role_rows(self) -> list[Row]:
        """Oracle and floor rows, in that order: shown in their own block, never ranked."""
        return sorted((row for row in self.rows if row.role in ROLES), key=lambda row: ROLES.index(row.role))

    def difference_rows(self) -> list[tuple[Row, str, dict[str, DifferenceEntry]]]:
        """(row, its number of paired seeds, its differences) for the methods, then oracle and floor rows."""
        return [
            (row, str(len(self.paired_seeds[row.method])), self.differences[row.method])
            for row in (*self.method_rows, *self.role_rows)
            if row.method in self.differences
        ]

    def difference_title(self) -> str:
        return f"Paired difference to {self.baseline} (Δ = row − {self.baseline}, mean per test image, 95% CI)"

    def difference_notes(self) -> list[str]:
        """What the paired table shows and resamples, what it cannot claim, and why entries are n/a."""
        if not self.differences:
            return [f"No paired differences: {self.baseline!r} has no successful record in this table."]
        entries = [entry for row in self.differences.values() for entry in row.values()]
        seed_counts = {len(e.difference.seeds) for e in entries if e.difference.interval is not None}
        notes = [
            f"Δ per test image between cells of the same seed (same images, same training batches and backbone "
            f"weights); {SIGNIFICANT_MARK} = the 95% interval excludes 0."
            + (f" Resampled: {resampling_text(seed_counts, self.task_kind in VIDEO_KINDS)}." if seed_counts else ""),
            SPREAD_CAVEAT,
        ]
        distribution = [c for c in self.columns if is_distribution_metric(c.metric)]
        if distribution:
            labels = " and ".join(metric_label(c.metric) for c in distribution)
            notes.append(f"{labels}: {SET_LEVEL_NOTE}")
        reasons: dict[str, tuple[dict[str, None], dict[str, None]]] = {}  # reason -> (rows, metrics), ordered
        for method, row in self.differences.items():
            for metric, entry in row.items():
                if entry.difference.reason and entry.difference.mean is None:
                    rows, metrics = reasons.setdefault(entry.difference.reason, ({}, {}))
                    rows[method], metrics[metric_label(metric)] = None, None
        notes += [f"n/a in {', '.join(metrics)} of {', '.join(rows)}: {reason}."
                  for reason, (rows, metrics) in reasons.items()]
        return notes

    def setup_notes(self, code: Callable[[str], str] = str) -> list[tuple[str, tuple[str, ...]]]:
        """(label, config items) lines under the title: the profile overrides and, where another
        table of this task and protocol was trained differently, the keys that differ.  ``code``
        formats the profile name inside the label (Markdown: as code)."""
        notes = []
        if self.overrides:
            notes.append(("Profile overrides", self.overrides))
        if self.training_differences:
            notes.append((f"Trained differently from the other {code(self.profile)} tables of this task and protocol",
                          self.training_differences))
        return notes

    @property
    def title(self) -> str:
        dataset = self.dataset or "dataset unknown"
        title = f"{self.task} · {dataset} · profile {self.profile or '–'} · protocol {self.protocol_key}"
        return f"{title} · training {self.training_key}" if self.training_differences else title

    def protocol_items(self) -> list[tuple[str, str]]:
        """The protocol as (label, value) pairs, known keys first in a fixed order."""
        items = protocol_items(self.protocol) + _weight_sources(self.metric_protocols)
        return items or [("protocol", "not recorded (no cell reached evaluation)")]

    def reported_protocols(self) -> list[tuple[str, str]]:
        """(protocol name, description) of the reported entries, in first-use order."""
        seen: dict[str, str] = {}
        for entry in self.reported:
            seen.setdefault(entry.protocol, entry.protocol_text)
        return list(seen.items())


def dims(value: Any) -> str:
    return "×".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def protocol_items(protocol: dict[str, Any]) -> list[tuple[str, str]]:
    """Readable (label, value) pairs of a protocol dict; unknown keys follow, sorted."""
    p = dict(protocol)
    items: list[tuple[str, str]] = []

    def take(label: str, *keys: str, join: str = " ") -> None:
        values = [p.pop(key) for key in keys if key in p]
        if values:
            items.append((label, join.join(dims(v) for v in values if v is not None) or "–"))

    take("resolution", "resolution")
    take("resize filter", "resize_filter")
    take("format", "output_format")
    if "fid_reference" in p or "fid_reference_size" in p:
        ref, size = p.pop("fid_reference", "–"), p.pop("fid_reference_size", None)
        items.append(("FID reference", f"{ref} ({size} images)" if size is not None else f"{ref} (whole split)"))
    take("Inception", "fid_inception", "fid_inception_weights")
    take("LPIPS", "lpips_net", "lpips_version", join=" v")
    take("SSIM", "ssim_variant")
    take("perceptual backbone", "perceptual_backbone")
    take("generated images", "num_generated")
    take("checkpoint", "checkpoint_selection")
    if "dataset_hash" in p:
        items.append(("data hash", str(p.pop("dataset_hash"))[:12]))
    p.pop("dataset", None)  # already in the table title
    items.extend((key.replace("_", " "), dims(p[key])) for key in sorted(p))
    return items


def _is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _shorten_hash(text: str) -> str:
    """A sha256 hex digest shortened to 12 characters (other text unchanged)."""
    is_digest = len(text) == 64 and all(c in "0123456789abcdef" for c in text)
    return text[:12] if is_digest else text


def _weight_sources(metric_protocols: dict[str, dict[str, list[str]]]) -> list[tuple[str, str]]:
    """Where the Inception and LPIPS weights came from, as recorded by the metrics."""
    items = []
    for label, metrics, file_key, origin_key, sha_key in (
        ("Inception weights", ("fid", "kid"), "weights_file", "weights_origin", "weights_sha256"),
        ("LPIPS weights", ("lpips",), "trunk_file", "trunk_origin", "trunk_sha256"),
    ):
        fields = next((metric_protocols[m] for m in metrics if file_key in metric_protocols.get(m, {})), None)
        if fields is None:
            continue
        origin = f" from {' / '.join(fields[origin_key])}" if origin_key in fields else ""
        sha = f" (sha256 {' / '.join(fields[sha_key])})" if sha_key in fields else ""
        items.append((label, " / ".join(fields[file_key]) + origin + sha))
    return items


def decimals(means: Sequence[float]) -> int:
    """Decimals for a column: 4 below 1, 3 below 100, 2 below 1000, else 1."""
    largest = max((abs(m) for m in means), default=0.0)
    return 4 if largest < 1 else 3 if largest < 100 else 2 if largest < 1000 else 1


def _first_line(text: Any, limit: int = 200) -> str:
    line = str(text or "").strip().splitlines()[0] if str(text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _failure_notes(method: str, failed: list[dict]) -> list[str]:
    """One note per distinct error of a method, naming the seeds it hit."""
    seeds_by_error: dict[str, list[int]] = {}
    for record in failed:
        error = record.get("error") or {}
        phase = f" in {error['phase']}" if error.get("phase") else ""
        text = f"{phase}: {error.get('type') or 'error'}: {_first_line(error.get('message'))}"
        seeds_by_error.setdefault(text, []).append(record["cell"]["seed"])
    return [
        f"{method} seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))} failed{text}"
        for text, seeds in seeds_by_error.items()
    ]


def _build_entry(metric: str, ok: list[dict], notes: Footnotes, method: str) -> Entry:
    values, seeds, counts, reasons = [], [], [], {}
    for record in ok:
        result = record.get("metrics", {}).get(metric)
        seed = record["cell"]["seed"]
        if result is None:
            continue
        if not _is_finite(result.get("value")):
            default = "no value recorded" if result.get("value") is None else f"non-finite value {result['value']}"
            reasons[seed] = _first_line(result.get("unavailable") or default, 300)
            continue
        values.append(float(result["value"]))
        seeds.append(seed)
        if result.get("count") is not None:
            counts.append(int(result["count"]))
    marks = tuple(
        notes.add(f"{metric_label(metric)} unavailable: {reason}") for reason in sorted(set(reasons.values()))
    )
    if not values:
        return Entry(text="n/a" if reasons else "–", status="n/a" if reasons else "missing", notes=marks)
    if reasons:
        missing = ", ".join(str(seed) for seed in sorted(reasons))
        marks = (
            notes.add(f"{method}: {metric_label(metric)} n/a for seed {missing}; mean over the rest"),
            *marks,
        )
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return Entry(
        text="",
        mean=mean,
        std=std,
        values=tuple(values),
        seeds=tuple(seeds),
        image_counts=tuple(counts),
        status="partial" if reasons else "ok",
        notes=marks,
    )


def _format_column(column: Column, entries: list[Entry], unranked: Sequence[Entry] = ()) -> None:
    """Fill the entries' text, decide the column's image count, ranking and best entries
    (``unranked`` entries, the oracle and floor rows', get their text only)."""
    numeric = [e for e in entries if e.mean is not None]
    places = decimals([e.mean for e in numeric])
    column.places = places
    counts = {c for e in numeric for c in e.image_counts}
    if is_distribution_metric(column.metric) and counts:
        if len(counts) == 1:
            column.image_count = counts.pop()
            column.label += f" ({column.image_count} img)"
        else:
            column.ranked = False
            column.label += " (image counts differ: not ranked)"
    for entry in [*numeric, *(e for e in unranked if e.mean is not None)]:
        entry.text = f"{entry.mean:.{places}f}"
        if entry.std is not None:
            entry.text += f" ± {entry.std:.{places}f}"
        if not column.ranked and entry.image_counts:
            entry.text += f" ({'/'.join(str(c) for c in sorted(set(entry.image_counts)))} img)"
    if column.ranked and numeric:
        rounded = [round(e.mean, places) for e in numeric]
        best = max(rounded) if column.higher_is_better else min(rounded)
        for entry, value in zip(numeric, rounded):
            entry.best = value == best


def _columns_for(records: list[dict]) -> list[str]:
    names = {name for record in records for name in record.get("metrics", {})}
    for record in records:
        configured = (record.get("config") or {}).get("eval", {}).get("metrics", [])
        names.update(name for name in configured if isinstance(name, str))
    return sorted(names, key=metric_sort_key)


def _metric_protocols(records: list[dict], metrics: list[str]) -> dict[str, dict[str, list[str]]]:
    """Per metric, the distinct values of every key of its own protocol dict."""
    out: dict[str, dict[str, list[str]]] = {}
    for metric in metrics:
        merged: dict[str, set[str]] = {}
        for record in records:
            result = record.get("metrics", {}).get(metric) or {}
            for key, value in (result.get("protocol") or {}).items():
                if key not in VOLATILE_METRIC_FIELDS:
                    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
                    merged.setdefault(key, set()).add(_shorten_hash(text))
        if merged:
            out[metric] = {key: sorted(values) for key, values in sorted(merged.items())}
    return out


def _row_role(records: list[dict]) -> str:
    """A row's role: the ``role`` its records carry (absent: a method)."""
    roles = {record.get("role") or "method" for record in records}
    if len(roles) > 1:
        raise ValueError(f"records of {records[0]['cell']['method']!r} disagree on their role: {sorted(roles)}")
    return roles.pop()


def difference_text(difference: Difference, places: int) -> str:
    if difference.interval is not None:
        low, high = difference.interval.low, difference.interval.high
        mark = f" {SIGNIFICANT_MARK}" if difference.interval.significant else ""
        return f"{difference.interval.mean:+.{places}f} [{low:+.{places}f}, {high:+.{places}f}]{mark}"
    if difference.set_difference is not None:
        return f"{difference.set_difference:+.{places}f} (no CI)"
    return "n/a"


def _baseline_row(rows: list[Row], baseline: str) -> Row | None:
    return next((row for row in rows if row.method == baseline and row.ok_seeds), None)


def _paired_seeds(rows: list[Row], baseline: str) -> dict[str, tuple[int, ...]]:
    base = _baseline_row(rows, baseline)
    if base is None:
        return {}
    return {row.method: tuple(seed for seed, _, _ in pair_by_seed(row.records, base.records))
            for row in rows if row is not base}


def _differences(
    rows: list[Row], columns: list[Column], baseline: str, reader: PerImageReader
) -> dict[str, dict[str, DifferenceEntry]]:
    """Every row's paired difference to the baseline row, per column (empty without a baseline row)."""
    base = _baseline_row(rows, baseline)
    if base is None:
        return {}
    out: dict[str, dict[str, DifferenceEntry]] = {}
    for row in rows:
        if row is base:
            continue
        pairs = pair_by_seed(row.records, base.records)
        out[row.method] = {}
        for column in columns:
            difference = metric_difference(pairs, column.metric, reader, reader)
            out[row.method][column.metric] = DifferenceEntry(difference_text(difference, column.places), difference)
    return out


def _new_column(metric: str) -> Column:
    direction = higher_is_better(metric)
    return Column(
        metric=metric,
        label=metric_header(metric),
        higher_is_better=direction,
        image_count=None,
        ranked=direction is not None,
    )


def _build_table(
    gid: GroupId,
    records: list[dict],
    reported: list[ReportedEntry],
    differences: tuple[str, ...] = (),
    baseline: str = DEFAULT_BASELINE,
    reader: PerImageReader | None = None,
) -> Table:
    task, dataset, profile, key, training = gid
    notes = Footnotes()
    ok_records = [r for r in records if r["status"] == "ok"]
    protocol = (ok_records or records)[0].get("protocol", {})
    metrics = _columns_for(records)
    columns = [_new_column(metric) for metric in metrics]
    rows = []
    for method in sorted({r["cell"]["method"] for r in records}):
        chosen = newest_per_seed([r for r in records if r["cell"]["method"] == method])
        ok = [r for r in chosen if r["status"] == "ok"]
        failed = [r for r in chosen if r["status"] == "failed"]
        row_notes = tuple(notes.add(text) for text in _failure_notes(method, failed))
        if ok:
            entries = {m: _build_entry(m, ok, notes, method) for m in metrics}
        else:
            entries = {m: Entry(text="failed", status="failed") for m in metrics}  # the row has the note
        rows.append(
            Row(
                method=method,
                records=chosen,
                entries=entries,
                ok_seeds=tuple(r["cell"]["seed"] for r in ok),
                failed_seeds=tuple(r["cell"]["seed"] for r in failed),
                notes=row_notes,
                role=_row_role(chosen),
            )
        )
    for column in columns:
        _format_column(
            column,
            [row.entries[column.metric] for row in rows if row.role not in ROLES],
            [row.entries[column.metric] for row in rows if row.role in ROLES],
        )
    shown = [entry for entry in reported if entry.dataset == dataset]
    reported_notes = {
        index: (notes.add(f"{entry.method} ({entry.venue}): {entry.notes}"),) if entry.notes else ()
        for index, entry in enumerate(shown)
    }
    return Table(
        task=task,
        task_kind=(records[0]["cell"].get("task_kind") or (records[0].get("config") or {}).get("kind", "")),
        dataset=dataset,
        profile=profile,
        protocol=protocol,
        protocol_key=key,
        training_key=training,
        training_differences=differences,
        overrides=tuple(o for o in records[0]["cell"].get("overrides") or () if not o.startswith("eval.")),
        columns=columns,
        rows=rows,
        footnotes=notes.texts,
        metric_protocols=_metric_protocols(ok_records, metrics),
        reported=shown,
        reported_columns=sorted({m for e in shown for m in e.metrics}, key=metric_sort_key),
        reported_notes=reported_notes,
        baseline=baseline,
        differences=_differences(rows, columns, baseline, reader or PerImageReader(None)),
        paired_seeds=_paired_seeds(rows, baseline),
    )


def build_tables(
    records: Iterable[dict],
    reported: Sequence[ReportedEntry] | None = None,
    *,
    results_dir: Path | None = None,
    baseline: str = DEFAULT_BASELINE,
) -> list[Table]:
    """Leaderboard tables from records (newest per cell), with published rows for their datasets and
    paired differences to ``baseline`` (from the per-image files under ``results_dir``; without it,
    the paired statistics of per-image metrics are n/a)."""
    groups = group_records(latest_per_cell(records))
    differences = training_differences(groups)
    reader = PerImageReader(results_dir)
    return [
        _build_table(gid, group, list(reported or ()), differences[gid], baseline, reader)
        for gid, group in groups.items()
    ]


def summary_text(records: list[dict]) -> str:
    latest = latest_per_cell(records)
    failed = sum(r["status"] == "failed" for r in latest)
    return (
        f"Regenerated from {RECORDS_FILE}: {len(records)} records, {len(latest)} cells "
        f"({len(latest) - failed} ok, {failed} failed). Results under different evaluation protocols "
        "(image counts included) or training setups are in separate tables and never ranked together."
    )

