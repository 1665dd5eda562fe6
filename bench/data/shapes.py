"""Procedural ShapeNet-like chairs and cars, rendered on the Multiview2Novelview view grid.

Each object is assembled from trimesh primitives (boxes, cylinders, convex hulls); every part carries
a procedural 3D texture (stripes, checks, dots, value noise) evaluated at the ray's hit point in object
coordinates, so surface detail is fixed to the object and has to be transported between views, as in
real textured ShapeNet renders.  Views are ray cast with the embree intersector (chosen explicitly:
trimesh's ``mesh.ray`` silently falls back to a ~100x slower path) through a perspective camera that
orbits the object, shaded Lambertian (ambient + a light attached to the camera) on white.

Conventions: the object's front faces +z and its up axis is +y; azimuth is the camera's angle about
+y from the front towards +x, elevation its angle above the ground plane.  The output is the
Multiview2Novelview layout read by :mod:`bench.data.shapenet` (``data_<cat>.hdf5`` and split lists).
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import importlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import trimesh
from filelock import FileLock
from scipy import ndimage

from bench.config import ConfigError, TaskConfig
from bench.data.base import Progress, reject_unknown_keys
from bench.data.shapenet import (
    CATEGORIES,
    GRID,
    hdf5_name,
    test_ids_name,
    test_names_name,
    train_ids_name,
    view_id,
)

FOV_DEGREES = 40.0
CAMERA_DISTANCE = 3.0  # objects are scaled into the unit sphere, which then fills the 40 deg view
AMBIENT = 0.35
DIFFUSE = 0.65
LIGHT_IN_CAMERA = np.array([-0.45, 0.6, 1.0])  # (right, up, towards the viewer): upper left, frontal
BACKGROUND = 255
PARAMS_FILE = "params.json"
TEXTURE_KINDS = ("stripes", "checks", "dots", "noise")  # random patterns; "plain" is one colour


# ---------------------------------------------------------------------------------------------
# Parameters and caching
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShapesParams:
    """Generator parameters (``dataset.synthetic`` keys); any change gives a new cache directory."""

    category: str = "chair"
    resolution: int = 64  # square render size in pixels
    models_train: int = 80
    models_test: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ConfigError(
                f"dataset.synthetic.category: expected one of {', '.join(CATEGORIES)}, got {self.category!r}"
            )
        for key in ("resolution", "models_train", "models_test"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"dataset.synthetic.{key}: expected a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"dataset.synthetic.seed: expected a non-negative integer, got {self.seed!r}")

    @classmethod
    def from_config(cls, cfg: TaskConfig) -> ShapesParams:
        """Read ``cfg.dataset.synthetic``; the render size defaults to the larger configured side."""
        given = dict(cfg.dataset.synthetic)
        reject_unknown_keys(given, (f.name for f in fields(cls)), "dataset.synthetic", "synthetic_shapes")
        resolution = given.get("resolution", max(cfg.dataset.resolution))
        if isinstance(resolution, list):  # [H, W] as written in task YAMLs; renders are square
            if len(resolution) != 2 or resolution[0] != resolution[1]:
                raise ConfigError(
                    f"dataset.synthetic.resolution: expected a size or a square [H, W], got {resolution!r}"
                )
            resolution = resolution[0]
        return cls(**{**given, "resolution": resolution})

    def digest(self) -> str:
        """A short hash of the parameters, naming the cache directory."""
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def dataset_dir(params: ShapesParams, data_root: Path) -> Path:
    """Where the generated dataset for ``params`` lives."""
    return Path(data_root) / "synthetic" / f"shapes-{params.digest()}"


def ensure_dataset(params: ShapesParams, data_root: Path, progress: Progress | None = None) -> Path:
    """Return the dataset directory for ``params``, generating it first unless already cached.

    Generation writes into a temporary sibling directory that is renamed into place at the end, under
    a file lock, so concurrent callers and interrupted runs never see a half-written dataset.
    """
    target = dataset_dir(params, data_root)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if _cached(target, params):
            return target
        staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            write_dataset(params, staging, progress)
            (staging / PARAMS_FILE).write_text(json.dumps(asdict(params), indent=2, sort_keys=True) + "\n")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def _cached(directory: Path, params: ShapesParams) -> bool:
    path = directory / PARAMS_FILE
    try:
        return json.loads(path.read_text()) == asdict(params)
    except (OSError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# Procedural textures
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SurfaceTexture:
    """A two-colour pattern defined on 3D object coordinates."""

    kind: str  # one of TEXTURE_KINDS, or "plain" (base colour only)
    base: tuple[float, float, float]  # RGB in [0, 1]
    accent: tuple[float, float, float]
    frequency: float  # pattern repeats per object unit
    axis: tuple[float, float, float]  # stripe direction (unit vector)
    offset: tuple[float, float, float]  # pattern phase
    noise_seed: int = 0

    def colors(self, points: np.ndarray) -> np.ndarray:
        """RGB in [0, 1] of the pattern at ``points`` (N, 3)."""
        q = points * self.frequency + np.asarray(self.offset)
        if self.kind == "plain":
            mix = np.zeros(len(points))
        elif self.kind == "stripes":
            wave = np.sin(2 * np.pi * (q @ np.asarray(self.axis)))
            mix = 0.5 + 0.5 * np.clip(3.0 * wave, -1.0, 1.0)
        elif self.kind == "checks":
            mix = (np.floor(q).astype(np.int64).sum(axis=1) % 2).astype(float)
        elif self.kind == "dots":
            # two interleaved lattices: every plane passes within 0.25 of some dot centre, so no face
            # of a part can fall between the dots and come out blank
            nearest = np.minimum(np.linalg.norm(q - np.round(q), axis=1),
                                 np.linalg.norm(q + 0.5 - np.round(q + 0.5), axis=1))
            mix = (nearest < 0.36).astype(float)
        elif self.kind == "noise":
            mix = np.clip((self._value_noise(q) - 0.5) * 4.0 + 0.5, 0.0, 1.0)
        else:
            raise ValueError(f"unknown texture kind {self.kind!r}; expected plain or one of {TEXTURE_KINDS}")
        return np.asarray(self.base) + mix[:, None] * (np.asarray(self.accent) - np.asarray(self.base))

    def _value_noise(self, q: np.ndarray, cells: int = 16) -> np.ndarray:
        """Two octaves of trilinear value noise on a periodic random lattice."""
        lattice = np.random.default_rng(self.noise_seed).random((cells, cells, cells))
        coarse = ndimage.map_coordinates(lattice, (q % cells).T, order=1, mode="grid-wrap")
        fine = ndimage.map_coordinates(lattice, ((2.03 * q + 5.0) % cells).T, order=1, mode="grid-wrap")
        return (2 * coarse + fine) / 3


def random_texture(rng: np.random.Generator, kinds: tuple[str, ...] = TEXTURE_KINDS) -> SurfaceTexture:
    """A random pattern with two contrasting colours."""
    hue = rng.random()
    base = _hsv_to_rgb(hue, rng.uniform(0.35, 0.85), rng.uniform(0.55, 0.95))
    accent = _hsv_to_rgb((hue + rng.uniform(0.25, 0.75)) % 1.0, rng.uniform(0.3, 0.9), rng.uniform(0.2, 0.6))
    axis = rng.normal(size=3)
    return SurfaceTexture(
        kind=str(rng.choice(kinds)),
        base=base,
        accent=accent,
        frequency=float(rng.uniform(3.0, 7.0)),
        axis=tuple(float(a) for a in axis / np.linalg.norm(axis)),
        offset=tuple(float(o) for o in rng.random(3)),
        noise_seed=int(rng.integers(2**31)),
    )


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    return tuple(float(c) for c in colorsys.hsv_to_rgb(h, s, v))


def _plain(rgb: tuple[float, float, float]) -> SurfaceTexture:
    return SurfaceTexture("plain", rgb, rgb, 1.0, (1.0, 0.0, 0.0), (0.0, 0.0, 0.0))


# ---------------------------------------------------------------------------------------------
# Procedural objects
# ---------------------------------------------------------------------------------------------
@dataclass
class ShapeModel:
    """A mesh made of parts; ``face_part[i]`` indexes ``textures`` for face ``i``."""

    mesh: trimesh.Trimesh
    face_part: np.ndarray
    textures: list[SurfaceTexture]


class _Assembly:
    """Collects (mesh, texture) parts and joins them into one normalised ShapeModel."""

    def __init__(self) -> None:
        self.meshes: list[trimesh.Trimesh] = []
        self.textures: list[SurfaceTexture] = []

    def add(self, mesh: trimesh.Trimesh, texture: SurfaceTexture) -> None:
        self.meshes.append(mesh)
        self.textures.append(texture)

    def box(self, extents: tuple[float, float, float], center: tuple[float, float, float],
            texture: SurfaceTexture, rotation: np.ndarray | None = None) -> None:
        transform = np.eye(4)
        if rotation is not None:
            transform[:3, :3] = rotation
        transform[:3, 3] = center
        self.add(trimesh.creation.box(extents=extents, transform=transform), texture)

    def cylinder(self, start: tuple[float, float, float], end: tuple[float, float, float], radius: float,
                 texture: SurfaceTexture, sections: int = 24) -> None:
        self.add(trimesh.creation.cylinder(radius=radius, segment=[start, end], sections=sections), texture)

    def hull(self, points: np.ndarray, texture: SurfaceTexture) -> None:
        self.add(trimesh.convex.convex_hull(points), texture)

    def build(self) -> ShapeModel:
        """Join the parts, centre the bounding box at the origin and scale into the unit sphere."""
        mesh = trimesh.util.concatenate(self.meshes)
        face_part = np.repeat(np.arange(len(self.meshes)), [len(m.faces) for m in self.meshes])
        mesh.apply_translation(-mesh.bounds.mean(axis=0))
        mesh.apply_scale(1.0 / np.linalg.norm(mesh.vertices, axis=1).max())
        return ShapeModel(mesh=mesh, face_part=face_part, textures=self.textures)


def _rotation_x(angle: float) -> np.ndarray:
    return trimesh.transformations.rotation_matrix(angle, [1, 0, 0])[:3, :3]


def build_chair(rng: np.random.Generator) -> ShapeModel:
    """A chair, front towards +z: seat, back (slab or posts with slats), four legs or a pedestal
    with a four-spoke base, and optional arms; left/right symmetric."""
    parts = _Assembly()
    upholstery = random_texture(rng)
    frame = random_texture(rng)
    width, depth = rng.uniform(0.42, 0.62), rng.uniform(0.4, 0.58)
    thickness, height = rng.uniform(0.04, 0.1), rng.uniform(0.38, 0.5)
    parts.box((width, thickness, depth), (0, height - thickness / 2, 0), upholstery)

    back_height, back_thick = rng.uniform(0.35, 0.7), rng.uniform(0.03, 0.07)
    tilt = rng.uniform(0.0, np.radians(15))
    pivot = np.array([0.0, height, -depth / 2 + back_thick / 2])
    rotation = _rotation_x(-tilt)
    if rng.random() < 0.6:  # solid slab
        center = pivot + rotation @ np.array([0.0, back_height / 2, 0.0])
        parts.box((width, back_height, back_thick), tuple(center), upholstery, rotation)
    else:  # two posts and horizontal slats
        post = rng.uniform(0.03, 0.05)
        for side in (-1, 1):
            center = pivot + rotation @ np.array([side * (width - post) / 2, back_height / 2, 0.0])
            parts.box((post, back_height, back_thick), tuple(center), frame, rotation)
        slats = int(rng.integers(2, 5))
        slat_height = back_height / (2 * slats + 1) * rng.uniform(0.8, 1.2)
        for i in range(slats):
            y = back_height * (1 - (i + 0.5) / slats * 0.8) - slat_height / 2
            center = pivot + rotation @ np.array([0.0, y, 0.0])
            parts.box((width - 2 * post, slat_height, back_thick * 0.8), tuple(center), upholstery, rotation)

    seat_bottom = height - thickness
    if rng.random() < 0.7:  # four legs
        leg = rng.uniform(0.03, 0.06)
        round_legs = rng.random() < 0.5
        for sx in (-1, 1):
            for sz in (-1, 1):
                x, z = sx * (width / 2 - leg), sz * (depth / 2 - leg)
                if round_legs:
                    parts.cylinder((x, 0.0, z), (x, seat_bottom, z), leg / 2, frame, sections=12)
                else:
                    parts.box((leg, seat_bottom, leg), (x, seat_bottom / 2, z), frame)
    else:  # pedestal with a four-spoke base
        radius = rng.uniform(0.025, 0.045)
        base = rng.uniform(0.05, 0.1)
        parts.cylinder((0.0, base, 0.0), (0.0, seat_bottom, 0.0), radius, frame)
        spoke = max(width, depth) * rng.uniform(0.45, 0.6)
        for angle in np.radians([45, 135, 225, 315]):
            tip = np.array([np.sin(angle) * spoke, 0.03, np.cos(angle) * spoke])
            parts.cylinder((0.0, base, 0.0), tuple(tip), 0.022, frame, sections=8)
            parts.cylinder(tuple(tip), (tip[0], 0.0, tip[2]), 0.025, frame, sections=10)
    if rng.random() < 0.4:  # arms
        arm_height = rng.uniform(0.16, 0.26)
        arm = rng.uniform(0.04, 0.07)
        for side in (-1, 1):
            x = side * (width / 2 + arm / 2)
            parts.box((arm, 0.03, depth), (x, height + arm_height, 0.0), frame)
            parts.box((arm * 0.7, arm_height, arm * 0.7), (x, height + arm_height / 2, depth / 2 - arm), frame)
    return parts.build()


def build_car(rng: np.random.Generator) -> ShapeModel:
    """A car, front towards +z: body with a sloped hood, cabin with sloped windscreens, four
    cylinder wheels, head- and tail-lights; left/right symmetric."""
    parts = _Assembly()
    paint = random_texture(rng)
    glass = random_texture(rng, ("stripes", "noise"))  # reflections: grey-blue, finer
    glass = replace(glass, base=(0.25, 0.3, 0.38), accent=(0.5, 0.58, 0.68), frequency=glass.frequency * 2)
    tyre = SurfaceTexture("checks", (0.12, 0.12, 0.12), (0.35, 0.35, 0.35), 14.0, (1, 0, 0), (0.0, 0.0, 0.0))
    length, width = rng.uniform(0.9, 1.25), rng.uniform(0.42, 0.52)
    wheel_radius, wheel_width = rng.uniform(0.09, 0.13), rng.uniform(0.06, 0.09)
    floor = wheel_radius * rng.uniform(0.45, 0.7)
    body_top = floor + rng.uniform(0.14, 0.22)
    hood_drop = rng.uniform(0.0, 0.06)
    half_l, half_w = length / 2, width / 2
    body = np.array([[x, y, z] for x in (-half_w, half_w) for y in (floor, body_top) for z in (-half_l, half_l)])
    body[(body[:, 1] == body_top) & (body[:, 2] > 0), 1] -= hood_drop
    body[(body[:, 1] == floor), 2] *= 0.96  # slightly rounded-under bumpers
    parts.hull(body, paint)

    cabin_length = length * rng.uniform(0.4, 0.6)
    cabin_height = rng.uniform(0.11, 0.19)
    cabin_shift = length * rng.uniform(-0.12, 0.04)
    slope_front, slope_back = cabin_length * rng.uniform(0.15, 0.35), cabin_length * rng.uniform(0.05, 0.25)
    roof_front = cabin_shift + cabin_length / 2 - slope_front
    roof_back = cabin_shift - cabin_length / 2 + slope_back
    cabin = []
    for sx in (-1, 1):
        cabin += [
            [sx * half_w * 0.92, body_top, cabin_shift + cabin_length / 2],
            [sx * half_w * 0.92, body_top, cabin_shift - cabin_length / 2],
            [sx * half_w * 0.8, body_top + cabin_height, roof_front],
            [sx * half_w * 0.8, body_top + cabin_height, roof_back],
        ]
    parts.hull(np.array(cabin), glass)
    roof = np.array(cabin)[[2, 3, 6, 7]] * np.array([1.06, 1.0, 1.0])  # painted roof over the glass
    roof[:, 2] += np.where(roof[:, 2] > cabin_shift, 0.02, -0.02)
    parts.hull(np.concatenate([roof - np.array([0.0, 0.004, 0.0]), roof + np.array([0.0, 0.018, 0.0])]), paint)

    axle = half_l - wheel_radius * rng.uniform(1.3, 1.7)
    for sz in (-1, 1):
        for sx in (-1, 1):
            x_in, x_out = sx * (half_w - wheel_width * 0.6), sx * (half_w + wheel_width * 0.4)
            parts.cylinder((x_in, wheel_radius, sz * axle), (x_out, wheel_radius, sz * axle), wheel_radius, tyre)
    lamp = rng.uniform(0.05, 0.09)
    lamp_y = floor + (body_top - hood_drop - floor) * 0.6
    for sx in (-1, 1):
        x = sx * (half_w - lamp * 0.9)
        parts.box((lamp, lamp * 0.5, 0.02), (x, lamp_y, half_l), _plain((1.0, 0.93, 0.55)))
        parts.box((lamp, lamp * 0.5, 0.02), (x, lamp_y + hood_drop / 2, -half_l), _plain((0.85, 0.08, 0.08)))
    return parts.build()


BUILDERS: dict[str, Callable[[np.random.Generator], ShapeModel]] = {"chair": build_chair, "car": build_car}


def model_rng(params: ShapesParams, split: str, index: int) -> np.random.Generator:
    """The generator of model ``index`` of ``split``: independent of the other split's size."""
    return np.random.default_rng([params.seed, CATEGORIES.index(params.category), ("train", "test").index(split),
                                  index])


