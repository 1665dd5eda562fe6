"""Checks and fingerprints of the uint8 image batches that every metric receives."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch


def check_images(images: torch.Tensor, what: str = "images") -> torch.Tensor:
    """Return ``images`` if it is a uint8 (N, 3, H, W) tensor with N >= 1, else raise naming ``what``."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{what}: expected a uint8 torch.Tensor (N, 3, H, W), got {type(images).__name__}")
    if images.dtype != torch.uint8:
        raise TypeError(f"{what}: expected dtype torch.uint8 (images as written to disk), got {images.dtype}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"{what}: expected shape (N, 3, H, W), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"{what}: the batch is empty")
    return images


def check_pairs(fake: torch.Tensor, real: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Check the inputs of a paired metric: two uint8 batches of the same shape."""
    check_images(fake, "fake")
    if real is None:
        raise ValueError("real: a paired metric needs the ground-truth images, got None")
    check_images(real, "real")
    if fake.shape != real.shape:
        raise ValueError(
            f"fake and real must have the same shape, got {tuple(fake.shape)} and {tuple(real.shape)}"
        )
    return fake, real


class ContentHasher:
    """sha256 over images in order; each image contributes its shape and its pixel bytes."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self.count = 0

    def update(self, images: Iterable[torch.Tensor]) -> None:
        for image in images:
            array = image.detach().cpu().contiguous().numpy()
            self._sha.update(f"{array.dtype.str}{array.shape}".encode())
            self._sha.update(memoryview(array).cast("B"))
            self.count += 1

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def content_sha256(images: torch.Tensor) -> str:
    """The content hash of a batch (N, 3, H, W), the same as hashing its images one by one."""
    hasher = ContentHasher()
    hasher.update(images)
    return hasher.hexdigest()
