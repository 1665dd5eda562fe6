"""Checkpoint files that are written atomically and verified before they are loaded.

Layout: a magic line, the sha256 of the payload in hex, a newline, then the payload (``torch.save``
of the state).  Writing goes through a temporary file, fsync and rename, so a killed process
leaves either the old checkpoint or the new one.  A truncated or corrupted file fails its checksum
and raises :class:`CheckpointError`; it is never half-loaded.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from bench.records import atomic_write_bytes

MAGIC = b"WARPBENCH-CKPT-1\n"


class CheckpointError(RuntimeError):
    """A checkpoint file is truncated, corrupted or not a warpbench checkpoint."""


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Serialise ``state`` and write it atomically with its checksum."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    digest = hashlib.sha256(payload).hexdigest().encode("ascii")
    atomic_write_bytes(Path(path), MAGIC + digest + b"\n" + payload)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Verify and load a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise CheckpointError(f"{path}: not a warpbench checkpoint (bad header)")
    header_end = len(MAGIC) + 64
    if len(data) < header_end + 1 or data[header_end : header_end + 1] != b"\n":
        raise CheckpointError(f"{path}: truncated checkpoint header")
    expected = data[len(MAGIC) : header_end].decode("ascii", errors="replace")
    payload = data[header_end + 1 :]
    actual = hashlib.sha256(payload).hexdigest()
    if actual != expected:
        raise CheckpointError(
            f"{path}: checksum mismatch (expected sha256 {expected}, file has {actual}); the file is "
            "truncated or corrupted. Delete it to restart the cell from its previous checkpoint or from scratch."
        )
    return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=False)
