"""GFLA's face structure encoding (vid2vid style): 16 channels drawn from 68 landmarks and the frame.

``face16`` channels, all in [0, 1]:

* 0: the edge map: 1-px curves along every part edge below, plus Canny edges (skimage defaults, on
  PIL's greyscale) of the frame itself outside the face-part region, as the original does with
  the target frame;
* 1-14: one distance map per part edge: taxicab distance d to that edge, ``min(floor(d / 3), 255) / 255``
  (the original's ``uint8(clip(d / 3, 0, 255))`` read back by ToTensor);
* 15: the part-label map ``label / 6`` with labels 0 background, 1 face, 2 brows, 3 nose, 4 eyes,
  5 mouth, 6 inner mouth, from filled polygons painted in that order (later parts on top).  The
  original feeds the raw integers 0-6 in this channel; it is scaled to [0, 1] here so that every
  structure channel shares one range.

``edges`` is channel 0 alone.

The 14 part edges (iBUG indices; ``U`` = the 15 synthesised upper-face points, listed 15 -> 1):

====  =====================  ===========================
 #    part                   landmark chain
====  =====================  ===========================
 1    face contour (closed)  0..16, U, 0
 2-3  brows                  17..21; 22..26
 4-6  nose                   28, 31; 31..35; 35, 28
 7-8  right eye              36..39; 39, 40, 41, 36
 9-10 left eye               42..45; 45, 46, 47, 42
11-12 outer lips             48..54; 54..59, 48
13-14 inner lips             60..64; 64..67, 60
====  =====================  ===========================

so 1 + 2 + 3 + 4 + 2 + 2 = 14.  The upper-face points mirror jaw points 1-15 about the ear line
(the mean row of jaw points 0 and 16) at 2/3 of their distance, closing the face outline over the
forehead (68 + 15 = 83 points).  Every chain is drawn as quadratic pieces through landmarks
(0, 1, 2), (2, 3, 4), ...; a final pair is a straight segment.  The original fits ``y = f(x)`` (or
``x = f(y)``) and drops pieces it cannot fit; here each piece is the parametric quadratic through its
three points (chord-length parameter), which passes through the same landmarks and never fails.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy.ndimage import distance_transform_cdt
from skimage.feature import canny

from bench.data.face_landmarks import (
    INNER_LIPS,
    LEFT_BROW,
    LEFT_EYE,
    LOWER_NOSE,
    NUM_LANDMARKS,
    OUTER_LIPS,
    RIGHT_BROW,
    RIGHT_EYE,
)

StructureMode = Literal["face16", "edges"]
STRUCTURE_CHANNELS: dict[str, int] = {"face16": 16, "edges": 1}

UPPER_FACE = tuple(range(82, 67, -1))  # indices of the synthesised upper-face points, 15 -> 1 order
FACE_CONTOUR = (*range(0, 17), *UPPER_FACE, 0)

PART_EDGES: tuple[tuple[int, ...], ...] = (
    FACE_CONTOUR,
    tuple(RIGHT_BROW),
    tuple(LEFT_BROW),
    (28, 31),
    tuple(LOWER_NOSE),
    (35, 28),
    (36, 37, 38, 39),
    (39, 40, 41, 36),
    (42, 43, 44, 45),
    (45, 46, 47, 42),
    (48, 49, 50, 51, 52, 53, 54),
    (54, 55, 56, 57, 58, 59, 48),
    (60, 61, 62, 63, 64),
    (64, 65, 66, 67, 60),
)

# (label, polygons) painted in this order.
PART_LABELS: tuple[tuple[int, tuple[tuple[int, ...], ...]], ...] = (
    (1, (FACE_CONTOUR[:-1],)),
    (2, (tuple(RIGHT_BROW), tuple(LEFT_BROW))),
    (3, ((28, *LOWER_NOSE),)),
    (4, (tuple(RIGHT_EYE), tuple(LEFT_EYE))),
    (5, (tuple(OUTER_LIPS),)),
    (6, (tuple(INNER_LIPS),)),
)
MAX_LABEL = 6
DISTANCE_DIVISOR = 3
DISTANCE_CLIP = 255


def with_upper_face(landmarks: np.ndarray) -> np.ndarray:
    """(83, 2): the 68 landmarks plus jaw points 1-15 mirrored about the ear line at 2/3 scale."""
    jaw = landmarks[1:16].astype(np.float64)
    baseline = (landmarks[0, 1] + landmarks[16, 1]) / 2.0
    upper = np.stack([jaw[:, 0], baseline + (baseline - jaw[:, 1]) * 2.0 / 3.0], axis=1)
    return np.concatenate([landmarks.astype(np.float64), upper], axis=0)


def _edge_pieces() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every quadratic piece of every part edge: its edge index, its 3 point indices (a final
    pair repeats its first point in the middle) and whether it is a straight pair."""
    edges, points, pairs = [], [], []
    for edge, chain in enumerate(PART_EDGES):
        for start in range(0, len(chain) - 1, 2):
            piece = chain[start : start + 3]
            edges.append(edge)
            points.append((piece[0], piece[1] if len(piece) == 3 else piece[0], piece[-1]))
            pairs.append(len(piece) == 2)
    return np.array(edges), np.array(points), np.array(pairs)


