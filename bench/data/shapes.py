"""Procedural ShapeNet-like chairs and cars, rendered on the Multiview2Novelview view grid, with
exact ground-truth correspondence between the views.

Each object is assembled from trimesh primitives (boxes, cylinders, convex hulls); every part carries
a procedural 3D texture (stripes, checks, dots, value noise) evaluated at the ray's hit point in object
coordinates, so surface detail is fixed to the object and has to be transported between views, as in
real textured ShapeNet renders.  Views are ray cast by a float64 z-buffer (:func:`cast_rays`) through a
perspective camera that orbits the object, shaded Lambertian (ambient + a light attached to the camera)
on white.

Conventions: the object's front faces +z and its up axis is +y; azimuth is the camera's angle about
+y from the front towards +x, elevation its angle above the ground plane.  The output is the
Multiview2Novelview layout of :mod:`bench.data.m2nv_layout`, read by :mod:`bench.data.shapenet`.

Ground truth.  Every view group of ``data_<cat>.hdf5`` also holds ``depth``: float32 (H, W), the length
of each pixel-centre ray from the camera centre to its first hit, 0 where the ray misses (background).
With the camera (FOV_DEGREES, CAMERA_DISTANCE, :func:`camera_frame`, :func:`pixel_rays`) it gives each
pixel's hit point in object coordinates, so any pair of views of a model has an exact correspondence
(:func:`view_correspondence`): the target's hit points projected into the source camera give the
backward flow target -> source in pixels (channel 0 = x), and a depth test against the source's own
depth map gives the visibility.  The loader computes it per pair (train and test pairs alike) from the
two stored depth maps.

Determinism.  The same parameters give bit-identical files on every CPU: ray casting, shading and the
camera use only elementwise float64 arithmetic (no BLAS products, no CPU-dispatched libm or embree
kernels), the trigonometry of the cameras is rounded to 12 decimals and the mesh vertices are snapped
to a 2^-20 grid (see :func:`cast_rays` for what used to differ).  GENERATOR_VERSION is part of the
cache key, so a change of the drawing or of the ground truth regenerates cached datasets.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import json
import math
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
from bench.data.m2nv_layout import (
    AZIMUTH_UNIT_DEGREES,
    CATEGORIES,
    DEPTH_KEY,
    GRID,
    hdf5_name,
    test_ids_name,
    test_names_name,
    train_ids_name,
    view_id,
)

GENERATOR_VERSION = 2  # bump when the drawing or the ground truth changes, so cached datasets are regenerated

FOV_DEGREES = 40.0
CAMERA_DISTANCE = 3.0  # objects are scaled into the unit sphere, which then fills the 40 deg view
AMBIENT = 0.35
DIFFUSE = 0.65
LIGHT_IN_CAMERA = np.array([-0.45, 0.6, 1.0])  # (right, up, towards the viewer): upper left, frontal
BACKGROUND = 255
PARAMS_FILE = "params.json"
TEXTURE_KINDS = ("stripes", "checks", "dots", "noise")  # random patterns; "plain" is one colour
VERTEX_GRID = 2.0**20  # vertices are snapped to multiples of 1 / VERTEX_GRID


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

    def stored(self) -> dict[str, Any]:
        """The parameters as stored in ``params.json`` (with the generator version)."""
        return {**asdict(self), "generator_version": GENERATOR_VERSION}

    def digest(self) -> str:
        """A short hash of the parameters and the generator version, naming the cache directory."""
        return hashlib.sha1(json.dumps(self.stored(), sort_keys=True).encode()).hexdigest()[:12]


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
            (staging / PARAMS_FILE).write_text(json.dumps(params.stored(), indent=2, sort_keys=True) + "\n")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target


def _cached(directory: Path, params: ShapesParams) -> bool:
    path = directory / PARAMS_FILE
    try:
        return json.loads(path.read_text()) == params.stored()
    except (OSError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# Arithmetic that gives the same bits on every CPU
# ---------------------------------------------------------------------------------------------
def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot product over the last axis (3), written out: elementwise IEEE arithmetic gives
    the same bits on every CPU, unlike BLAS kernels (FMA, blocking) chosen by the CPU model."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.sqrt(_dot(vectors, vectors))[..., None]


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
            wave = np.sin(2 * np.pi * _dot(q, np.asarray(self.axis)))
            mix = 0.5 + 0.5 * np.clip(3.0 * wave, -1.0, 1.0)
        elif self.kind == "checks":
            mix = (np.floor(q).astype(np.int64).sum(axis=1) % 2).astype(float)
        elif self.kind == "dots":
            # two interleaved lattices: every plane passes within 0.25 of some dot centre, so no face
            # of a part can fall between the dots and come out blank
            near, near_shifted = q - np.round(q), q + 0.5 - np.round(q + 0.5)
            nearest = np.minimum(_dot(near, near), _dot(near_shifted, near_shifted))
            mix = (nearest < 0.36**2).astype(float)
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
        # trimesh places the parts with BLAS products whose last bits depend on the CPU's kernels:
        # snapping to a 2^-20 grid (far below a pixel) makes the geometry identical everywhere
        mesh.vertices = np.round(mesh.vertices * VERTEX_GRID) / VERTEX_GRID
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
# Camera
# ---------------------------------------------------------------------------------------------
def _stable(value: float) -> float:
    """``value`` rounded to 12 decimals.  libm's sin, cos and tan may differ in the last bit between
    CPUs (numpy's AVX-512 tan does), and every camera and ray is derived from these few values."""
    return round(value, 12)


HALF_FOV_TAN = _stable(math.tan(math.radians(FOV_DEGREES) / 2))


def camera_frame(azimuth_deg: float, elevation_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Camera centre (3,) and rotation (3, 3) whose rows are right, up and backward (towards the
    camera), for a camera on the orbit sphere looking at the origin."""
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    sa, ca, se, ce = (_stable(f(x)) for f, x in ((math.sin, a), (math.cos, a), (math.sin, e), (math.cos, e)))
    backward = np.array([ce * sa, se, ce * ca])
    right = np.array([ca, 0.0, -sa])  # (0, 1, 0) x backward, normalised
    up = np.array([-se * sa, ce, -se * ca])  # backward x right
    return CAMERA_DISTANCE * backward, np.stack([right, up, backward])


def grid_camera(azimuth_index: int, elevation: int) -> tuple[float, float]:
    """(azimuth deg, elevation deg) of the camera of an M2NV grid view (pose = [az index, el])."""
    return azimuth_index * AZIMUTH_UNIT_DEGREES, float(elevation)


@functools.lru_cache(maxsize=256)
def pixel_rays(azimuth_deg: float, elevation_deg: float, resolution: int) -> np.ndarray:
    """Unit directions (H*W, 3) of the rays from the camera centre through the pixel centres, row-major
    (read-only: cached, as every model and every loaded pair uses the same few views)."""
    right, up, backward = camera_frame(azimuth_deg, elevation_deg)[1]
    ticks = ((np.arange(resolution) + 0.5) / resolution * 2 - 1) * HALF_FOV_TAN
    u, v = np.meshgrid(ticks, -ticks)  # u grows to the right, v grows upwards
    rays = _unit(u.ravel()[:, None] * right + v.ravel()[:, None] * up - backward)
    rays.flags.writeable = False
    return rays


def project(points: np.ndarray, azimuth_deg: float, elevation_deg: float,
            resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (column, row) of ``points`` (N, 3) in a view; pixel (c, r) is centred at
    (c, r), so the ray of :func:`pixel_rays` through pixel (c, r) projects back to exactly (c, r)."""
    center, rotation = camera_frame(azimuth_deg, elevation_deg)
    offset = points - center
    depth = -_dot(offset, rotation[2])  # along the viewing direction
    cols = (_dot(offset, rotation[0]) / depth / HALF_FOV_TAN + 1) / 2 * resolution - 0.5
    rows = (1 - _dot(offset, rotation[1]) / depth / HALF_FOV_TAN) / 2 * resolution - 0.5
    return cols, rows


@functools.lru_cache(maxsize=8)
def view_rays(views: tuple[tuple[float, float], ...], resolution: int) -> tuple[np.ndarray, ...]:
    """Ray origins, directions and unit directions to the light (V*H*W, 3) for ``views``
    [(azimuth deg, elevation deg)]; cached, since every model is rendered from the same views."""
    origins, directions, light = [], [], []
    for azimuth, elevation in views:
        center, rotation = camera_frame(azimuth, elevation)
        rays = pixel_rays(azimuth, elevation, resolution)
        to_light = _unit(LIGHT_IN_CAMERA[0] * rotation[0] + LIGHT_IN_CAMERA[1] * rotation[1]
                         + LIGHT_IN_CAMERA[2] * rotation[2])
        origins.append(np.broadcast_to(center, rays.shape))
        directions.append(rays)
        light.append(np.broadcast_to(to_light, rays.shape))
    arrays = tuple(np.concatenate(x) for x in (origins, directions, light))
    for array in arrays:
        array.flags.writeable = False
    return arrays


# ---------------------------------------------------------------------------------------------
# Ray casting and shading
# ---------------------------------------------------------------------------------------------
def face_normals(triangles: np.ndarray) -> np.ndarray:
    """Unit normals (F, 3) of triangles (F, 3, 3), written out elementwise (see :func:`_dot`)."""
    e1, e2 = triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]
    cross = np.stack([e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1], e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2],
                      e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]], axis=1)
    return _unit(cross)


