"""COCO-18 keypoints (OpenPose order) and their Gaussian heatmap encoding, as GFLA builds it.

Keypoints are ``(K, 2)`` arrays of ``(y, x)`` pixel coordinates; a row holding :data:`MISSING` (-1)
is a joint the pose detector did not find.  Each joint becomes one channel
``exp(-((Y - y)^2 + (X - x)^2) / (2 sigma^2))`` with peak 1 at the joint, the coordinates first
truncated to integers as the original does; a missing joint gives an all-zero channel.  No limb
channels are drawn.
"""

from __future__ import annotations

import numpy as np
import torch

MISSING = -1

COCO18_NAMES = (
    "nose",
    "neck",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_eye",
    "left_eye",
    "right_ear",
    "left_ear",
)
NUM_KEYPOINTS = len(COCO18_NAMES)

# Bones of the OpenPose skeleton, used to draw stick figures over images.
COCO18_LIMBS = (
    (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip


def missing_mask(keypoints: np.ndarray) -> np.ndarray:
    """Boolean (K,) mask of the rows that mark a missing joint (either coordinate is -1)."""
    keypoints = np.asarray(keypoints)
    return (keypoints == MISSING).any(axis=1)


def keypoints_to_heatmaps(keypoints: np.ndarray, height: int, width: int, sigma: float) -> torch.Tensor:
    """Float32 (K, height, width) Gaussian heatmaps in [0, 1], one channel per ``(y, x)`` keypoint."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 2 or keypoints.shape[1] != 2:
        raise ValueError(f"keypoints: expected a (K, 2) array of (y, x), got shape {keypoints.shape}")
    if sigma <= 0:
        raise ValueError(f"sigma: expected a positive number of pixels, got {sigma}")
    present = ~missing_mask(keypoints)
    centres = np.trunc(keypoints)  # int() of the original: truncation toward zero
    # exp(-(dy^2 + dx^2) / 2s^2) = exp(-dy^2 / 2s^2) * exp(-dx^2 / 2s^2): an outer product per joint.
    rows = np.exp(-((np.arange(height)[None, :] - centres[:, :1]) ** 2) / (2 * sigma**2))
    cols = np.exp(-((np.arange(width)[None, :] - centres[:, 1:]) ** 2) / (2 * sigma**2))
    rows[~present] = 0.0
    maps = rows[:, :, None] * cols[:, None, :]
    return torch.from_numpy(maps.astype(np.float32))
