"""Leaderboards regenerated from the append-only records file, and nothing else.

``<results_dir>/records.jsonl`` holds one JSON record per finished cell attempt; the newest
record of a cell key wins.  Tables are built per task, dataset, profile, evaluation protocol
(a hash of the record's ``protocol`` dict, generated-image count included) and training setup
(a hash of the resolved dataset, model and training config), so numbers obtained under different
protocols, or trained under different budgets or losses (``--set train.stage2_steps=...``, an
edited profile), are never ranked or averaged together.  Each table lists methods as rows and
metrics as columns (mean ± sample std over seeds, best per column in bold); failures, metrics
that could not be computed and published numbers (a separate "reported" block, never ranked) are
marked with footnotes.  Rendering is deterministic: rebuilding from the same records file gives
the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.config import TaskConfig, read_yaml, to_dict
from bench.records import RECORDS_FILE, SCHEMA_VERSION, RecordsError, parse_records
from bench.registry import METRICS, RegistryError

REPORTED_FILE = Path(__file__).with_name("reported") / "published.yaml"

# Used for metrics the registry does not (yet) know: name -> higher_is_better.
FALLBACK_DIRECTIONS = {"ssim": True, "psnr": True, "l1": False, "lpips": False, "fid": False, "kid": False}
FALLBACK_DISTRIBUTION = frozenset({"fid", "kid"})
METRIC_ORDER = ("ssim", "psnr", "l1", "lpips", "fid", "kid")
METRIC_LABELS = {"ssim": "SSIM", "psnr": "PSNR", "l1": "L1", "lpips": "LPIPS", "fid": "FID", "kid": "KID"}
# Metric protocol fields that describe this machine's cache rather than the measurement.
VOLATILE_METRIC_FIELDS = frozenset({"reference_cache", "reference_cache_reused"})
STD_NOTE = "mean ± sample std (ddof 1) over n seeds; best per column in bold"


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------
def _check_record(record: Any, where: str) -> None:
    if not isinstance(record, dict):
        raise RecordsError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if record.get("schema") != SCHEMA_VERSION:
        raise RecordsError(f"{where}: expected 'schema': {SCHEMA_VERSION}, got {record.get('schema')!r}")
    cell = record.get("cell")
    if not isinstance(cell, dict):
        raise RecordsError(f"{where}: key 'cell' must be an object with task, dataset, method, seed, key")
    for key, kind in (("task", str), ("method", str), ("key", str), ("seed", int)):
        if not isinstance(cell.get(key), kind):
            raise RecordsError(f"{where}: key 'cell.{key}' must be a {kind.__name__}, got {cell.get(key)!r}")
    if record.get("status") not in ("ok", "failed"):
        raise RecordsError(f"{where}: key 'status' must be 'ok' or 'failed', got {record.get('status')!r}")
    if record["status"] == "ok" and not isinstance(cell.get("dataset"), str):
        raise RecordsError(f"{where}: key 'cell.dataset' must be a str in a successful record")
    for key in ("metrics", "protocol"):
        if not isinstance(record.get(key, {}), dict):
            raise RecordsError(f"{where}: key {key!r} must be an object")
    for name, result in record.get("metrics", {}).items():
        if not isinstance(result, dict) or "value" not in result:
            raise RecordsError(f"{where}: key 'metrics.{name}' must be an object with a 'value'")
    _created(record, where)


def _created(record: dict, where: str = "") -> datetime:
    """The record's creation time, timezone-aware (naive times are read as UTC)."""
    raw = record.get("created")
    try:
        stamp = datetime.fromisoformat(raw)
    except (TypeError, ValueError) as exc:
        where = where or f"record {record.get('record_id', '?')}"
        raise RecordsError(f"{where}: key 'created' must be an ISO time, got {raw!r}") from exc
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


def load_records(results_dir: str | Path) -> list[dict]:
    """Every record of ``<results_dir>/records.jsonl`` in file order; a malformed line is an error."""
    path = Path(results_dir) / RECORDS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no records file (run a benchmark into {results_dir} first)")
    return parse_records(path.read_text(encoding="utf-8"), str(path), check=_check_record)