def model_name(params: ShapesParams, split: str, index: int) -> str:
    """A ShapeNet-style 32-hex-digit model id, deterministic in the parameters."""
    key = f"{params.category}/{params.seed}/{split}/{index}"
    return hashlib.md5(key.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
def camera_frame(azimuth_deg: float, elevation_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Camera centre (3,) and rotation (3, 3) whose rows are right, up and backward (towards the
    camera), for a camera on the orbit sphere looking at the origin."""
    a, e = np.radians(azimuth_deg), np.radians(elevation_deg)
    backward = np.array([np.cos(e) * np.sin(a), np.sin(e), np.cos(e) * np.cos(a)])
    right = np.cross(np.array([0.0, 1.0, 0.0]), backward)
    right /= np.linalg.norm(right)
    up = np.cross(backward, right)
    return CAMERA_DISTANCE * backward, np.stack([right, up, backward])


def camera_rays(azimuth_deg: float, elevation_deg: float, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Origins and unit directions (H*W, 3) of the rays through the pixel centres, row-major."""
    center, rotation = camera_frame(azimuth_deg, elevation_deg)
    half = np.tan(np.radians(FOV_DEGREES) / 2)
    ticks = ((np.arange(resolution) + 0.5) / resolution * 2 - 1) * half
    u, v = np.meshgrid(ticks, -ticks)  # u grows to the right, v grows upwards
    camera_dirs = np.stack([u.ravel(), v.ravel(), -np.ones(u.size)], axis=1)
    directions = camera_dirs @ rotation
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return np.broadcast_to(center, directions.shape), directions


def embree_intersector(mesh: trimesh.Trimesh) -> Any:
    """trimesh's embree ray intersector; raises instead of falling back to the slow pure-NumPy path."""
    try:
        ray_pyembree = importlib.import_module("trimesh.ray.ray_pyembree")
    except ImportError as exc:
        raise RuntimeError(
            "the shapes renderer needs embree ray casting (trimesh.ray.ray_pyembree), which failed to "
            f"import: {exc}; install it with `pip install embreex`"
        ) from exc
    return ray_pyembree.RayMeshIntersector(mesh)


@functools.lru_cache(maxsize=8)
def view_rays(views: tuple[tuple[float, float], ...], resolution: int) -> tuple[np.ndarray, ...]:
    """Ray origins, directions and unit directions to the light (V*H*W, 3) for ``views``
    [(azimuth deg, elevation deg)]; cached, since every model is rendered from the same views."""
    origins, directions, light = [], [], []
    for azimuth, elevation in views:
        o, d = camera_rays(azimuth, elevation, resolution)
        _, rotation = camera_frame(azimuth, elevation)
        to_light = LIGHT_IN_CAMERA @ rotation
        origins.append(o)
        directions.append(d)
        light.append(np.broadcast_to(to_light / np.linalg.norm(to_light), d.shape))
    arrays = tuple(np.concatenate(x) for x in (origins, directions, light))
    for array in arrays:
        array.flags.writeable = False
    return arrays


def embree_hits(model: ShapeModel, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Index of the first face each ray hits, -1 for a miss (embree ray casting)."""
    return embree_intersector(model.mesh).intersects_first(origins, directions)


def zbuffer_hits(model: ShapeModel, views: list[tuple[float, float]], resolution: int) -> np.ndarray:
    """The same as :func:`embree_hits` for the rays of ``views``, by a pure-NumPy z-buffer: each face
    is projected, the pixel centres inside it get their exact ray-plane depth, the nearest face wins.
    The dependency-free reference for the embree path (a loop over faces, so ~100x slower)."""
    vertices = model.mesh.vertices
    triangles = vertices[model.mesh.faces]
    normals = model.mesh.face_normals
    half = np.tan(np.radians(FOV_DEGREES) / 2)
    hits = []
    for azimuth, elevation in views:
        center, rotation = camera_frame(azimuth, elevation)
        _, directions = camera_rays(azimuth, elevation, resolution)
        directions = directions.reshape(resolution, resolution, 3)
        camera = (vertices - center) @ rotation.T  # x right, y up, z backward (visible: z < 0)
        cols = (camera[:, 0] / -camera[:, 2] / half + 1) / 2 * resolution - 0.5
        rows = (1 - camera[:, 1] / -camera[:, 2] / half) / 2 * resolution - 0.5
        screen = np.stack([cols, rows], axis=1)[model.mesh.faces]  # (F, 3, 2) pixel coordinates
        depth = np.full((resolution, resolution), np.inf)
        face_index = np.full((resolution, resolution), -1)
        for face, corners in enumerate(screen):
            low = np.maximum(np.ceil(corners.min(axis=0)).astype(int), 0)
            high = np.minimum(np.floor(corners.max(axis=0)).astype(int), resolution - 1)
            if (high < low).any():
                continue
            c, r = np.meshgrid(np.arange(low[0], high[0] + 1), np.arange(low[1], high[1] + 1))
            (x0, y0), (x1, y1), (x2, y2) = corners
            area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
            if area == 0:
                continue
            w0 = ((x1 - c) * (y2 - r) - (x2 - c) * (y1 - r)) * np.sign(area)
            w1 = ((x2 - c) * (y0 - r) - (x0 - c) * (y2 - r)) * np.sign(area)
            w2 = ((x0 - c) * (y1 - r) - (x1 - c) * (y0 - r)) * np.sign(area)
            inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
            rays = directions[r[inside], c[inside]]
            t = (triangles[face, 0] - center) @ normals[face] / (rays @ normals[face])
            closer = t < depth[r[inside], c[inside]]
            depth[r[inside][closer], c[inside][closer]] = t[closer]
            face_index[r[inside][closer], c[inside][closer]] = face
        hits.append(face_index.ravel())
    return np.concatenate(hits)


def render_views(model: ShapeModel, views: list[tuple[float, float]], resolution: int,
                 backend: str = "embree") -> np.ndarray:
    """Render ``views`` [(azimuth deg, elevation deg)] -> uint8 (V, H, W, 3).

    ``backend``: ``embree`` (one batched ray cast, the generator's path) or ``numpy`` (the z-buffer
    reference).  Both find the face seen through each pixel centre and shade it the same way.
    """
    origins, directions, light = view_rays(tuple(views), resolution)
    if backend == "embree":
        faces = embree_hits(model, origins, directions)
    elif backend == "numpy":
        faces = zbuffer_hits(model, views, resolution)
    else:
        raise ValueError(f"render backend: expected 'embree' or 'numpy', got {backend!r}")
    ray = np.flatnonzero(faces >= 0)
    tri = faces[ray]
    normals = model.mesh.face_normals[tri]
    on_plane = np.einsum("ij,ij->i", model.mesh.vertices[model.mesh.faces[tri, 0]] - origins[ray], normals)
    facing = np.einsum("ij,ij->i", normals, directions[ray])
    points = origins[ray] + (on_plane / facing)[:, None] * directions[ray]  # exact ray-plane hit
    normals = normals * -np.sign(facing)[:, None]  # towards the camera
    shade = AMBIENT + DIFFUSE * np.clip(np.einsum("ij,ij->i", normals, light[ray]), 0.0, None)
    parts = model.face_part[tri]
    albedo = np.empty((len(tri), 3))
    for index, texture in enumerate(model.textures):
        hit = parts == index
        if hit.any():
            albedo[hit] = texture.colors(points[hit])
    image = np.full((len(directions), 3), BACKGROUND / 255.0)
    image[ray] = albedo * shade[:, None]
    pixels = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
    return pixels.reshape(len(views), resolution, resolution, 3)


# ---------------------------------------------------------------------------------------------
# Writing the dataset
# ---------------------------------------------------------------------------------------------
def write_dataset(params: ShapesParams, out_dir: Path, progress: Progress | None = None) -> None:
    """Render every model of both splits into ``out_dir`` in the Multiview2Novelview layout."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cat = params.category
    builder = BUILDERS[cat]
    cameras = [(az * 10.0, float(el)) for az, el in GRID]  # pose: azimuth in 10 deg units
    counts = {"train": params.models_train, "test": params.models_test}
    total, done = sum(counts.values()), 0
    names: dict[str, list[str]] = {}
    with h5py.File(out_dir / hdf5_name(cat), "w", track_order=True) as h5:
        for split, count in counts.items():
            names[split] = []
            for index in range(count):
                name = model_name(params, split, index)
                model = builder(model_rng(params, split, index))
                images = render_views(model, cameras, params.resolution)
                for (az, el), image in zip(GRID, images):  # lzf: ~3x smaller files, cheap to decode
                    group = h5.create_group(view_id(name, az, el))
                    group.create_dataset("image", data=image, compression="lzf", track_times=False)
                    group.create_dataset("pose", data=np.array([az, el], dtype=np.int64), track_times=False)
                names[split].append(name)
                done += 1
                if progress is not None:
                    progress(f"rendering {cat} models", done, total)
    for split, file_name in (("train", train_ids_name(cat)), ("test", test_ids_name(cat))):
        lines = [view_id(name, az, el) for name in names[split] for az, el in GRID]
        (out_dir / file_name).write_text("\n".join(lines) + "\n")
    (out_dir / test_names_name(cat)).write_text("\n".join(names["test"]) + "\n")


def preview_sheet(models: int = 5, resolution: int = 96, seed: int = 0,
                  views: tuple[tuple[float, float], ...] = ((0, 0), (60, 10), (120, 20), (180, 0), (240, 10),
                                                            (300, 20))) -> np.ndarray:
    """A uint8 contact sheet: one row per training model (chairs, then cars), one column per view
    [(azimuth deg, elevation deg)]; ``datasets/samples/shapes.png`` is ``preview_sheet()``."""
    rows = []
    for category in CATEGORIES[::-1]:
        params = ShapesParams(category=category, resolution=resolution, seed=seed)
        for index in range(models):
            images = render_views(BUILDERS[category](model_rng(params, "train", index)), list(views), resolution)
            rows.append(np.concatenate(list(images), axis=1))
    return np.concatenate(rows, axis=0)
