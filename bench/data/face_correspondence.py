"""Exact correspondence between the frames of a synthetic face video, from how they were drawn.

The generator (faces.py) paints every frame as layers in a fixed order: the static backdrop (background
and shoulders), then head parts (long hair behind, the neck, ears, earrings, the face sheet with its
features, the hair cap, a bun, a hat, glasses).  Each head part is a flat 2D drawing whose vertices are points
of the moving head (projected template points, the rounded landmarks, the corners of the ear ellipses
...).  A part's *mesh* is a fixed triangulation of those vertices (made once per video in a canonical,
frontal pose; an ellipse is four triangles from its centre to the corners of its box, a stroke the quad
around it); in every frame the part's pixels are the piecewise-affine image of the same triangles.
So a pixel of frame t on part L at barycentric weights b of triangle k is the point
``sum_i b_i * V_s[k_i]`` of any other frame s: that is the correspondence, exact at every vertex and
affine in between, for any pair of frames (training clips start anywhere).

It is stored per video as ``<phase>_correspondence/<video>.npz``::

    labels        uint8 (T, H, W)  the layer shown at each pixel (the majority of its 2x2 supersamples):
                  0 = backdrop, i = layer_names[i - 1], 255 = no correspondence (eye openings with
                  their lids and irises, the inside of the mouth with the teeth: blinks, gaze and the
                  opening mouth draw content there that has no counterpart in another frame)
    layer_names   str (L,)
    vertices_<i>  float64 (T, N_i, 2)  x, y of layer i's mesh vertices in pixels of the written image
                  (pixel centres at integers)
    triangles_<i> int32 (M_i, 3)       the mesh, each of positive signed area in the canonical pose

Backward flow target t -> source s at a target pixel p (:meth:`VideoCorrespondence.pair`):

* backdrop pixels: the backdrop never moves (it is one image reused by every frame), so the flow is 0,
  visible where the source shows the backdrop at p too;
* head pixels: q = the point's position in s; visible where frame s shows the same layer at q (nearest
  pixel) and neither frame folds the mesh there (a triangle turned back-facing under yaw, or two
  triangles over one pixel).  Edge pixels whose centre lies just outside their layer's mesh (the labels
  are the majority of 2x2 supersamples) use the nearest triangle's map, extrapolated;
* label 255: visibility 0, flow 0.

The skin is lit by a gradient fixed in the image (faces.py), so a face point's colour changes slightly
as it moves: a warp by the exact flow reproduces the target only up to that and the antialiasing.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import distance_transform_edt

BACKDROP = 0
NO_CORRESPONDENCE = 255
DIRECTORY = "{phase}_correspondence"  # next to {phase}_data/ in the dataset directory
_INSIDE = 1e-7  # barycentric margin: a pixel strictly inside more than one triangle is a fold


def correspondence_dir(root: Path, phase: str) -> Path:
    return Path(root) / DIRECTORY.format(phase=phase)


def correspondence_path(root: Path, phase: str, video: str) -> Path:
    return correspondence_dir(root, phase) / f"{video}.npz"


def signed_areas(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Twice the signed area of each triangle in x-right, y-down pixels (the stored meshes are positive)."""
    a, b, c = (vertices[triangles[:, i]] for i in range(3))
    return (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])


@dataclass(frozen=True)
class Raster:
    """Which front-facing triangle of a mesh covers each point of a grid."""

    triangle: np.ndarray  # int (h, w), -1 where none (within 1.5 grid steps of the mesh: the nearest one)
    weights: np.ndarray  # float (h, w, 3) barycentric weights in that triangle
    folds: np.ndarray  # bool (h, w): strictly inside two or more front-facing triangles