def _cell_order(record: dict) -> tuple:
    cell = record["cell"]
    return (
        cell["task"],
        cell.get("dataset") or "",
        cell.get("profile") or "",
        cell["method"],
        cell["seed"],
        cell["key"],
    )


def latest_per_cell(records: Iterable[dict]) -> list[dict]:
    """The newest record of every cell key (ties: the later one in the file), sorted by cell."""
    newest: dict[str, tuple[tuple[datetime, int], dict]] = {}
    for index, record in enumerate(records):
        stamp = (_created(record), index)
        key = record["cell"]["key"]
        if key not in newest or stamp >= newest[key][0]:
            newest[key] = (stamp, record)
    return sorted((record for _, record in newest.values()), key=_cell_order)


def _short_hash(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def protocol_key(protocol: dict) -> str:
    """A short hash of the whole protocol dict (image count included)."""
    return _short_hash(protocol)


# Config keys that do not change what a cell learns: where files live and how the run is executed.
NON_TRAINING_KEYS = {"dataset": ("root",), "train": ("checkpoint_every", "device", "num_workers")}


@functools.cache
def _schema_defaults() -> dict[str, Any]:
    """The resolved config of an empty TaskConfig (read-only: callers copy what they merge)."""
    return to_dict(TaskConfig())


def training_setup(record: dict) -> dict[str, Any]:
    """What a cell was trained on and with: the record's dataset, model and train config (every
    method's options included: one run resolves them alike for all its cells), less file locations
    and execution details.  A key that a record's config lacks (the record predates it) counts with
    its schema default, which is what that older code did (e.g. ``train.lr_decay`` 0: constant lr)."""
    config = record.get("config") or {}
    defaults = _schema_defaults()
    setup: dict[str, Any] = {}
    for section in ("dataset", "model", "train"):
        values = {**defaults[section], **config[section]} if config.get(section) else {}
        for key in NON_TRAINING_KEYS.get(section, ()):
            values.pop(key, None)
        if values:
            setup[section] = values
    return setup


def training_key(record: dict) -> str:
    """A short hash of ``training_setup`` (empty when the record holds no training config)."""
    setup = training_setup(record)
    return _short_hash(setup) if setup else ""


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key in sorted(value):
            flat.update(_flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def _setup_differences(setups: dict[str, dict]) -> dict[str, tuple[str, ...]]:
    """Per training key, ``name=value`` of every config key whose value differs between the setups."""
    flat = {key: _flatten(setup) for key, setup in setups.items()}
    names = sorted({name for values in flat.values() for name in values})
    differing = [n for n in names if len({json.dumps(v.get(n), sort_keys=True) for v in flat.values()}) > 1]
    return {
        key: tuple(f"{n}={json.dumps(values.get(n), sort_keys=True)}" for n in differing)
        for key, values in flat.items()
    }


# ---------------------------------------------------------------------------------------------
# Metric properties
# ---------------------------------------------------------------------------------------------
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


def _metric_sort_key(name: str) -> tuple[int, str]:
    return (METRIC_ORDER.index(name) if name in METRIC_ORDER else len(METRIC_ORDER), name)


def metric_header(name: str) -> str:
    """The column header of a metric with its direction, e.g. ``FID ↓``."""
    return metric_label(name) + {True: " ↑", False: " ↓", None: ""}[higher_is_better(name)]


# ---------------------------------------------------------------------------------------------
# Reported numbers
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportedEntry:
    """One published result (``bench/reported/published.yaml``)."""

    method: str
    venue: str
    dataset: str
    resolution: tuple[int, int]
    protocol: str
    protocol_text: str
    metrics: dict[str, float]
    source: str
    metric_sources: dict[str, str] = field(default_factory=dict)
    notes: str = ""

    def sources(self) -> str:
        """Source keys, e.g. ``IMAG-T1; FID, LPIPS: GFLA-PAPER``."""
        overrides: dict[str, list[str]] = {}
        for metric in sorted(self.metric_sources, key=_metric_sort_key):
            overrides.setdefault(self.metric_sources[metric], []).append(metric_label(metric))
        parts = [self.source] + [f"{', '.join(metrics)}: {key}" for key, metrics in overrides.items()]
        return "; ".join(parts)


def load_reported(path: str | Path = REPORTED_FILE) -> list[ReportedEntry]:
    """Read and check the published numbers; errors name the file and entry."""
    path = Path(path)
    data = read_yaml(path)
    sources, protocols = data.get("sources", {}), data.get("protocols", {})
    entries = []
    for index, raw in enumerate(data.get("entries", [])):
        where = f"{path}: entries[{index}]"
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
        missing = {"method", "venue", "dataset", "resolution", "protocol", "metrics", "source"} - set(raw)
        if missing:
            raise ValueError(f"{where}: missing key(s) {', '.join(sorted(missing))}")
        keys = [raw["source"], *raw.get("metric_sources", {}).values()]
        unknown = [key for key in keys if key not in sources]
        if unknown:
            raise ValueError(f"{where}: source key(s) {unknown} not defined under 'sources'")
        if raw["protocol"] not in protocols:
            raise ValueError(f"{where}: protocol {raw['protocol']!r} not defined under 'protocols'")
        if not all(isinstance(v, (int, float)) for v in raw["metrics"].values()):
            raise ValueError(f"{where}: every value under 'metrics' must be a number")
        entries.append(
            ReportedEntry(
                method=raw["method"],
                venue=raw["venue"],
                dataset=raw["dataset"],
                resolution=tuple(raw["resolution"]),
                protocol=raw["protocol"],
                protocol_text=protocols[raw["protocol"]],
                metrics={k: float(v) for k, v in raw["metrics"].items()},
                source=raw["source"],
                metric_sources=dict(raw.get("metric_sources", {})),
                notes=raw.get("notes", ""),
            )
        )
    return entries


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------
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

    @property
    def seeds_text(self) -> str:
        n = str(len(self.ok_seeds))
        return f"{n} (+{len(self.failed_seeds)} failed)" if self.failed_seeds else n


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


def _dims(value: Any) -> str:
    return "×".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)


def protocol_items(protocol: dict[str, Any]) -> list[tuple[str, str]]:
    """Readable (label, value) pairs of a protocol dict; unknown keys follow, sorted."""
    p = dict(protocol)
    items: list[tuple[str, str]] = []

    def take(label: str, *keys: str, join: str = " ") -> None:
        values = [p.pop(key) for key in keys if key in p]
        if values:
            items.append((label, join.join(_dims(v) for v in values if v is not None) or "–"))

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
    items.extend((key.replace("_", " "), _dims(p[key])) for key in sorted(p))
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


def _decimals(means: Sequence[float]) -> int:
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


def _newest_per_seed(records: list[dict]) -> list[dict]:
    by_seed: dict[int, dict] = {}
    for record in sorted(records, key=_created):
        by_seed[record["cell"]["seed"]] = record
    return [by_seed[seed] for seed in sorted(by_seed)]


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


def _format_column(column: Column, entries: list[Entry]) -> None:
    """Fill the entries' text, decide the column's image count, ranking and best entries."""
    numeric = [e for e in entries if e.mean is not None]
    places = _decimals([e.mean for e in numeric])
    counts = {c for e in numeric for c in e.image_counts}
    if is_distribution_metric(column.metric) and counts:
        if len(counts) == 1:
            column.image_count = counts.pop()
            column.label += f" ({column.image_count} img)"
        else:
            column.ranked = False
            column.label += " (image counts differ: not ranked)"
    for entry in numeric:
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
    return sorted(names, key=_metric_sort_key)


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


def _compatible(failed_protocol: dict, protocol: dict) -> bool:
    """A failed record belongs to a table whose protocol agrees with everything it recorded."""
    return all(protocol.get(key) == value for key, value in failed_protocol.items() if value is not None)


GroupId = tuple[str, str, str, str, str]  # task, dataset, profile, protocol key, training key


def _group(latest: list[dict]) -> dict[GroupId, list[dict]]:
    """Records by (task, dataset, profile, protocol key, training key); failures join every
    compatible group (same training setup where the failure recorded one)."""
    groups: dict[GroupId, list[dict]] = {}
    protocols: dict[GroupId, dict] = {}

    def ident(record: dict) -> tuple[str, str, str]:
        cell = record["cell"]
        return (cell["task"], cell.get("dataset") or "", cell.get("profile") or "")

    for record in (r for r in latest if r["status"] == "ok"):
        protocol = record.get("protocol", {})
        gid = (*ident(record), protocol_key(protocol), training_key(record))
        groups.setdefault(gid, []).append(record)
        protocols[gid] = protocol
    for record in (r for r in latest if r["status"] == "failed"):
        protocol = record.get("protocol", {})
        (task, dataset, profile), training = ident(record), training_key(record)
        # same task, profile and training setup (where the failure recorded one), the same dataset
        # unless the failure came before it was known, and a compatible protocol
        targets = [
            g for g in groups
            if g[0] == task and g[2] == profile and dataset in ("", g[1]) and training in ("", g[4])
            and _compatible(protocol, protocols[g])
        ]
        if not targets:
            targets = [(task, dataset, profile, protocol_key(protocol), training)]
            protocols[targets[0]] = protocol
        for gid in targets:
            groups.setdefault(gid, []).append(record)
    return dict(sorted(groups.items()))


def _training_differences(groups: dict[GroupId, list[dict]]) -> dict[GroupId, tuple[str, ...]]:
    """For groups that share task, dataset, profile and protocol but not the training setup: the
    config keys in which each one differs from the others."""
    siblings: dict[tuple[str, str, str, str], dict[str, dict]] = {}
    for gid, records in groups.items():
        siblings.setdefault(gid[:4], {})[gid[4]] = training_setup(records[0])
    differences: dict[GroupId, tuple[str, ...]] = {}
    for gid in groups:
        setups = siblings[gid[:4]]
        differences[gid] = _setup_differences(setups)[gid[4]] if len(setups) > 1 else ()
    return differences


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
    gid: GroupId, records: list[dict], reported: list[ReportedEntry], differences: tuple[str, ...] = ()
) -> Table:
    task, dataset, profile, key, training = gid
    notes = Footnotes()
    ok_records = [r for r in records if r["status"] == "ok"]
    protocol = (ok_records or records)[0].get("protocol", {})
    metrics = _columns_for(records)
    columns = [_new_column(metric) for metric in metrics]
    rows = []
    for method in sorted({r["cell"]["method"] for r in records}):
        chosen = _newest_per_seed([r for r in records if r["cell"]["method"] == method])
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
            )
        )
    for column in columns:
        _format_column(column, [row.entries[column.metric] for row in rows])
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
        reported_columns=sorted({m for e in shown for m in e.metrics}, key=_metric_sort_key),
        reported_notes=reported_notes,
    )