def cast_rays(model: ShapeModel, views: list[tuple[float, float]], resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """First face hit by each pixel-centre ray of ``views`` (V*H*W,), -1 for a miss, and the ray
    length to it (0 for a miss).

    A float64 z-buffer: each triangle is projected, the pixel centres inside it get their exact
    ray-plane distance, the nearest wins, and an exact tie goes to the lower face index.  Only
    elementwise IEEE arithmetic, so the result is bit-identical on every CPU.  (The generator used
    to cast with embree, whose float32 kernels are chosen by the CPU: its AVX2 and AVX-512 paths
    picked different first faces for 58 of the 17.7 M training pixels of the quick chair set.)
    """
    triangles = model.mesh.vertices[model.mesh.faces]
    normals = face_normals(triangles)
    pixels = resolution * resolution
    faces = np.full(len(views) * pixels, -1, dtype=np.int64)
    distances = np.zeros(len(views) * pixels)
    none = len(triangles)
    for index, (azimuth, elevation) in enumerate(views):
        center, _ = camera_frame(azimuth, elevation)
        rays = pixel_rays(azimuth, elevation, resolution)
        cols, rows = (a.reshape(-1, 3) for a in project(triangles.reshape(-1, 3), azimuth, elevation, resolution))
        low_c = np.maximum(np.ceil(cols.min(axis=1)), 0).astype(np.int64)
        low_r = np.maximum(np.ceil(rows.min(axis=1)), 0).astype(np.int64)
        width = np.minimum(np.floor(cols.max(axis=1)), resolution - 1).astype(np.int64) - low_c + 1
        height = np.minimum(np.floor(rows.max(axis=1)), resolution - 1).astype(np.int64) - low_r + 1
        area = ((cols[:, 1] - cols[:, 0]) * (rows[:, 2] - rows[:, 0])
                - (cols[:, 2] - cols[:, 0]) * (rows[:, 1] - rows[:, 0]))
        kept = np.flatnonzero((width > 0) & (height > 0) & (area != 0))
        counts = (width * height)[kept]
        face = np.repeat(kept, counts)  # one candidate per (face, pixel of its bounding box)
        local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        c, r = low_c[face] + local % width[face], low_r[face] + local // width[face]
        fc, fr, sign = cols[face], rows[face], np.sign(area[face])
        inside = np.ones(len(face), dtype=bool)
        for i, j in ((1, 2), (2, 0), (0, 1)):  # the edge functions of the three edges
            inside &= ((fc[:, i] - c) * (fr[:, j] - r) - (fc[:, j] - c) * (fr[:, i] - r)) * sign >= 0
        face, pixel = face[inside], (r * resolution + c)[inside]
        distance = _dot(triangles[face, 0] - center, normals[face]) / _dot(rays[pixel], normals[face])
        nearest = np.full(pixels, np.inf)
        np.minimum.at(nearest, pixel, distance)
        closest = distance == nearest[pixel]
        first = np.full(pixels, none)
        np.minimum.at(first, pixel[closest], face[closest])
        hit = first < none
        faces[index * pixels:(index + 1) * pixels][hit] = first[hit]
        distances[index * pixels:(index + 1) * pixels][hit] = nearest[hit]
    return faces, distances


def render_views(model: ShapeModel, views: list[tuple[float, float]], resolution: int,
                 lit: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Render ``views`` [(azimuth deg, elevation deg)] -> (uint8 images (V, H, W, 3), float32 depth
    (V, H, W): the ray length to each pixel's hit, 0 where the ray misses).

    ``lit=False`` gives the unshaded albedo (the ground-truth check separates shading from transport).
    """
    origins, directions, light = view_rays(tuple(views), resolution)
    faces, distances = cast_rays(model, views, resolution)
    ray = np.flatnonzero(faces >= 0)
    tri = faces[ray]
    points = origins[ray] + distances[ray, None] * directions[ray]
    normals = face_normals(model.mesh.vertices[model.mesh.faces[tri]])
    normals = normals * -np.sign(_dot(normals, directions[ray]))[:, None]  # towards the camera
    shade = AMBIENT + DIFFUSE * np.clip(_dot(normals, light[ray]), 0.0, None) if lit else np.ones(len(ray))
    parts = model.face_part[tri]
    albedo = np.empty((len(tri), 3))
    for index, texture in enumerate(model.textures):
        hit = parts == index
        if hit.any():
            albedo[hit] = texture.colors(points[hit])
    image = np.full((len(directions), 3), BACKGROUND / 255.0)
    image[ray] = albedo * shade[:, None]
    pixels = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
    shape = (len(views), resolution, resolution)
    return pixels.reshape(*shape, 3), distances.astype(np.float32).reshape(shape)


# ---------------------------------------------------------------------------------------------
# Ground-truth correspondence
# ---------------------------------------------------------------------------------------------
DEPTH_TOLERANCE_PIXELS = 1.5  # depth test tolerance, in pixel footprints at the point's distance


def view_correspondence(target_depth: np.ndarray, source_depth: np.ndarray, target_view: tuple[float, float],
                        source_view: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Backward flow target -> source (2, H, W) and visibility (1, H, W), float32, from two views'
    depth maps (:func:`render_views`) at the written resolution; views are (azimuth deg, elevation deg).

    Each target pixel's hit point (object coordinates) is projected into the source camera: the flow
    is that position minus the pixel's own (channel 0 = x).  It is visible when the source's own
    depth there (bilinear over the source pixels that carry weight, all of which must be hits) is
    the point's distance from the source camera within DEPTH_TOLERANCE_PIXELS pixel footprints,
    and it lands inside the image.  Background pixels get flow 0 and visibility 0.
    """
    resolution = target_depth.shape[0]
    distance = target_depth.reshape(-1).astype(np.float64)
    hit = np.flatnonzero(distance > 0)
    points = camera_frame(*target_view)[0] + distance[hit, None] * pixel_rays(*target_view, resolution)[hit]
    cols, rows = project(points, *source_view, resolution)
    seen_from = points - camera_frame(*source_view)[0]
    expected = np.sqrt(_dot(seen_from, seen_from))
    flow = np.zeros((2, resolution * resolution))
    flow[0, hit], flow[1, hit] = cols - hit % resolution, rows - hit // resolution

    usable = (cols >= 0) & (cols <= resolution - 1) & (rows >= 0) & (rows <= resolution - 1)
    c0 = np.clip(np.floor(cols), 0, resolution - 1).astype(np.int64)
    r0 = np.clip(np.floor(rows), 0, resolution - 1).astype(np.int64)
    fc, fr = cols - c0, rows - r0
    source = source_depth.astype(np.float64)
    sampled = np.zeros(len(hit))
    for dr, dc, weight in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        depth = source[np.minimum(r0 + dr, resolution - 1), np.minimum(c0 + dc, resolution - 1)]
        usable &= (depth > 0) | (weight < 1e-6)  # a neighbour that carries weight must be a hit
        sampled += weight * depth
    footprint = 2 * expected * HALF_FOV_TAN / resolution
    visible = np.zeros(resolution * resolution)
    visible[hit] = usable & (np.abs(sampled - expected) <= DEPTH_TOLERANCE_PIXELS * footprint)
    shape = (resolution, resolution)
    return flow.reshape(2, *shape).astype(np.float32), visible.reshape(1, *shape).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Writing the dataset
# ---------------------------------------------------------------------------------------------
def write_dataset(params: ShapesParams, out_dir: Path, progress: Progress | None = None) -> None:
    """Render every model of both splits into ``out_dir`` in the Multiview2Novelview layout."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cat = params.category
    builder = BUILDERS[cat]
    cameras = [grid_camera(az, el) for az, el in GRID]
    counts = {"train": params.models_train, "test": params.models_test}
    total, done = sum(counts.values()), 0
    names: dict[str, list[str]] = {}
    with h5py.File(out_dir / hdf5_name(cat), "w", track_order=True) as h5:
        for split, count in counts.items():
            names[split] = []
            for index in range(count):
                name = model_name(params, split, index)
                model = builder(model_rng(params, split, index))
                images, depths = render_views(model, cameras, params.resolution)
                for (az, el), image, depth in zip(GRID, images, depths):  # lzf: ~3x smaller, cheap to decode
                    group = h5.create_group(view_id(name, az, el))
                    group.create_dataset("image", data=image, compression="lzf", track_times=False)
                    group.create_dataset(DEPTH_KEY, data=depth, compression="lzf", track_times=False)
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
            images, _ = render_views(BUILDERS[category](model_rng(params, "train", index)), list(views), resolution)
            rows.append(np.concatenate(list(images), axis=1))
    return np.concatenate(rows, axis=0)
