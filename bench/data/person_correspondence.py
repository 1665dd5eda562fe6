"""Exact correspondence between two drawings of one synthetic person (:mod:`bench.data.persons`).

While it draws, the person renderer records every shape that bounds a body part (a limb segment's
quad, a joint cap, the torso, the head, the hair, a print of a garment, the logo) with the *part*
it belongs to: a key naming the same surface element in every image of an identity, and the part's
frame, the affine map from the part's own coordinates (body units: along and across a limb, as the
garment patterns are laid out, or offsets from a round shape's centre) to output pixels.  Pattern
stripes and checks are not recorded: they lie inside their part's quad and are a function of its
coordinates, so they move with it.

From the two recordings, :func:`correspondence` gives the backward flow target -> source and the
visibility of every target pixel (pixel centres at integers, as the renderer draws):

* a body pixel: the topmost recorded shape at its centre names the part and, through the part's
  frame, its coordinates; the source frame of the same part maps them to a source point.  The
  pixel is visible iff the source's topmost shape at that exact point belongs to the same part
  (the same coordinates follow, one frame per part and image): this handles self-occlusion, far
  limbs behind the torso and parts drawn differently per view (a target part the source lacks,
  the face against the back of the head, is invisible);
* a backdrop pixel: all images of an identity share one backdrop, drawn without the figure in
  mind, so its point stays where it is: flow 0, visible iff the source's figure does not cover it.

A part keeps its key across views although the drawing paints, say, a limb's inner and outer side
(or the torso's front and back) with one garment layout: what the two images share is the drawing's
part coordinates, so that is what the flow follows.  Far limbs in side views are drawn darker
(``shade`` 0.75): they stay visible, and :attr:`Part.shade` lets a check count them apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

BACKGROUND = -1  # shape index of pixels no recorded shape covers
TIE = 1e-6  # pixels: how near an outline a point counts as on it (see correspondence())
GROUND_TRUTH_SPLITS = {"all": ("train", "test"), "test": ("test",), "none": ()}


@dataclass(frozen=True)
class Frame:
    """Affine map from a part's coordinates (body units) to output pixels: ``origin + matrix @ c``.

    All arithmetic here is elementwise IEEE double (no BLAS, whose summation order and fused
    multiply-adds vary with the CPU), so the ground truth is the same on every machine.
    """

    origin: tuple[float, float]  # pixels
    matrix: tuple[tuple[float, float], tuple[float, float]]

    @staticmethod
    def rigid(centre: np.ndarray, unit: float, angle: float = 0.0) -> Frame:
        """Offsets from ``centre`` in body units, turned by ``angle`` (radians, from the image axes)."""
        c, s = math.cos(angle) * unit, math.sin(angle) * unit
        return Frame((float(centre[0]), float(centre[1])), ((c, -s), (s, c)))

    @staticmethod
    def along(corners: np.ndarray, length: float, unit: float) -> Frame:
        """A limb-like quad (a_left, a_right, b_right, b_left), symmetric about its axis a -> b:
        coordinates (distance along from a, ``length`` at b; offset across towards a_right), the
        layout of the garment patterns (:func:`bench.data.persons._draw_part`)."""
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = np.asarray(corners, dtype=float).tolist()
        start = ((x0 + x1) / 2, (y0 + y1) / 2)
        end = ((x2 + x3) / 2, (y2 + y3) / 2)
        norm = max(math.hypot(x1 - x0, y1 - y0), 1e-9)
        across = ((x1 - x0) / norm * unit, (y1 - y0) / norm * unit)
        along = ((end[0] - start[0]) / length, (end[1] - start[1]) / length)
        return Frame(start, ((along[0], across[0]), (along[1], across[1])))

    def inverse(self) -> Frame:
        """The map from output pixels back to the part's coordinates."""
        (a, b), (c, d) = self.matrix
        det = a * d - b * c
        inv = ((d / det, -b / det), (-c / det, a / det))
        ox, oy = self.origin
        return Frame((-(inv[0][0] * ox + inv[0][1] * oy), -(inv[1][0] * ox + inv[1][1] * oy)), inv)

    def then(self, other: Frame) -> Frame:
        """``other`` applied after this map."""
        (a, b), (c, d) = other.matrix
        (e, f), (g, h) = self.matrix
        ox, oy = self.origin
        matrix = ((a * e + b * g, a * f + b * h), (c * e + d * g, c * f + d * h))
        return Frame((a * ox + b * oy + other.origin[0], c * ox + d * oy + other.origin[1]), matrix)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """The map at points (m, 2)."""
        (a, b), (c, d) = self.matrix
        x, y = points[:, 0], points[:, 1]
        return np.stack([a * x + b * y + self.origin[0], c * x + d * y + self.origin[1]], axis=1)