def build_tables(records: Iterable[dict], reported: Sequence[ReportedEntry] | None = None) -> list[Table]:
    """Leaderboard tables from records (newest per cell), with published rows for their datasets."""
    groups = _group(latest_per_cell(records))
    differences = _training_differences(groups)
    return [_build_table(gid, group, list(reported or ()), differences[gid]) for gid, group in groups.items()]


# ---------------------------------------------------------------------------------------------
# Writers: Markdown, CSV, LaTeX
# ---------------------------------------------------------------------------------------------
def format_reported(value: float) -> str:
    """A published number as printed in its source (no added digits)."""
    return format(value, "g")


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_marks(marks: Sequence[int]) -> str:
    return "".join(f" [{m}]" for m in marks)


def _summary(records: list[dict]) -> str:
    latest = latest_per_cell(records)
    failed = sum(r["status"] == "failed" for r in latest)
    return (
        f"Regenerated from {RECORDS_FILE}: {len(records)} records, {len(latest)} cells "
        f"({len(latest) - failed} ok, {failed} failed). Results under different evaluation protocols "
        "(image counts included) or training setups are in separate tables and never ranked together."
    )


def _table_markdown(table: Table) -> list[str]:
    lines = [f"## {_md(table.title)}", "", f"Task kind: {table.task_kind or '–'}."]
    for label, items in table.setup_notes(code=lambda text: f"`{text}`"):
        lines += ["", f"{_md(label)}: " + ", ".join(f"`{_md(item)}`" for item in items) + "."]
    lines.append("")
    lines.append("| Method | n | " + " | ".join(_md(c.label) for c in table.columns) + " |")
    lines.append("|:--|--:|" + "--:|" * len(table.columns))
    for row in table.rows:
        cells = []
        for column in table.columns:
            entry = row.entries[column.metric]
            text = f"**{entry.text}**" if entry.best else entry.text
            cells.append(text + _md_marks(entry.notes))
        method = _md(row.method) + _md_marks(row.notes)
        lines.append(f"| {method} | {row.seeds_text} | " + " | ".join(cells) + " |")
    lines += ["", f"{STD_NOTE}.", ""]
    protocol = " · ".join(f"{label} {value}" for label, value in table.protocol_items())
    lines.append(f"Protocol `{table.protocol_key}`: {_md(protocol)}")
    for metric, details in table.metric_protocols.items():
        text = ", ".join(f"{k}={' / '.join(v)}" for k, v in details.items())
        lines.append(f"- {metric_label(metric)} details: {_md(text)}")
    if table.reported:
        lines += ["", "**Reported** (published numbers under their own protocols; not ranked):", ""]
        lines.append(
            "| Method | Resolution | Protocol | "
            + " | ".join(metric_header(m) for m in table.reported_columns)
            + " | Source |"
        )
        lines.append("|:--|:--|:--|" + "--:|" * len(table.reported_columns) + ":--|")
        for index, entry in enumerate(table.reported):
            values = [format_reported(entry.metrics[m]) if m in entry.metrics else "–" for m in table.reported_columns]
            name = f"{_md(entry.method)} ({entry.venue}), reported" + _md_marks(table.reported_notes[index])
            lines.append(
                f"| {name} | {_dims(entry.resolution)} | {entry.protocol} | "
                + " | ".join(values)
                + f" | {_md(entry.sources())} |"
            )
        lines.append("")
        lines += [f"- `{name}`: {_md(text)}" for name, text in table.reported_protocols()]
    if table.footnotes:
        lines.append("")
        lines += [f"[{number}] {_md(text)}  " for number, text in enumerate(table.footnotes, start=1)]
    return lines + [""]