def _barycentric(corners: np.ndarray, px: np.ndarray, py: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Barycentric weights (..., 3) of points (px, py) in triangles ``corners`` (..., 3, 2) of twice-area ``area``."""
    (ax, ay), (bx, by), (cx, cy) = (np.moveaxis(corners[..., i, :], -1, 0) for i in range(3))
    wa = ((bx - px) * (cy - py) - (by - py) * (cx - px)) / area
    wb = ((cx - px) * (ay - py) - (cy - py) * (ax - px)) / area
    return np.stack([wa, wb, 1.0 - wa - wb], axis=-1)


def rasterize(vertices: np.ndarray, triangles: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> Raster:
    """The mesh (front-facing triangles only) at the grid points (ys[i], xs[j]); xs, ys increasing.

    Vectorised over triangles: each is evaluated on its bounding box of grid points, padded to the next
    power of two so that triangles of one size class are done in one array operation."""
    h, w = len(ys), len(xs)
    triangle = np.full(h * w, -1, dtype=np.int64)
    weights = np.zeros((h * w, 3))
    inside_count = np.zeros(h * w, dtype=np.int64)
    areas = signed_areas(vertices, triangles) if len(triangles) else np.zeros(0)
    front = np.flatnonzero(areas > 1e-12)
    corners = vertices[triangles[front]]  # (n, 3, 2)
    low, high = corners.min(axis=1), corners.max(axis=1)
    j0, j1 = np.searchsorted(xs, low[:, 0] - 1e-9), np.searchsorted(xs, high[:, 0] + 1e-9, side="right")
    i0, i1 = np.searchsorted(ys, low[:, 1] - 1e-9), np.searchsorted(ys, high[:, 1] + 1e-9, side="right")
    span = np.maximum(j1 - j0, i1 - i0)
    size_class = np.ceil(np.log2(np.maximum(span, 1))).astype(np.int64)
    for size in np.unique(size_class[span > 0]):
        chosen = np.flatnonzero((size_class == size) & (span > 0))
        steps = np.arange(2**size)
        cols, rows = j0[chosen, None] + steps, i0[chosen, None] + steps  # (n, s)
        valid = (rows < i1[chosen, None])[:, :, None] & (cols < j1[chosen, None])[:, None, :]
        px = xs[np.minimum(cols, w - 1)][:, None, :]
        py = ys[np.minimum(rows, h - 1)][:, :, None]
        chosen_corners = corners[chosen][:, None, None]  # (n, 1, 1, 3, 2) against points (n, s, s)
        bary = _barycentric(chosen_corners, px, py, areas[front[chosen]][:, None, None])  # (n, s, s, 3)
        smallest = bary.min(axis=-1)
        pixel = np.minimum(rows, h - 1)[:, :, None] * w + np.minimum(cols, w - 1)[:, None, :]
        covered = valid & (smallest >= -1e-9)
        triangle[pixel[covered]] = np.broadcast_to(front[chosen][:, None, None], covered.shape)[covered]
        weights[pixel[covered]] = bary[covered]
        np.add.at(inside_count, pixel[valid & (smallest > _INSIDE)], 1)
    triangle, weights = _extend(triangle.reshape(h, w), weights.reshape(h, w, 3), vertices, triangles, xs, ys)
    return Raster(triangle, weights, inside_count.reshape(h, w) > 1)


def _extend(
    triangle: np.ndarray,
    weights: np.ndarray,
    vertices: np.ndarray,
    triangles: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Give the grid points just outside the mesh (up to 1.5 grid steps) the triangle of the nearest
    covered point, with its affine map extrapolated: the 2x2 supersampled labels put a layer on some
    pixels whose centre lies a fraction of a pixel outside the layer's polygon."""
    covered = triangle >= 0
    if covered.all() or not covered.any():
        return triangle, weights
    distance, (from_rows, from_cols) = distance_transform_edt(~covered, return_indices=True)
    near = ~covered & (distance <= 1.5)
    nearest = triangle[from_rows[near], from_cols[near]]
    rows, cols = np.nonzero(near)
    area = signed_areas(vertices, triangles)[nearest]
    triangle, weights = triangle.copy(), weights.copy()
    triangle[near] = nearest
    weights[near] = _barycentric(vertices[triangles[nearest]], xs[cols], ys[rows], area)
    return triangle, weights


def _nearest(coordinates: np.ndarray, size: int) -> np.ndarray:
    return np.clip(np.rint(coordinates), 0, size - 1).astype(np.int64)


@dataclass(frozen=True)
class VideoCorrespondence:
    """The stored correspondence of one video (the format in the module docstring)."""

    labels: np.ndarray  # uint8 (T, H, W)
    layer_names: tuple[str, ...]
    vertices: tuple[np.ndarray, ...]  # per layer (T, N, 2)
    triangles: tuple[np.ndarray, ...]  # per layer (M, 3)

    @property
    def frames(self) -> int:
        return self.labels.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        return self.labels.shape[1], self.labels.shape[2]

    def save(self, path: Path) -> None:
        arrays = {"labels": self.labels, "layer_names": np.array(self.layer_names)}
        for i, (vertices, triangles) in enumerate(zip(self.vertices, self.triangles), start=1):
            arrays[f"vertices_{i}"] = vertices.astype(np.float64)
            arrays[f"triangles_{i}"] = triangles.astype(np.int32)
        path.parent.mkdir(parents=True, exist_ok=True)
        # An .npz written entry by entry with a fixed timestamp, so the same content gives the same bytes
        # (np.savez stamps the current time) and the dataset's content hash is stable.
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, array in arrays.items():
                entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                entry.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(entry, "w") as handle:
                    np.lib.format.write_array(handle, np.ascontiguousarray(array), allow_pickle=False)

    @classmethod
    def load(cls, path: Path) -> VideoCorrespondence:
        """Read ``path``; a malformed file raises ValueError naming it and the key at fault."""
        try:
            return cls._read(path)
        except (zipfile.BadZipFile, EOFError) as exc:
            raise ValueError(f"{path}: not a readable .npz archive ({exc})") from None

    @classmethod
    def _read(cls, path: Path) -> VideoCorrespondence:
        with np.load(path, allow_pickle=False) as data:
            names = tuple(str(n) for n in data["layer_names"]) if "layer_names" in data.files else None
            count = 0 if names is None else len(names)
            needed = [
                "labels",
                "layer_names",
                *(f"{kind}_{i}" for i in range(1, count + 1) for kind in ("vertices", "triangles")),
            ]
            missing = [key for key in needed if key not in data.files]
            if missing:
                raise ValueError(f"{path}: missing array {missing[0]!r}; expected the layout of {__name__}")
            labels = data["labels"]
            vertices = tuple(data[f"vertices_{i}"] for i in range(1, count + 1))
            triangles = tuple(data[f"triangles_{i}"].astype(np.int64) for i in range(1, count + 1))
        if labels.dtype != np.uint8 or labels.ndim != 3:
            raise ValueError(f"{path}: labels must be uint8 (T, H, W), got {labels.dtype} {labels.shape}")
        for i, (v, t) in enumerate(zip(vertices, triangles), start=1):
            if v.ndim != 3 or v.shape[0] != labels.shape[0] or v.shape[2] != 2:
                raise ValueError(f"{path}: vertices_{i} must be (T={labels.shape[0]}, N, 2), got {v.shape}")
            if t.ndim != 2 or t.shape[1] != 3 or (t.size and (t.min() < 0 or t.max() >= v.shape[1])):
                raise ValueError(f"{path}: triangles_{i} must be (M, 3) indices into {v.shape[1]} vertices")
        return cls(labels, names, vertices, triangles)

    def pair(
        self, target: int, source: int, size: tuple[int, int] | None = None, cache: dict | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Backward flow (2, h, w) float64 target -> source and visibility (h, w) bool at ``size``
        (h, w; default the written size), in pixels of that size, pixel centres mapped onto centres."""
        height, width = self.size
        h, w = size or (height, width)
        xs = (np.arange(w) + 0.5) * width / w - 0.5  # the loaded grid in written pixels
        ys = (np.arange(h) + 0.5) * height / h - 0.5
        cache = {} if cache is None else cache
        query = self._rasters(target, xs, ys, cache)
        written = self._rasters(source, np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64), cache)
        labels = self.labels[target][_nearest(ys, height)[:, None], _nearest(xs, width)[None, :]]
        px, py = np.meshgrid(xs, ys)
        qx, qy = px.copy(), py.copy()
        visible = np.zeros((h, w), dtype=bool)
        source_labels = self.labels[source]
        static = labels == BACKDROP
        visible[static] = source_labels[_nearest(py[static], height), _nearest(px[static], width)] == BACKDROP
        for index, (vertices, triangles) in enumerate(zip(self.vertices, self.triangles), start=1):
            raster = query[index]
            on_layer = (labels == index) & (raster.triangle >= 0)
            if not on_layer.any():
                continue
            tri = raster.triangle[on_layer]
            corners = vertices[source][triangles[tri]]  # (n, 3, 2)
            point = np.einsum("nk,nkc->nc", raster.weights[on_layer], corners)
            qx[on_layer], qy[on_layer] = point[:, 0], point[:, 1]
            front = signed_areas(vertices[source], triangles)[tri] > 1e-12
            inside = (np.abs(point[:, 0] - (width - 1) / 2) < width / 2) & (
                np.abs(point[:, 1] - (height - 1) / 2) < height / 2
            )
            sx, sy = _nearest(point[:, 0], width), _nearest(point[:, 1], height)
            same = (source_labels[sy, sx] == index) & ~written[index].folds[sy, sx]
            visible[on_layer] = front & inside & same & ~raster.folds[on_layer]
        # Back to the loaded grid: q' + 0.5 = (q + 0.5) * w / width.
        flow = np.stack(
            [
                (qx + 0.5) * w / width - 0.5 - np.arange(w)[None, :],
                (qy + 0.5) * h / height - 0.5 - np.arange(h)[:, None],
            ]
        )
        return flow, visible

    def _rasters(self, frame: int, xs: np.ndarray, ys: np.ndarray, cache: dict) -> dict[int, Raster]:
        key = (frame, len(xs), len(ys))
        if key not in cache:
            cache[key] = {
                index: rasterize(vertices[frame], triangles, xs, ys)
                for index, (vertices, triangles) in enumerate(zip(self.vertices, self.triangles), start=1)
            }
        return cache[key]

    def sample(self, indices: Sequence[int], size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``flows_gt`` (T, 2, 2, h, w) and ``visibility_gt`` (T, 2, 1, h, w) float32 of the frames at
        ``indices`` with the model's two sources per frame: [:, 0] the previous frame of the sample
        (the first for the first), [:, 1] the sample's first frame (the reference)."""
        cache: dict = {}
        flows, visibility = [], []
        for position, frame in enumerate(indices):
            sources = (indices[max(position - 1, 0)], indices[0])
            pairs = [self.pair(frame, source, size, cache) for source in sources]
            flows.append(np.stack([flow for flow, _ in pairs]))
            visibility.append(np.stack([visible[None] for _, visible in pairs]))
        return np.stack(flows).astype(np.float32), np.stack(visibility).astype(np.float32)