_PIECE_EDGE, _PIECE_POINTS, _PIECE_IS_PAIR = _edge_pieces()


def part_edge_masks(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """bool (14, H, W): the 8-connected 1-px curve of each part edge, from the (83, 2) points.

    Each piece is the parametric quadratic through its 3 points (knots 0, tau, 1 with tau the
    chord-length fraction at the middle point), sampled at most 0.5 px apart and through the
    landmarks themselves; a pair, or a piece with a repeated point, is a straight segment.
    """
    p0, p1, p2 = (points[_PIECE_POINTS[:, k]] for k in range(3))
    d1 = np.linalg.norm(p1 - p0, axis=1)
    d2 = np.linalg.norm(p2 - p1, axis=1)
    straight = _PIECE_IS_PAIR | (d1 == 0) | (d2 == 0)
    p1 = np.where(straight[:, None], (p0 + p2) / 2, p1)
    tau = np.where(straight, 0.5, d1 / np.maximum(d1 + d2, 1e-12))[:, None]

    def basis(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # Lagrange, knots 0, tau, 1
        return (u - tau) * (u - 1) / tau, u * (u - 1) / (tau * (tau - 1)), u * (u - tau) / (1 - tau)

    def velocity(u: float) -> np.ndarray:
        b0, b1, b2 = (2 * u - tau - 1) / tau, (2 * u - 1) / (tau * (tau - 1)), (2 * u - tau) / (1 - tau)
        return b0 * p0 + b1 * p1 + b2 * p2

    speed = max(np.linalg.norm(velocity(0.0), axis=1).max(), np.linalg.norm(velocity(1.0), axis=1).max())
    count = int(min(np.ceil(2 * speed), 4 * (height + width))) + 1
    b0, b1, b2 = basis(np.linspace(0.0, 1.0, count)[None, :])
    samples = b0[..., None] * p0[:, None] + b1[..., None] * p1[:, None] + b2[..., None] * p2[:, None]
    samples = np.concatenate([samples, p1[:, None]], axis=1)  # the middle landmarks exactly
    edge = np.repeat(_PIECE_EDGE, count + 1)
    cols, rows = np.rint(samples.reshape(-1, 2)).astype(np.int64).T
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    masks = np.zeros((len(PART_EDGES), height, width), dtype=bool)
    masks[edge[inside], rows[inside], cols[inside]] = True
    return masks


def part_label_map(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (H, W) labels 0-6 from the filled part polygons (see the module docstring).  Outlines
    are filled too (like OpenCV's fillPoly in the original), so a flat polygon such as a brow or a
    closed inner mouth still gets its label along its line."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for label, polygons in PART_LABELS:
        for indices in polygons:
            corners = [tuple(p) for p in points[list(indices)].tolist()]
            draw.polygon(corners, fill=label, outline=label)
    return np.asarray(canvas).copy()


def distance_map(edge: np.ndarray) -> np.ndarray:
    """float32 (H, W) in [0, 1]: ``min(floor(d / 3), 255) / 255`` for the taxicab distance d to ``edge``
    (all ones when the edge lies outside the image)."""
    if not edge.any():
        return np.ones(edge.shape, dtype=np.float32)
    distance = distance_transform_cdt(~edge, metric="taxicab")
    return (np.minimum(distance // DISTANCE_DIVISOR, DISTANCE_CLIP) / DISTANCE_CLIP).astype(np.float32)


def face_structure(
    landmarks: np.ndarray,
    height: int,
    width: int,
    frame: np.ndarray | None = None,
    mode: StructureMode = "face16",
) -> torch.Tensor:
    """The (S, H, W) float structure in [0, 1] of (68, 2) ``x, y`` pixel landmarks (S = 16 or 1).

    ``frame`` (uint8 (H, W, 3)), when given, adds its Canny edges outside the face parts to the
    edge map, as the original does with the target frame.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"expected (68, 2) landmarks in x, y order, got shape {landmarks.shape}")
    if mode not in STRUCTURE_CHANNELS:
        known = ", ".join(STRUCTURE_CHANNELS)
        raise ValueError(f"unknown face structure mode {mode!r}; expected one of {known}")
    if frame is not None and frame.shape[:2] != (height, width):
        raise ValueError(f"frame has shape {frame.shape}, expected ({height}, {width}, 3)")
    points = with_upper_face(landmarks)
    part_edges = part_edge_masks(points, height, width)
    edge_map = part_edges.any(axis=0)
    labels = part_label_map(points, height, width) if (mode == "face16" or frame is not None) else None
    if frame is not None:
        grey = np.asarray(Image.fromarray(frame).convert("L"))  # PIL's luma, as the original
        edge_map |= canny(grey) & (labels == 0)
    channels = [edge_map.astype(np.float32)]
    if mode == "face16":
        channels += [distance_map(edge) for edge in part_edges]
        channels.append(labels.astype(np.float32) / MAX_LABEL)
    return torch.from_numpy(np.stack(channels))
