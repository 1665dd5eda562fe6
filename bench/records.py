"""The results store: ``records.jsonl``, one JSON record per benchmark cell run.

Records are only ever added.  Each addition happens under a file lock and replaces the file
atomically (write a temporary file with the old content plus the new line, fsync, rename), so a
crash or a second runner can never leave a torn line, and two runners on one results directory
never interleave.  A per-cell lock keeps two runners from running the same cell at once.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

RECORDS_FILE = "records.jsonl"
SCHEMA_VERSION = 1


class RecordsError(ValueError):
    """``records.jsonl`` holds a line that is not a valid record."""


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

    def append(self, record: dict[str, Any]) -> None:
        """Add one record atomically under the store's lock."""
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
