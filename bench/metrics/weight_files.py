"""Where metric weight files are looked up, and their sha256 fingerprints (hashed once per file version).

Nothing here downloads.  A file is looked up by its official name (the basename of the URL that
torchvision / pytorch-fid would download) first in a user-given ``weights_dir``, then in the torch
hub cache ``<torch.hub.get_dir()>/checkpoints``, where those libraries would have stored it.
"""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path

import torch

_HASH_CACHE: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()
_HUB_NAME = re.compile(r"-([0-9a-f]{8,})\.pth?$")


def hub_checkpoints_dir() -> Path:
    """The torch hub checkpoints directory (honours ``torch.hub.set_dir`` and ``$TORCH_HOME``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def search_dirs(weights_dir: str | Path | None) -> list[Path]:
    """The directories searched for weight files, in order."""
    dirs = [Path(weights_dir).expanduser()] if weights_dir else []
    return dirs + [hub_checkpoints_dir()]


def find_weight_file(file_name: str, weights_dir: str | Path | None) -> Path | None:
    """The first existing ``<dir>/<file_name>`` over :func:`search_dirs`, or None."""
    for directory in search_dirs(weights_dir):
        candidate = directory / file_name
        if candidate.is_file():
            return candidate
    return None


def where_to_put(file_name: str, weights_dir: str | Path | None) -> str:
    """Human instruction naming the exact file and the directories it may go to."""
    places = " or ".join(str(d) for d in search_dirs(weights_dir))
    return f"put {file_name} in {places} (or pass the directory as weights_dir)"


def sha256_file(path: Path) -> str:
    """sha256 of a file, cached per (resolved path, size, mtime) so it is hashed once per version."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _HASH_LOCK:
        if key in _HASH_CACHE:
            return _HASH_CACHE[key]
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    digest = sha.hexdigest()
    with _HASH_LOCK:
        _HASH_CACHE[key] = digest
    return digest


def hub_hash_prefix(file_name: str) -> str | None:
    """The sha256 prefix torch hub names carry (``alexnet-owt-7be5be79.pth`` -> ``7be5be79``)."""
    match = _HUB_NAME.search(file_name)
    return match.group(1) if match else None


def hash_note(file_name: str, sha256: str) -> str | None:
    """A warning when a file's sha256 does not start with the prefix its official name carries."""
    prefix = hub_hash_prefix(file_name)
    if prefix is None or sha256.startswith(prefix):
        return None
    return (
        f"sha256 {sha256[:16]}... does not start with {prefix} as the official name {file_name} says: "
        "not the official file, numbers are not comparable with published ones"
    )


def weight_row(
    metric: str, file_name: str, weights_dir: str | Path | None, note: str = ""
) -> dict[str, object]:
    """One inventory row for a user-provided weight file (``metric`` may also name a loss)."""
    path = find_weight_file(file_name, weights_dir)
    sha = sha256_file(path) if path else None
    warning = hash_note(file_name, sha) if sha else None
    return {
        "metric": metric,
        "used_by": metric,
        "name": file_name,
        "file": file_name,
        "path": str(path) if path else None,
        "present": path is not None,
        "source": f"user file {path}" if path else "missing",
        "sha256": sha,
        "where_to_put": where_to_put(file_name, weights_dir),
        "note": "; ".join(part for part in (note, warning) if part),
    }