def render_markdown(tables: Sequence[Table], records: list[dict]) -> str:
    lines = ["# warpbench leaderboard", "", _summary(records), ""]
    for table in tables:
        lines += _table_markdown(table)
    return "\n".join(lines).rstrip() + "\n"


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
        resolution = _dims(table.protocol.get("resolution", ""))
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
            for metric, value in sorted(entry.metrics.items(), key=lambda kv: _metric_sort_key(kv[0])):
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
                        "resolution": _dims(entry.resolution),
                        "source": entry.metric_sources.get(metric, entry.source),
                        "notes": " | ".join(table.footnotes[m - 1] for m in table.reported_notes[index]),
                        "protocol": entry.protocol,
                    }
                )
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS)).astype({"n_seeds": "Int64", "image_count": "Int64"})


_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "×": r"$\times$",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
    "–": "--",
    "…": r"\dots{}",
    "·": r"$\cdot$",
}


def tex_escape(text: Any) -> str:
    return "".join(_TEX_ESCAPES.get(char, char) for char in str(text))


def _tex_marks(marks: Sequence[int]) -> str:
    return r"\textsuperscript{" + ",".join(map(str, marks)) + "}" if marks else ""


def _table_latex(table: Table) -> list[str]:
    lines = [
        r"\begin{table}[ht]",
        r"\centering\small",
        r"\begin{tabular}{l r " + "r " * len(table.columns) + "}",
    ]
    lines += [
        r"\toprule",
        " & ".join(["Method", "$n$", *(tex_escape(c.label) for c in table.columns)]) + r" \\",
    ]
    lines.append(r"\midrule")
    for row in table.rows:
        cells = [tex_escape(row.method) + _tex_marks(row.notes), tex_escape(row.seeds_text)]
        for column in table.columns:
            entry = row.entries[column.metric]
            text = tex_escape(entry.text)
            text = rf"\textbf{{{text}}}" if entry.best else text
            cells.append(text + _tex_marks(entry.notes))
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    protocol = "; ".join(f"{label} {value}" for label, value in table.protocol_items())
    lines.append(
        rf"\caption{{{tex_escape(table.title)}. {tex_escape(STD_NOTE)}. "
        rf"Protocol: {tex_escape(protocol)}.}}"
    )
    lines.append(r"\end{table}")
    if table.reported:
        lines += _reported_latex(table)
    notes = [rf"\textsuperscript{{{n}}}{tex_escape(text)}" for n, text in enumerate(table.footnotes, start=1)]
    if notes:  # after the reported table too, since both share the numbering
        lines.insert(len(lines) - 1, r"\par\footnotesize " + r" \\ ".join(notes))
    return lines + [""]


