"""The results store: ``records.jsonl``, one JSON record per benchmark cell run.

Records are only ever added.  Each addition happens under a file lock and replaces the file
atomically (write a temporary file with the old content plus the new line, fsync, rename), so a
crash or a second runner can never leave a torn line, and two runners on one results directory
never interleave.  A per-cell lock keeps two runners from running the same cell at once.

Per-image metric values (one per evaluated image, for paired statistics) do not go into the JSON
line: they live in a side file ``per_image/<sha256>.npz`` named by the hash of its bytes, written
before the record that names it, so the record stays small readable JSON and never points at a
missing file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

RECORDS_FILE = "records.jsonl"
SCHEMA_VERSION = 1
PER_IMAGE_DIR = "per_image"
_NAMES_KEY = "image_names"
_GROUPS_KEY = "image_groups"
_VALUES_PREFIX = "values."
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed member times: equal values give equal bytes, hence one file


class RecordsError(ValueError):
    """``records.jsonl`` holds a line that is not a valid record."""


class PerImageError(RecordsError):
    """A record's per-image side file is missing, altered or not in the expected format."""


class CellBusyError(RuntimeError):
    """Another runner holds the lock of this cell."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class PerImageValues:
    """Per metric, one float64 value per evaluated image in evaluation order, the images' names and,
    where images are not independent (the frames of one video), each image's group: the unit a
    bootstrap resamples."""

    values: dict[str, np.ndarray]
    names: tuple[str, ...] = field(default=())
    groups: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:  # any array-like (numpy, torch, list) -> 1-d float64
        object.__setattr__(self, "values", {k: np.asarray(v, dtype=np.float64).ravel() for k, v in self.values.items()})
        object.__setattr__(self, "names", tuple(str(name) for name in self.names))
        object.__setattr__(self, "groups", tuple(str(group) for group in self.groups))
        lengths = {name: len(values) for name, values in self.values.items()}
        if self.names:
            lengths[_NAMES_KEY] = len(self.names)
        if self.groups:
            lengths[_GROUPS_KEY] = len(self.groups)
        if len(set(lengths.values())) > 1:
            raise ValueError(f"per-image values of unequal length: {lengths}")

    @property
    def count(self) -> int:
        return next((len(v) for v in self.values.values()), len(self.names))


def per_image_bytes(per_image: PerImageValues) -> bytes:
    """The values as a deterministic .npz (sorted members, fixed times): the same values, the same bytes."""
    arrays = {f"{_VALUES_PREFIX}{name}": np.asarray(v, dtype=np.float64) for name, v in per_image.values.items()}
    if per_image.names:
        arrays[_NAMES_KEY] = np.asarray(per_image.names, dtype=str)
    if per_image.groups:
        arrays[_GROUPS_KEY] = np.asarray(per_image.groups, dtype=str)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, arrays[key], allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def write_per_image(results_dir: Path, per_image: PerImageValues) -> dict[str, Any]:
    """Store the values content-addressed under ``<results_dir>/per_image/``; returns the record's reference."""
    data = per_image_bytes(per_image)
    digest = hashlib.sha256(data).hexdigest()
    relative = f"{PER_IMAGE_DIR}/{digest}.npz"
    path = Path(results_dir) / relative
    if not path.is_file():
        atomic_write_bytes(path, data)
    return {"file": relative, "sha256": digest, "count": per_image.count, "metrics": sorted(per_image.values)}


def read_per_image(results_dir: Path, record: dict[str, Any]) -> PerImageValues | None:
    """The per-image values a record names (None when it names none, as older records do).

    PerImageError names the file when it is missing, its hash differs from the record's or its
    content is not what ``write_per_image`` writes."""
    reference = record.get("per_image")
    if reference is None:
        return None
    where = f"record {record.get('record_id', '?')}"
    if not isinstance(reference, dict) or not isinstance(reference.get("file"), str):
        raise PerImageError(f"{where}: key 'per_image' must be an object with 'file' and 'sha256'")
    path = Path(results_dir) / reference["file"]
    if not path.is_file():
        raise PerImageError(f"{path}: per-image file of {where} is missing")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != reference.get("sha256"):
        raise PerImageError(f"{path}: sha256 differs from the one {where} names (file altered or truncated)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise PerImageError(f"{path}: not a per-image .npz ({exc})") from exc
    names = tuple(str(n) for n in arrays.pop(_NAMES_KEY, ()))
    groups = tuple(str(g) for g in arrays.pop(_GROUPS_KEY, ()))
    values = {key.removeprefix(_VALUES_PREFIX): v.astype(np.float64) for key, v in arrays.items()}
    return PerImageValues(values, names, groups)


def parse_records(
    text: str, source: str, check: Callable[[Any, str], None] | None = None
) -> list[dict[str, Any]]:
    """Parse JSON-lines text; a malformed line raises RecordsError naming ``source`` and the line.

    ``check(record, where)`` may validate each record further (the leaderboard checks the schema).
    """
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RecordsError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
        if check is not None:
            check(record, where)
        elif not isinstance(record, dict) or "cell" not in record or "status" not in record:
            raise RecordsError(f"{where}: expected a record with 'cell' and 'status' keys")
        records.append(record)
    return records


class RecordStore:
    """Append-only store of cell records in ``<results_dir>/records.jsonl``."""

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = Path(results_dir)
        self.path = self.results_dir / RECORDS_FILE
        self.locks_dir = self.results_dir / ".locks"
        self._lock = FileLock(str(self.results_dir / ".records.lock"))

    def read(self) -> list[dict[str, Any]]:
        """All records, oldest first."""
        if not self.path.exists():
            return []
        return parse_records(self.path.read_text(encoding="utf-8"), str(self.path))

    def append(self, record: dict[str, Any], per_image: PerImageValues | None = None) -> None:
        """Add one record atomically under the store's lock; ``per_image`` values go to their side
        file first and the record (the caller's dict too) gets its ``per_image`` reference."""
        if per_image is not None and per_image.values:
            record["per_image"] = write_per_image(self.results_dir, per_image)
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        self.results_dir.mkdir(parents=True, exist_ok=True)
        with self._lock:
            old = self.path.read_bytes() if self.path.exists() else b""
            if old and not old.endswith(b"\n"):
                old += b"\n"
            atomic_write_bytes(self.path, old + line.encode("utf-8"))

    def latest(self) -> dict[str, dict[str, Any]]:
        """The newest record of every cell key."""
        out: dict[str, dict[str, Any]] = {}
        for record in self.read():
            out[record["cell"]["key"]] = record
        return out

    def completed(self) -> set[str]:
        """Keys of cells whose newest record succeeded (these are skipped unless --force)."""
        return {key for key, record in self.latest().items() if record["status"] == "ok"}

    @contextmanager
    def cell_lock(self, key: str) -> Iterator[None]:
        """Hold the cell's lock; raises CellBusyError at once if another runner holds it."""
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.locks_dir / f"{key}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout as exc:
            raise CellBusyError(f"cell {key} is being run by another runner") from exc
        try:
            yield
        finally:
            lock.release()
