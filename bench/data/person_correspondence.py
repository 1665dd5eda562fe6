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
from pathlib import Path

import numpy as np

BACKGROUND = -1  # shape index of pixels no recorded shape covers
GROUND_TRUTH_SPLITS = {"all": ("train", "test"), "test": ("test",), "none": ()}


@dataclass(frozen=True)
class Frame:
    """Affine map from a part's coordinates (body units) to output pixels: ``origin + matrix @ c``."""

    origin: np.ndarray  # (2,) pixels
    matrix: np.ndarray  # (2, 2)

    @staticmethod
    def rigid(centre: np.ndarray, unit: float, angle: float = 0.0) -> Frame:
        """Offsets from ``centre`` in body units, turned by ``angle`` (radians, from the image axes)."""
        c, s = math.cos(angle), math.sin(angle)
        return Frame(np.asarray(centre, dtype=float), unit * np.array([[c, -s], [s, c]]))

    @staticmethod
    def along(corners: np.ndarray, length: float, unit: float) -> Frame:
        """A limb-like quad (a_left, a_right, b_right, b_left), symmetric about its axis a -> b:
        coordinates (distance along from a, ``length`` at b; offset across towards a_right), the
        layout of the garment patterns (:func:`bench.data.persons._draw_part`)."""
        start = (corners[0] + corners[1]) / 2
        end = (corners[2] + corners[3]) / 2
        across = corners[1] - corners[0]
        across = across / max(float(np.hypot(*across)), 1e-9) * unit
        return Frame(start, np.stack([(end - start) / length, across], axis=1))

    def to_pixels(self, coords: np.ndarray) -> np.ndarray:
        return self.origin + coords @ self.matrix.T

    def to_coords(self, points: np.ndarray) -> np.ndarray:
        return (points - self.origin) @ np.linalg.inv(self.matrix).T


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

    def contains(self, xy: np.ndarray) -> np.ndarray:
        """Even-odd rule at the points (m, 2)."""
        inside = np.zeros(len(xy), dtype=bool)
        x, y = xy[:, 0], xy[:, 1]
        for (x0, y0), (x1, y1) in zip(self.points, np.roll(self.points, -1, axis=0)):
            crosses = (y0 > y) != (y1 > y)
            with np.errstate(divide="ignore", invalid="ignore"):
                at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
            inside ^= crosses & (x < at)
        return inside


@dataclass(frozen=True)
class Ellipse:
    """An axis-aligned ellipse (PIL draws no other), radii in pixels; with ``arc`` (start, end
    degrees, clockwise from +x as PIL counts them, parametric angles) the chord between them."""

    centre: np.ndarray
    radii: tuple[float, float]
    arc: tuple[float, float] | None = None

    def contains(self, xy: np.ndarray) -> np.ndarray:
        d = (xy - self.centre) / np.array(self.radii)
        inside = (d**2).sum(axis=1) <= 1.0
        if self.arc is None:
            return inside
        start, end = (math.radians(a) for a in self.arc)
        p0, p1 = (np.array([math.cos(a), math.sin(a)]) for a in (start, end))
        middle = (start + ((end - start) % (2 * math.pi)) / 2)  # the arc runs clockwise from start to end
        towards = np.array([math.cos(middle), math.sin(middle)])
        edge = p1 - p0
        side = edge[0] * (d[:, 1] - p0[1]) - edge[1] * (d[:, 0] - p0[0])
        arc_side = edge[0] * (towards[1] - p0[1]) - edge[1] * (towards[0] - p0[0])
        return inside & (side * np.sign(arc_side) >= 0)


Shape = Polygon | Ellipse


@dataclass
class Recording:
    """The recorded shapes of one drawing, in drawing order (later ones on top)."""

    shapes: list[tuple[Shape, Part]]
    _grids: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def topmost(self, xy: np.ndarray) -> np.ndarray:
        """Index of the topmost shape at each point (m, 2), ``BACKGROUND`` where none covers it."""
        top = np.full(len(xy), BACKGROUND, dtype=np.int64)
        for index, (shape, _) in enumerate(self.shapes):
            low, high = _bounds(shape)
            near = np.nonzero(((xy >= low) & (xy <= high)).all(axis=1))[0]
            if len(near):
                top[near[shape.contains(xy[near])]] = index
        return top

    def grid(self, height: int, width: int) -> np.ndarray:
        """:meth:`topmost` at every pixel centre, (H, W); computed once per size (a drawing is the
        target of several pairs)."""
        if (height, width) in self._grids:
            return self._grids[height, width]
        top = np.full((height, width), BACKGROUND, dtype=np.int64)
        for index, (shape, _) in enumerate(self.shapes):
            low, high = _bounds(shape)
            x0, y0 = np.maximum(np.ceil(low).astype(int), 0)
            x1, y1 = np.minimum(np.floor(high).astype(int), [width - 1, height - 1])
            if x1 < x0 or y1 < y0:
                continue
            ys, xs = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
            inside = shape.contains(np.stack([xs.ravel(), ys.ravel()], axis=1).astype(float))
            top[y0 : y1 + 1, x0 : x1 + 1][inside.reshape(xs.shape)] = index
        self._grids[height, width] = top
        return top


def _bounds(shape: Shape) -> tuple[np.ndarray, np.ndarray]:
    """The shape's bounding box (min xy, max xy) in pixels."""
    if isinstance(shape, Polygon):
        return shape.points.min(axis=0), shape.points.max(axis=0)
    radii = np.array(shape.radii)
    return shape.centre - radii, shape.centre + radii


def _pixel_centres(height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(float)


def correspondence(
    source: Recording, target: Recording, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Backward flow target -> source, float32 (2, H, W) in pixels (channel 0 = x), and the
    visibility, bool (H, W), of two drawings of one identity at ``height`` x ``width``.

    Where the target's part is drawn in the source but hidden there, the flow still points at it;
    where the source lacks the part, the flow is 0.
    """
    centres = _pixel_centres(height, width)
    target_top = target.grid(height, width).ravel()
    source_top = source.grid(height, width).ravel()
    source_frames = {part.key: part.frame for _, part in source.shapes}
    flow = np.zeros((len(centres), 2))
    visible = (target_top == BACKGROUND) & (source_top == BACKGROUND)
    mapped = np.zeros(len(centres), dtype=bool)
    for index in np.unique(target_top[target_top != BACKGROUND]):
        part = target.shapes[index][1]
        if part.key in source_frames:
            at = target_top == index
            flow[at] = source_frames[part.key].to_pixels(part.frame.to_coords(centres[at])) - centres[at]
            mapped |= at
    points = centres[mapped] + flow[mapped]
    found = source.topmost(points)
    source_keys = [part.key for _, part in source.shapes]
    visible[mapped] = [
        top != BACKGROUND and source_keys[top] == target.shapes[want][1].key
        for top, want in zip(found.tolist(), target_top[mapped].tolist())
    ]
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
