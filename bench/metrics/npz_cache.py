"""Write-once ``.npz`` cache files that carry their own key and a hash of their arrays.

Used for FID/KID reference statistics and for the Inception features of generated image sets.  A
file is named by a hash of its key (which includes the sha256 of the images' pixels), written
atomically, made read-only and never overwritten; reading checks the stored key and the arrays'
hash, so a stale, altered or foreign file raises :class:`CacheFileError` instead of being reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


class CacheFileError(RuntimeError):
    """A cache file does not hold what its name promises (tampered, truncated, or another key)."""


def canonical(key: dict[str, Any]) -> str:
    """The key as canonical JSON (sorted keys, no spaces): what the file stores and its name hashes."""
    return json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)


def key_digest(key: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a cache key."""
    return hashlib.sha256(canonical(key).encode()).hexdigest()


def payload_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the arrays in the given order (dtype, shape and bytes of each)."""
    sha = hashlib.sha256()
    for array in arrays.values():
        array = np.ascontiguousarray(array)
        sha.update(f"{array.dtype.str}{array.shape}".encode())
        sha.update(memoryview(array).cast("B"))
    return sha.hexdigest()


def read_checked(path: Path, key: dict[str, Any], names: tuple[str, ...], what: str) -> dict[str, np.ndarray]:
    """The arrays ``names`` of a cache file, after checking its key and its arrays' hash."""
    try:
        with np.load(path, allow_pickle=False) as data:
            stored_key = str(data["key"])
            arrays = {name: data[name] for name in names}
            payload = str(data["payload_sha256"])
    except (OSError, KeyError, ValueError, EOFError) as exc:
        raise CacheFileError(f"{path}: unreadable {what} cache ({exc}); delete it to recompute") from exc
    asked = canonical(key)
    if stored_key != asked:
        stored = json.loads(stored_key)
        if stored.get("content_sha256") != key.get("content_sha256"):
            raise CacheFileError(
                f"{path}: stores {what} content sha256 {stored.get('content_sha256')}, asked for "
                f"{key.get('content_sha256')}; the file was altered — delete it to recompute"
            )
        raise CacheFileError(f"{path}: stores key {stored_key}, asked for {asked}; delete it to recompute")
    if payload_digest(arrays) != payload:
        raise CacheFileError(f"{path}: arrays do not match their stored sha256; delete it to recompute")
    return arrays


def write_once(path: Path, key: dict[str, Any], arrays: dict[str, np.ndarray], what: str) -> None:
    """Write atomically; if another process wrote the same key first, keep (and check) its file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.stem, suffix=".tmp", delete=False)
    try:
        with handle:
            np.savez(handle, key=np.array(canonical(key)), payload_sha256=np.array(payload_digest(arrays)), **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o444)
        try:
            os.link(handle.name, path)  # fails if the file exists: never overwrite
        except FileExistsError:
            read_checked(path, key, tuple(arrays), what)
    finally:
        os.unlink(handle.name)
