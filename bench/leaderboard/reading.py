"""Reading records: the schema check, the newest record per cell, and grouping into tables.

Records are grouped per task, dataset, profile, evaluation protocol (a hash of the record's
``protocol`` dict, generated-image count included) and training setup (a hash of the resolved
dataset, model and training config), so numbers obtained under different protocols or training
budgets are never ranked or averaged together.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.config import TaskConfig, to_dict
from bench.records import RECORDS_FILE, SCHEMA_VERSION, RecordsError, parse_records


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
    created_time(record, where)


def created_time(record: dict, where: str = "") -> datetime:
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
        stamp = (created_time(record), index)
        key = record["cell"]["key"]
        if key not in newest or stamp >= newest[key][0]:
            newest[key] = (stamp, record)
    return sorted((record for _, record in newest.values()), key=_cell_order)


def newest_per_seed(records: list[dict]) -> list[dict]:
    """The newest record per seed (of one method's records), by seed."""
    by_seed: dict[int, dict] = {}
    for record in sorted(records, key=created_time):
        by_seed[record["cell"]["seed"]] = record
    return [by_seed[seed] for seed in sorted(by_seed)]


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


def _compatible(failed_protocol: dict, protocol: dict) -> bool:
    """A failed record belongs to a table whose protocol agrees with everything it recorded."""
    return all(protocol.get(key) == value for key, value in failed_protocol.items() if value is not None)


GroupId = tuple[str, str, str, str, str]  # task, dataset, profile, protocol key, training key


def group_records(latest: list[dict]) -> dict[GroupId, list[dict]]:
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


def training_differences(groups: dict[GroupId, list[dict]]) -> dict[GroupId, tuple[str, ...]]:
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