@dataclass(frozen=True)
class Part:
    """What a recorded shape belongs to: ``key`` names the surface element in every image of the
    identity; ``frame`` places its coordinates in this image; ``shade`` is the colour factor it was
    drawn with (0.75 for a side view's far limbs)."""

    key: tuple
    frame: Frame
    shade: float = 1.0


@dataclass(frozen=True)
class Polygon:
    points: np.ndarray  # (n, 2) output pixels

    @cached_property
    def bounds(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """The bounding box ((min x, min y), (max x, max y)) in pixels."""
        return tuple(self.points.min(axis=0).tolist()), tuple(self.points.max(axis=0).tolist())

    @cached_property
    def _edges(self) -> list[tuple[tuple[float, float], tuple[float, float]]]:
        corners = self.points.tolist()
        return list(zip(corners, corners[1:] + corners[:1]))

    def contains(self, xy: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Even-odd rule at the points (m, 2); points within ``|margin|`` pixels of an edge count
        as inside for a positive margin, outside for a negative one."""
        inside = np.zeros(len(xy), dtype=bool)
        on_edge = np.zeros(len(xy), dtype=bool)
        x, y = xy[:, 0], xy[:, 1]
        for (x0, y0), (x1, y1) in self._edges:
            crosses = (y0 > y) != (y1 > y)
            with np.errstate(divide="ignore", invalid="ignore"):
                at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
            inside ^= crosses & (x < at)
            if margin:
                dx, dy = x1 - x0, y1 - y0
                t = np.clip(((x - x0) * dx + (y - y0) * dy) / max(dx * dx + dy * dy, 1e-300), 0.0, 1.0)
                on_edge |= (x - x0 - t * dx) ** 2 + (y - y0 - t * dy) ** 2 <= margin * margin
        return inside | on_edge if margin > 0 else inside & ~on_edge


@dataclass(frozen=True)
class Ellipse:
    """An axis-aligned ellipse (PIL draws no other), radii in pixels; with ``arc`` (start, end
    degrees, clockwise from +x as PIL counts them, parametric angles) the chord between them."""

    centre: np.ndarray
    radii: tuple[float, float]
    arc: tuple[float, float] | None = None

    @cached_property
    def bounds(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """The bounding box ((min x, min y), (max x, max y)) in pixels (of the whole ellipse)."""
        (cx, cy), (rx, ry) = self.centre.tolist(), self.radii
        return (cx - rx, cy - ry), (cx + rx, cy + ry)

    def contains(self, xy: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Whether the points (m, 2) lie inside, the outline moved out by ``margin`` pixels
        (about: exact for circles and for the chord's straight side)."""
        d = (xy - self.centre) / (np.array(self.radii) + margin)
        inside = d[:, 0] ** 2 + d[:, 1] ** 2 <= 1.0
        if self.arc is None:
            return inside
        start, end = (math.radians(a) for a in self.arc)
        p0, p1 = (np.array([math.cos(a), math.sin(a)]) for a in (start, end))
        middle = (start + ((end - start) % (2 * math.pi)) / 2)  # the arc runs clockwise from start to end
        towards = np.array([math.cos(middle), math.sin(middle)])
        edge = p1 - p0
        side = edge[0] * (d[:, 1] - p0[1]) - edge[1] * (d[:, 0] - p0[0])
        arc_side = edge[0] * (towards[1] - p0[1]) - edge[1] * (towards[0] - p0[0])
        tolerance = margin / min(self.radii) * math.hypot(*edge)
        return inside & (side * np.sign(arc_side) >= -tolerance)


Shape = Polygon | Ellipse


@dataclass
class Recording:
    """The recorded shapes of one drawing, in drawing order (later ones on top)."""

    shapes: list[tuple[Shape, Part]]
    _grids: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def topmost(self, xy: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Index of the topmost shape at each point (m, 2), ``BACKGROUND`` where none covers it;
        shapes grown by ``margin`` pixels (shrunk where negative)."""
        top = np.full(len(xy), BACKGROUND, dtype=np.int64)
        x, y = xy[:, 0], xy[:, 1]
        for index, (shape, _) in enumerate(self.shapes):
            (x0, y0), (x1, y1) = shape.bounds
            near = np.nonzero((x >= x0) & (x <= x1) & (y >= y0) & (y <= y1))[0]
            if len(near):
                top[near[shape.contains(xy[near], margin)]] = index
        return top

    def grid(self, height: int, width: int) -> np.ndarray:
        """:meth:`topmost` at every pixel centre, (H, W); computed once per size (a drawing is the
        target of several pairs)."""
        if (height, width) in self._grids:
            return self._grids[height, width]
        top = np.full((height, width), BACKGROUND, dtype=np.int64)
        for index, (shape, _) in enumerate(self.shapes):
            (left, low), (right, high) = shape.bounds
            x0, y0 = max(math.ceil(left), 0), max(math.ceil(low), 0)
            x1, y1 = min(math.floor(right), width - 1), min(math.floor(high), height - 1)
            if x1 < x0 or y1 < y0:
                continue
            ys, xs = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
            inside = shape.contains(np.stack([xs.ravel(), ys.ravel()], axis=1).astype(float))
            top[y0 : y1 + 1, x0 : x1 + 1][inside.reshape(xs.shape)] = index
        self._grids[height, width] = top
        return top


def _pixel_centres(height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(float)


def correspondence(
    source: Recording, target: Recording, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Backward flow target -> source, float32 (2, H, W) in pixels (channel 0 = x), and the
    visibility, bool (H, W), of two drawings of one identity at ``height`` x ``width``.

    Where the target's part is drawn in the source but hidden there, the flow still points at it;
    where the source lacks the part, the flow is 0.  Keypoints are integer pixels, so outlines
    often pass exactly through the points tested; a point within ``TIE`` pixels of an outline
    counts as inside its own part and outside the parts drawn over it, so rounding never decides.
    """
    for recording in (source, target):
        keys = [part.key for _, part in recording.shapes]
        if len(set(keys)) != len(keys):
            raise ValueError(f"correspondence: a part key names several shapes of one drawing: {keys}")
    centres = _pixel_centres(height, width)
    target_top = target.grid(height, width).ravel()
    source_top = source.grid(height, width).ravel()
    source_index = {part.key: index for index, (_, part) in enumerate(source.shapes)}
    flow = np.zeros((len(centres), 2))
    visible = (target_top == BACKGROUND) & (source_top == BACKGROUND)
    groups = []
    for index in np.unique(target_top[target_top != BACKGROUND]).tolist():
        part = target.shapes[index][1]
        if part.key in source_index:
            at = np.nonzero(target_top == index)[0]
            own = source.shapes[source_index[part.key]][1]
            points = part.frame.inverse().then(own.frame).apply(centres[at])
            flow[at] = points - centres[at]
            groups.append((at, points, source_index[part.key]))
    if groups:
        at = np.concatenate([g[0] for g in groups])
        points = np.concatenate([g[1] for g in groups])
        own = np.concatenate([np.full(len(g[0]), g[2]) for g in groups])
        shown = source.topmost(points) == own
        # Only a point found hidden can be on an outline that rounding decided (the tie rule only
        # ever adds visibility): test those again, own part grown by TIE, the parts over it shrunk.
        again = np.nonzero(~shown)[0]
        over = source.topmost(points[again], -TIE)
        inside = np.zeros(len(again), dtype=bool)
        for index in np.unique(own[again]).tolist():
            those = own[again] == index
            inside[those] = source.shapes[index][0].contains(points[again][those], TIE)
        shown[again] = inside & (over <= own[again])
        visible[at] = shown
    return flow.T.reshape(2, height, width).astype(np.float32), visible.reshape(height, width)


# ---------------------------------------------------------------------------------------------
# Files: one pair of arrays per split, row k = the k-th pair of ``<prefix>-pairs-<split>.csv``
# ---------------------------------------------------------------------------------------------
def ground_truth_paths(root: Path, prefix: str, split: str) -> tuple[Path, Path]:
    """``<prefix>-flow-<split>.npy`` (N, 2, H, W) float32 and ``<prefix>-visibility-<split>.npy``
    (N, H, W) uint8 (0/1), in the order of the split's pairs CSV."""
    return Path(root) / f"{prefix}-flow-{split}.npy", Path(root) / f"{prefix}-visibility-{split}.npy"


class GroundTruthWriter:
    """Writes a split's flows and visibilities row by row into memory-mapped ``.npy`` files, so the
    largest profiles never hold them in memory."""

    def __init__(self, root: Path, prefix: str, split: str, count: int, height: int, width: int) -> None:
        flow_path, visibility_path = ground_truth_paths(root, prefix, split)
        self.flow = np.lib.format.open_memmap(flow_path, "w+", np.float32, (count, 2, height, width))
        self.visibility = np.lib.format.open_memmap(visibility_path, "w+", np.uint8, (count, height, width))
        self.row = 0

    def add(self, flow: np.ndarray, visibility: np.ndarray) -> None:
        self.flow[self.row] = flow
        self.visibility[self.row] = visibility
        self.row += 1

    def close(self) -> None:
        if self.row != len(self.flow):
            raise ValueError(f"ground truth: wrote {self.row} of {len(self.flow)} pairs")
        self.flow.flush()
        self.visibility.flush()
        del self.flow, self.visibility
