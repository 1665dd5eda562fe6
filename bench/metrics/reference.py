"""Reference statistics of a distribution metric (mu, sigma and features of the real set), cached safely.

Unlike GFLA's ``statistics.npz`` next to the data (reused forever, even after the images change),
a cached file here is named by a hash of its key: the protocol fields that affect the features
(Inception variant, weights sha256, input convention ...), the reference split and size, and the
sha256 of the reference images' pixels, computed while reading them.  A file is written once,
atomically, never overwritten, and stores its own key and a hash of its arrays; a file whose key,
content hash or arrays disagree with what is asked raises :class:`ReferenceCacheError`.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from bench.metrics.inputs import ContentHasher
from bench.metrics.npz_cache import CacheFileError, canonical, key_digest, read_checked, write_once

FeatureFn = Callable[[torch.Tensor], torch.Tensor]  # uint8 (B, 3, H, W) -> (B, D) features


ReferenceCacheError = CacheFileError  # a cached reference file does not hold what its name promises
ARRAYS = ("mu", "sigma", "features")  # in the order their hash covers them


@dataclass
class ReferenceStatistics:
    """Mean and covariance of the reference features (as pytorch-fid computes them) and the features."""

    mu: np.ndarray
    sigma: np.ndarray
    features: np.ndarray  # (count, D) float32
    count: int
    content_sha256: str
    key: dict[str, Any]
    path: Path | None  # the cache file, None when no cache_dir was given
    reused: bool  # read from the cache file rather than computed

    def protocol(self) -> dict[str, Any]:
        return {
            "reference_count": self.count,
            "reference_resolution": self.key["resolution"],
            "reference_content_sha256": self.content_sha256,
            "reference_cache": str(self.path) if self.path else None,
            "reference_cache_reused": self.reused,
        }


def cache_path(cache_dir: str | Path, key: dict[str, Any]) -> Path:
    """Where the statistics of ``key`` live under ``cache_dir``."""
    return Path(cache_dir) / f"ref-{key_digest(key)[:32]}.npz"


def iterate_reference(dataset: Any, limit: int | None) -> Iterator[torch.Tensor]:
    """The first ``limit`` images (all when None) of a dataset of uint8 (3, H, W) tensors, checked."""
    total = len(dataset) if limit is None else min(limit, len(dataset))
    for index in range(total):
        image = dataset[index]
        if (
            not isinstance(image, torch.Tensor)
            or image.dtype != torch.uint8
            or image.dim() != 3
            or image.shape[0] != 3
        ):
            what = (
                f"{type(image).__name__} {getattr(image, 'dtype', '')} {tuple(getattr(image, 'shape', ()))}"
            )
            raise ValueError(f"reference image {index}: expected a uint8 tensor (3, H, W), got {what}")
        yield image


def _batches(
    images: Iterator[torch.Tensor], batch_size: int, hasher: ContentHasher
) -> Iterator[torch.Tensor]:
    batch: list[torch.Tensor] = []
    for image in images:
        hasher.update([image])
        batch.append(image)
        if len(batch) == batch_size:
            yield _stack(batch, hasher.count)
            batch = []
    if batch:
        yield _stack(batch, hasher.count)


def _stack(batch: list[torch.Tensor], seen: int) -> torch.Tensor:
    shapes = {tuple(image.shape) for image in batch}
    if len(shapes) > 1:
        raise ValueError(f"reference images {seen - len(batch)}..{seen - 1} differ in size: {sorted(shapes)}")
    return torch.stack(batch)


def content_hash(dataset: Any, limit: int | None) -> tuple[str, int, list[list[int]]]:
    """(sha256 over the reference images in order, number of images, their distinct [H, W] sizes)."""
    hasher = ContentHasher()
    sizes: set[tuple[int, int]] = set()
    for image in iterate_reference(dataset, limit):
        hasher.update([image])
        sizes.add((image.shape[1], image.shape[2]))
    return hasher.hexdigest(), hasher.count, [list(size) for size in sorted(sizes)]


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of features, as pytorch-fid computes them (``np.cov(rowvar=False)``)."""
    activations = np.asarray(features, dtype=np.float64)
    return np.mean(activations, axis=0), np.cov(activations, rowvar=False)


def _read(path: Path, key: dict[str, Any]) -> ReferenceStatistics:
    arrays = read_checked(path, key, ARRAYS, "reference")
    features = arrays["features"]
    return ReferenceStatistics(
        arrays["mu"], arrays["sigma"], features, features.shape[0], key["content_sha256"], key, path, True
    )


def _write_once(path: Path, stats: ReferenceStatistics) -> None:
    write_once(path, stats.key, {"mu": stats.mu, "sigma": stats.sigma, "features": stats.features}, "reference")


_MEMO: dict[int, tuple[weakref.ref, dict[str, ReferenceStatistics]]] = {}  # id(dataset) -> (ref, memo)
_MEMO_LOCK = threading.Lock()


def reference_statistics(
    dataset: Any,
    feature_fn: FeatureFn,
    protocol: dict[str, Any],
    reference_name: str,
    cache_dir: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 16,
) -> ReferenceStatistics:
    """Statistics of the first ``limit`` reference images under ``protocol``: cached, or computed.

    ``protocol`` holds exactly the fields that affect the features.  Within one process the result
    is also remembered per dataset object, so FID and KID of one evaluation read the images once.
    """
    memo_key = canonical({"protocol": protocol, "reference": reference_name, "limit": limit})
    memo = _memo_for(dataset)
    if memo_key in memo:
        return memo[memo_key]
    digest, count, resolution = content_hash(dataset, limit)
    if count < 2:
        raise ValueError(f"reference {reference_name!r}: needs at least 2 images, got {count}")
    key = {
        "protocol": protocol,
        "reference": reference_name,
        "reference_size": count,
        "resolution": resolution,
        "content_sha256": digest,
    }
    path = cache_path(cache_dir, key) if cache_dir is not None else None
    with _cache_lock(path):
        if path is not None and path.exists():
            stats = _read(path, key)
        else:
            hasher = ContentHasher()
            chunks = [
                feature_fn(batch) for batch in _batches(iterate_reference(dataset, limit), batch_size, hasher)
            ]
            if hasher.hexdigest() != digest:
                raise ReferenceCacheError(f"reference {reference_name!r} changed while it was being read")
            features = torch.cat(chunks).float().numpy()
            mu, sigma = gaussian_statistics(features)
            stats = ReferenceStatistics(mu, sigma, features, count, digest, key, path, False)
            if path is not None:
                _write_once(path, stats)
    with _MEMO_LOCK:
        memo[memo_key] = stats
    return stats


def _cache_lock(path: Path | None) -> AbstractContextManager:
    """A file lock beside the cache file (none without a cache): cells in parallel processes reach a
    task's reference together, and the first computes it while the others wait to read its file
    instead of repeating the Inception pass."""
    if path is None:
        return nullcontext()
    locks = path.parent / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    return FileLock(str(locks / f"{path.name}.lock"))


def _memo_for(dataset: Any) -> dict[str, ReferenceStatistics]:
    """The in-process memo of a dataset object, kept while the object lives (keyed by identity, as
    datasets need not be hashable); a throwaway dict for objects without weak references."""
    key = id(dataset)
    with _MEMO_LOCK:
        entry = _MEMO.get(key)
        if entry is not None and entry[0]() is dataset:
            return entry[1]
        try:
            reference = weakref.ref(dataset, lambda _ref: _MEMO.pop(key, None))
        except TypeError:  # e.g. a plain list: not remembered
            return {}
        _MEMO[key] = (reference, {})
        return _MEMO[key][1]