def _reported_latex(table: Table) -> list[str]:
    metrics = table.reported_columns
    lines = [
        r"\begin{table}[ht]",
        r"\centering\small",
        r"\begin{tabular}{l l l " + "r " * len(metrics) + "l}",
    ]
    header = [
        "Method (reported)",
        "Resolution",
        "Protocol",
        *(tex_escape(metric_header(m)) for m in metrics),
        "Source",
    ]
    lines += [r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    for index, entry in enumerate(table.reported):
        values = [format_reported(entry.metrics[m]) if m in entry.metrics else "--" for m in metrics]
        name = tex_escape(f"{entry.method} ({entry.venue})") + _tex_marks(table.reported_notes[index])
        lines.append(
            " & ".join(
                [
                    name,
                    tex_escape(_dims(entry.resolution)),
                    tex_escape(entry.protocol),
                    *values,
                    tex_escape(entry.sources()),
                ]
            )
            + r" \\"
        )
    lines += [r"\bottomrule", r"\end{tabular}"]
    described = "; ".join(f"{name}: {text}" for name, text in table.reported_protocols())
    lines.append(
        rf"\caption{{Reported numbers for {tex_escape(table.dataset)} (published, not ranked with the "
        rf"reproduced table {tex_escape(table.protocol_key)}). {tex_escape(described)}}}"
    )
    lines.append(r"\end{table}")
    return lines


def render_latex(tables: Sequence[Table], records: list[dict]) -> str:
    lines = [
        r"\documentclass{article}",
        r"\usepackage[utf8]{inputenc}",
        r"\usepackage{booktabs}",
        r"\usepackage[margin=1.5cm,landscape]{geometry}",
        r"\begin{document}",
        r"\section*{warpbench leaderboard}",
        tex_escape(_summary(records)),
        "",
    ]
    for table in tables:
        lines += _table_latex(table)
    lines.append(r"\end{document}")
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> Path:
    """Write via a temporary file and rename, so readers never see a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_leaderboards(results_dir: Path, include_reported: bool = True) -> list[Path]:
    """Regenerate leaderboard.md/.csv/.tex and report.html from ``records.jsonl`` alone."""
    from bench.report import render_report  # report builds on this module's tables

    results_dir = Path(results_dir)
    records = load_records(results_dir)
    tables = build_tables(records, load_reported() if include_reported else None)
    csv_text = leaderboard_frame(tables).to_csv(index=False, lineterminator="\n")
    return [
        _write_atomic(results_dir / "leaderboard.md", render_markdown(tables, records)),
        _write_atomic(results_dir / "leaderboard.csv", csv_text),
        _write_atomic(results_dir / "leaderboard.tex", render_latex(tables, records)),
        _write_atomic(results_dir / "report.html", render_report(results_dir, tables, records)),
    ]
