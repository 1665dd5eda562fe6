"""Procedural talking-face videos in the FaceForensics layout GFLA reads (frames + 68 landmarks).

Each video is one identity: a 68-point iBUG-order 3D face template with per-identity shape jitter,
skin tone with a shading gradient and optional freckles, hair (colour and style), eyes with irises,
lips, a striped shirt and accessories (glasses, earrings, a hat) on a static background, so a
model has appearance to transport.  Over the frames, expression (mouth opening, smile, blinks,
brow raise, gaze) and head pose (yaw, pitch, roll about a neck pivot, weak perspective, small drift
and zoom) follow sums of slow sinusoids, so motion is smooth.  Landmarks are projected, rounded to
integer pixels, and the features are then drawn at exactly those points (on a 2x canvas, LANCZOS
down), so the written landmark files are where the face is.  Everything is a function of the seed.

Layout written under ``<data_root>/synthetic/faces-<params hash>/``::

    params.json
    {train,test}_data/<video>/<frame>.png
    {train,test}_keypoints/<video>/<frame>.txt      68 lines "x,y"
    {train,test}_correspondence/<video>.npz         ground truth: layer labels and meshes per frame

The ground truth comes from the drawing itself: every primitive is painted a second time as the id of
its layer (``_LayeredCanvas``), and each layer records the vertices it is drawn from, so any two frames
of a video have an exact correspondence (format and flow: face_correspondence.py).  It adds nothing
to the frames, which are the bytes they were before it existed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock
from PIL import Image, ImageDraw
from scipy.spatial import Delaunay

from bench.config import ConfigError, TaskConfig
from bench.data.base import Progress, reject_unknown_keys
from bench.data.face_correspondence import (
    BACKDROP,
    NO_CORRESPONDENCE,
    VideoCorrespondence,
    correspondence_path,
    signed_areas,
)
from bench.data.face_landmarks import (
    INNER_LIPS,
    LEFT_BROW,
    LEFT_EYE,
    MIRROR,
    NUM_LANDMARKS,
    OUTER_LIPS,
    RIGHT_BROW,
    RIGHT_EYE,
    write_landmarks,
)

GENERATOR_VERSION = 2  # bump when the drawing changes, so cached datasets are regenerated
SUPERSAMPLE = 2
PHASES = ("train", "test")
HAIR_STYLES = ("short", "long", "bangs", "bun", "buzz")

# -------------------------------------------------------------------------------------------------
# Parameters
# -------------------------------------------------------------------------------------------------
_DEFAULTS = {"videos_train": 60, "videos_test": 6, "frames_per_video": 40, "seed": 0}


@dataclass(frozen=True)
class FaceGeneratorParams:
    """What the synthetic face dataset depends on (its hash names the cache directory)."""

    resolution: tuple[int, int]  # H, W
    videos_train: int
    videos_test: int
    frames_per_video: int
    seed: int

    @classmethod
    def from_config(cls, cfg: TaskConfig) -> FaceGeneratorParams:
        """Read ``dataset.synthetic`` (resolution defaults to ``dataset.resolution``)."""
        given = dict(cfg.dataset.synthetic)
        reject_unknown_keys(given, {"resolution", *_DEFAULTS}, "dataset.synthetic", "synthetic_faces")
        values = {**_DEFAULTS, "resolution": cfg.dataset.resolution, **given}
        resolution = values["resolution"]
        if isinstance(resolution, int):
            resolution = [resolution, resolution]
        if not (
            isinstance(resolution, (list, tuple))
            and len(resolution) == 2
            and all(isinstance(v, int) and v >= 16 for v in resolution)
        ):
            raise ConfigError(f"dataset.synthetic.resolution: expected [H, W] integers >= 16, got {resolution!r}")
        for key in _DEFAULTS:
            value = values[key]
            minimum = 0 if key in ("videos_test", "seed") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(f"dataset.synthetic.{key}: expected an integer >= {minimum}, got {value!r}")
        return cls(
            tuple(resolution), values["videos_train"], values["videos_test"], values["frames_per_video"], values["seed"]
        )

    def to_dict(self) -> dict:
        return {"generator": "synthetic_faces", "version": GENERATOR_VERSION, **asdict(self)}

    def digest(self) -> str:
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


# -------------------------------------------------------------------------------------------------
# Geometry: the template (x right, y down, z towards the camera; face half-width ~1)
# -------------------------------------------------------------------------------------------------
def _jaw_half() -> list[tuple[float, float, float]]:
    points = []
    for i in range(9):
        angle = np.pi * i / 16
        points.append((-(np.cos(angle) ** 0.8), -0.1 + 1.1 * np.sin(angle), -0.7 + np.sin(angle)))
    return points


# Image-left half of the face (the subject's right); the other half is its mirror image.
_LEFT_HALF: dict[int, tuple[float, float, float]] = {
    **dict(enumerate(_jaw_half())),
    **{
        17 + i: p
        for i, p in enumerate(
            [
                (-0.80, -0.50, 0.25),
                (-0.65, -0.60, 0.38),
                (-0.49, -0.63, 0.45),
                (-0.33, -0.61, 0.50),
                (-0.18, -0.55, 0.52),
            ]
        )
    },
    **{27 + i: (0.0, y, z) for i, (y, z) in enumerate([(-0.38, 0.55), (-0.22, 0.68), (-0.05, 0.8), (0.1, 0.92)])},
    31: (-0.20, 0.20, 0.60),
    32: (-0.10, 0.24, 0.68),
    33: (0.0, 0.26, 0.72),
    **{
        36 + i: p
        for i, p in enumerate(
            [
                (-0.66, -0.27, 0.30),
                (-0.54, -0.34, 0.42),
                (-0.38, -0.34, 0.45),
                (-0.26, -0.26, 0.44),
                (-0.38, -0.21, 0.45),
                (-0.54, -0.21, 0.42),
            ]
        )
    },
    48: (-0.38, 0.58, 0.42),
    49: (-0.24, 0.52, 0.55),
    50: (-0.09, 0.49, 0.62),
    51: (0.0, 0.51, 0.64),
    57: (0.0, 0.74, 0.60),
    58: (-0.11, 0.73, 0.58),
    59: (-0.26, 0.68, 0.50),
    60: (-0.32, 0.585, 0.45),
    61: (-0.12, 0.575, 0.58),
    62: (0.0, 0.58, 0.60),
    66: (0.0, 0.59, 0.60),
    67: (-0.12, 0.59, 0.58),
}


def face_template() -> np.ndarray:
    """The mean (68, 3) face in iBUG order."""
    template = np.zeros((NUM_LANDMARKS, 3))
    for index, point in _LEFT_HALF.items():
        template[index] = point
        template[MIRROR[index]] = (-point[0], point[1], point[2])
    return template


_TEMPLATE = face_template()
_JAW_WEIGHT = np.array([max(0.0, np.sin(np.pi * i / 16)) ** 4 for i in range(17)])  # chin follows the jaw
_LOWER_LIP = [55, 56, 57, 58, 59, 65, 66, 67]
_CORNERS = [48, 54, 60, 64]
_NEAR_CORNERS = [49, 53, 55, 59, 61, 63, 65, 67]
_UPPER_LIDS = {37: 41, 38: 40, 43: 47, 44: 46}  # upper lid point -> lower lid point below it


# -------------------------------------------------------------------------------------------------
# Identity and motion
# -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Identity:
    """Shape and appearance of one synthetic person (one video)."""

    shape: np.ndarray  # (68, 3) template with this person's proportions
    skin: tuple[int, int, int]
    light_from_left: bool
    freckles: np.ndarray  # (N, 3) points on the cheeks (N may be 0)
    hair: tuple[int, int, int]
    hair_style: str
    hairline: float  # template y of the hairline at the centre
    iris: tuple[int, int, int]
    lips: tuple[int, int, int]
    shirt: tuple[int, int, int]
    shirt_stripes: tuple[int, int, int]
    background: tuple[tuple[int, int, int], tuple[int, int, int]]  # top and bottom of a vertical gradient
    blobs: np.ndarray  # (3, 3) soft background discs: centre x, y and radius as fractions of the width
    glasses: tuple[int, int, int] | None
    earrings: tuple[int, int, int] | None
    hat: tuple[int, int, int] | None


def _colour(rng: np.random.Generator, low: float, high: float) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.uniform(low, high, 3))  # type: ignore[return-value]


def _mix(a: tuple[int, ...], b: tuple[int, ...], t: float) -> tuple[int, int, int]:
    return tuple(int(round((1 - t) * x + t * y)) for x, y in zip(a, b))  # type: ignore[return-value]


def _symmetric_jitter(rng: np.random.Generator, shape: np.ndarray) -> np.ndarray:
    """Move mirrored landmark pairs together (x mirrored), plus a little asymmetric noise."""
    noise = rng.normal(0.0, 0.012, shape.shape)
    noise = (noise + noise[MIRROR] * np.array([-1.0, 1.0, 1.0])) / 2
    return shape + noise + rng.normal(0.0, 0.004, shape.shape)


def sample_identity(rng: np.random.Generator) -> Identity:
    """A random person: proportions, colours, hair style and accessories."""
    shape = _TEMPLATE.copy()
    jaw = list(range(17))
    shape[jaw, 0] *= rng.uniform(0.88, 1.08)
    shape[jaw, 1] = -0.1 + (shape[jaw, 1] + 0.1) * rng.uniform(0.92, 1.08)
    for eye in (RIGHT_EYE, LEFT_EYE):
        centre = shape[list(eye)].mean(axis=0)
        shape[list(eye), :2] = centre[:2] + (shape[list(eye), :2] - centre[:2]) * rng.uniform(0.85, 1.2)
    spread = rng.uniform(-0.03, 0.05)
    shape[list(RIGHT_EYE), 0] -= spread
    shape[list(LEFT_EYE), 0] += spread
    shape[list(RIGHT_BROW) + list(LEFT_BROW), 1] += rng.uniform(-0.05, 0.04)
    nose = list(range(31, 36))
    shape[nose, 0] *= rng.uniform(0.85, 1.25)
    shape[nose + [30], 1] += rng.uniform(-0.04, 0.06)
    mouth = list(OUTER_LIPS) + list(INNER_LIPS)
    shape[mouth, 0] *= rng.uniform(0.85, 1.2)
    shape[mouth, 1] += rng.uniform(-0.03, 0.04)
    line = shape[list(INNER_LIPS), 1].mean()
    shape[list(OUTER_LIPS), 1] = line + (shape[list(OUTER_LIPS), 1] - line) * rng.uniform(0.8, 1.3)
    shape = _symmetric_jitter(rng, shape)

    skin_palette = [(250, 222, 200), (236, 196, 160), (214, 164, 120), (176, 122, 84), (120, 80, 54)]
    skin = _mix(skin_palette[rng.integers(len(skin_palette))], _colour(rng, 60, 240), 0.1)
    hair_palette = [(30, 24, 20), (70, 45, 25), (150, 100, 50), (210, 180, 110), (120, 40, 20), (90, 90, 95)]
    hair = _mix(hair_palette[rng.integers(len(hair_palette))], _colour(rng, 0, 255), 0.15)
    cheek_xy = np.stack([rng.uniform(0.2, 0.65, 16) * rng.choice([-1, 1], 16), rng.uniform(-0.12, 0.22, 16)], 1)
    freckles = (
        np.concatenate([cheek_xy, 0.55 - 0.3 * np.abs(cheek_xy[:, :1])], axis=1)
        if rng.random() < 0.4
        else np.zeros((0, 3))
    )
    background = (_colour(rng, 60, 230), _colour(rng, 60, 230))
    return Identity(
        shape=shape,
        skin=skin,
        light_from_left=bool(rng.random() < 0.5),
        freckles=freckles,
        hair=hair,
        hair_style=HAIR_STYLES[rng.integers(len(HAIR_STYLES))],
        hairline=float(rng.uniform(-0.78, -0.66)),
        iris=_colour(rng, 30, 170),
        lips=_mix((200, 90, 100), _colour(rng, 90, 220), 0.3),
        shirt=_colour(rng, 20, 235),
        shirt_stripes=_colour(rng, 20, 235),
        background=background,
        blobs=np.stack([rng.uniform(0, 1, 3), rng.uniform(0, 0.6, 3), rng.uniform(0.1, 0.25, 3)], axis=1),
        glasses=_colour(rng, 0, 120) if rng.random() < 0.4 else None,
        earrings=_mix((230, 190, 60), (200, 200, 210), float(rng.random())) if rng.random() < 0.4 else None,
        hat=_colour(rng, 20, 235) if rng.random() < 0.25 else None,
    )


@dataclass(frozen=True)
class FaceState:
    """Expression and head pose of one frame (pose angles in radians, position in output pixels)."""

    mouth_open: float  # 0 closed .. 1 wide open
    smile: float  # -0.3 .. 1
    blink: float  # 0 open .. 1 closed
    brow_raise: float  # -0.3 .. 1
    gaze: tuple[float, float]  # iris offset, -1 .. 1 of the eye's half-width
    yaw: float
    pitch: float
    roll: float
    scale: float  # pixels per template unit
    centre: tuple[float, float]  # pixel (x, y) of the template origin


def _slow_wave(rng: np.random.Generator, t: np.ndarray, amplitude: float, freq: tuple[float, float]) -> np.ndarray:
    """A smooth signal in about [-amplitude, amplitude]: three sinusoids of random frequency and phase."""
    weights = rng.dirichlet(np.ones(3))
    signal = np.zeros_like(t, dtype=np.float64)
    for weight in weights:
        signal += weight * np.sin(2 * np.pi * rng.uniform(*freq) * t + rng.uniform(0, 2 * np.pi))
    return amplitude * signal


def sample_motion(rng: np.random.Generator, frames: int, resolution: tuple[int, int]) -> list[FaceState]:
    """A smooth sequence of ``frames`` face states for an image of ``resolution`` (H, W)."""
    height, width = resolution
    t = np.arange(frames, dtype=np.float64)
    talk = np.clip(0.3 + _slow_wave(rng, t, 0.6, (0.04, 0.11)), 0.0, 1.0)
    smile = np.clip(0.25 + _slow_wave(rng, t, 0.5, (0.01, 0.04)), -0.3, 1.0)
    brow = np.clip(0.1 + _slow_wave(rng, t, 0.5, (0.01, 0.05)), -0.3, 1.0)
    blink = np.zeros(frames)
    moment = rng.uniform(2, 25)
    while moment < frames + 3:
        blink += np.exp(-(((t - moment) / 1.3) ** 2))
        moment += rng.uniform(25, 60)
    blink = np.clip(blink, 0.0, 1.0)
    gaze_x, gaze_y = _slow_wave(rng, t, 0.6, (0.01, 0.04)), _slow_wave(rng, t, 0.3, (0.01, 0.04))
    yaw = _slow_wave(rng, t, 0.45, (0.008, 0.035)) + rng.uniform(-0.1, 0.1)
    pitch = _slow_wave(rng, t, 0.18, (0.008, 0.035))
    roll = _slow_wave(rng, t, 0.12, (0.008, 0.035))
    size = min(height, width)
    scale = 0.29 * size * rng.uniform(0.92, 1.05) * (1 + _slow_wave(rng, t, 0.04, (0.005, 0.02)))
    centre_x = width * (0.5 + _slow_wave(rng, t, 0.035, (0.005, 0.03)))
    centre_y = height * (0.5 + _slow_wave(rng, t, 0.025, (0.005, 0.03)))
    return [
        FaceState(
            float(talk[i]),
            float(smile[i]),
            float(blink[i]),
            float(brow[i]),
            (float(gaze_x[i]), float(gaze_y[i])),
            float(yaw[i]),
            float(pitch[i]),
            float(roll[i]),
            float(scale[i]),
            (float(centre_x[i]), float(centre_y[i])),
        )
        for i in range(frames)
    ]


def expressive_shape(identity: Identity, state: FaceState) -> np.ndarray:
    """The identity's (68, 3) template with the frame's expression applied."""
    shape = identity.shape.copy()
    drop = 0.3 * state.mouth_open
    shape[_LOWER_LIP, 1] += drop
    shape[_CORNERS, 1] += 0.4 * drop
    shape[[61, 62, 63], 1] -= 0.1 * drop
    shape[:17, 1] += drop * _JAW_WEIGHT
    shape[_CORNERS, 0] *= 1 + 0.15 * state.smile
    shape[_CORNERS, 1] -= 0.06 * state.smile
    shape[_NEAR_CORNERS, 0] *= 1 + 0.06 * state.smile
    shape[_NEAR_CORNERS, 1] -= 0.025 * state.smile
    for upper, lower in _UPPER_LIDS.items():
        shape[upper, 1] += 0.92 * state.blink * (shape[lower, 1] - shape[upper, 1])
    shape[list(RIGHT_BROW) + list(LEFT_BROW), 1] -= 0.1 * state.brow_raise
    return shape


_PIVOT = np.array([0.0, 0.1, -1.0])  # the head turns about the neck, behind the face


def project(points: np.ndarray, state: FaceState) -> np.ndarray:
    """Rotate template points (N, 3) by the head pose about the neck pivot and project them with a
    weak-perspective camera to output pixel coordinates (N, 2) ``x, y``."""
    cy, sy = np.cos(state.yaw), np.sin(state.yaw)
    cp, sp = np.cos(state.pitch), np.sin(state.pitch)
    cr, sr = np.cos(state.roll), np.sin(state.roll)
    yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    rotated = (points - _PIVOT) @ (roll @ pitch @ yaw).T + _PIVOT
    return rotated[:, :2] * state.scale + np.asarray(state.centre)


def face_landmarks(identity: Identity, state: FaceState) -> np.ndarray:
    """Integer (68, 2) ``x, y`` pixel landmarks of a frame: where its features are drawn."""
    return np.rint(project(expressive_shape(identity, state), state)).astype(np.int64)


# -------------------------------------------------------------------------------------------------
# Drawing
# -------------------------------------------------------------------------------------------------
def _arc(radius_x: float, radius_y: float, centre_y: float, z: float, count: int = 15) -> np.ndarray:
    """Template points on the upper half ellipse from the image-right side over the top to the left."""
    angle = np.linspace(0.0, -np.pi, count)
    return np.stack(
        [radius_x * np.cos(angle), centre_y + radius_y * np.sin(angle), z + 0.6 * np.abs(np.sin(angle))], axis=1
    )


def _hairline(identity: Identity, count: int = 11) -> np.ndarray:
    """Template points of the hairline from the image-left temple to the right one."""
    x = np.linspace(-0.97, 0.97, count)
    y = identity.hairline + 0.5 * x**2
    if identity.hair_style == "bangs":
        y = identity.hairline + 0.22 + 0.15 * x**2 + 0.05 * (np.arange(count) % 2)
    if identity.hair_style == "buzz":
        y = identity.hairline - 0.08 + 0.45 * x**2
    return np.stack([x, y, 0.35 - 0.5 * x**2], axis=1)


class FaceRenderer:
    """Draws one identity's frames at ``resolution`` (H, W); the static layers are built once."""

    def __init__(self, identity: Identity, resolution: tuple[int, int], first_state: FaceState) -> None:
        self.identity = identity
        self.height, self.width = resolution
        self.canvas_size = (self.width * SUPERSAMPLE, self.height * SUPERSAMPLE)
        # The shoulders stay where the head starts; the neck joins them to the moving head.
        self.shoulder_top = (first_state.centre[1] + 1.2 * first_state.scale) * SUPERSAMPLE
        self.shoulder_x = first_state.centre[0] * SUPERSAMPLE
        self.shoulder_half = 1.9 * first_state.scale * SUPERSAMPLE
        self.neck_half = 0.55 * first_state.scale * SUPERSAMPLE
        self.base = self._static_layer()
        self.skin = self._skin_gradient()

    def _to_canvas(self, pixels: np.ndarray) -> list[tuple[float, float]]:
        """Output pixel coordinates -> supersampled canvas coordinates (pixel centres match)."""
        canvas = np.asarray(pixels, dtype=np.float64) * SUPERSAMPLE + (SUPERSAMPLE - 1) / 2
        return [tuple(p) for p in canvas.tolist()]

    def _static_layer(self) -> Image.Image:
        """Background gradient with soft blobs, and the shoulders in a striped shirt."""
        w, h = self.canvas_size
        top, bottom = (np.array(c, dtype=np.float64) for c in self.identity.background)
        ramp = np.linspace(0.0, 1.0, h)[:, None, None]
        pixels = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (h, w, 3)).astype(np.uint8)
        image = Image.fromarray(np.ascontiguousarray(pixels))
        draw = ImageDraw.Draw(image)
        for cx, cy, r in self.identity.blobs * w:
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_mix(self.identity.background[0], (255, 255, 255), 0.3))
        stripes = np.zeros((h, w, 3), dtype=np.uint8)
        period = max(4, w // 10)
        stripe_rows = (np.arange(h) // (period // 2)) % 2 == 0
        stripes[:] = self.identity.shirt
        stripes[stripe_rows] = self.identity.shirt_stripes
        mask = Image.new("L", self.canvas_size, 0)
        cx, shoulder_top, half = self.shoulder_x, self.shoulder_top, self.shoulder_half
        ImageDraw.Draw(mask).ellipse([cx - half, shoulder_top, cx + half, shoulder_top + 2.2 * half], fill=255)
        image.paste(Image.fromarray(stripes), mask=mask)
        return image

    def _skin_gradient(self) -> Image.Image:
        """The skin colour lit from one side, as a full-canvas image pasted through the face mask."""
        w, h = self.canvas_size
        light = np.array(_mix(self.identity.skin, (255, 255, 255), 0.12), dtype=np.float64)
        dark = np.array(_mix(self.identity.skin, (0, 0, 0), 0.22), dtype=np.float64)
        ramp = np.linspace(0.0, 1.0, w)[None, :, None]
        if not self.identity.light_from_left:
            ramp = ramp[:, ::-1]
        pixels = np.broadcast_to(light * (1 - ramp) + dark * ramp, (h, w, 3)).astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(pixels))

    def background(self) -> np.ndarray:
        """uint8 (H, W, 3): the static layer alone, downsampled as the frames are."""
        return np.asarray(self.base.resize((self.width, self.height), Image.LANCZOS))

    def render(self, state: FaceState) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 (H, W, 3) frame, int (68, 2) landmarks) for one face state."""
        frame, landmarks, _ = self.render_layers(state)
        return frame, landmarks

    def render_layers(self, state: FaceState) -> tuple[np.ndarray, np.ndarray, FrameLayers]:
        """The frame, its landmarks and its layers (labels and mesh vertices, see face_correspondence.py)."""
        canvas = _LayeredCanvas(self.base)
        landmarks = self._paint(canvas, state)
        small = canvas.image.resize((self.width, self.height), Image.LANCZOS)
        return np.asarray(small), landmarks, canvas.layers(self.height, self.width)

    def mesh_triangles(self) -> list[np.ndarray]:
        """Each layer's triangles (M, 3), made once in a canonical frontal pose with the mouth and eyes
        open (so no vertices coincide) and valid in every frame where the mesh does not fold."""
        canvas = _LayeredCanvas(None)
        self._paint(canvas, _CANONICAL)
        return [_triangulate(parts) for parts in canvas.parts.values()]

    def _paint(self, canvas: _LayeredCanvas, state: FaceState) -> np.ndarray:
        """Draw one face state on ``canvas``; returns the int (68, 2) landmarks."""
        ident = self.identity
        landmarks = face_landmarks(ident, state)
        lm = self._to_canvas(landmarks)
        px = state.scale * SUPERSAMPLE  # canvas pixels per template unit

        def proj(points: np.ndarray) -> list[tuple[float, float]]:
            return self._to_canvas(project(np.asarray(points, dtype=np.float64), state))

        def chain(indices: range | list[int]) -> list[tuple[float, float]]:
            return [lm[i] for i in indices]

        shade = _mix(ident.skin, (0, 0, 0), 0.3)
        # Behind the face: long hair, neck, ears and earrings.
        if ident.hair_style in ("long", "bangs"):
            back = np.concatenate([_arc(1.18, 1.15, -0.05, -0.8), [[-1.2, 1.35, -0.8], [1.2, 1.35, -0.8]]])
            canvas.polygon("back_hair", proj(back), fill=_mix(ident.hair, (0, 0, 0), 0.15), mesh=True)
        neck_x, neck_y, neck_half = self.shoulder_x, self.shoulder_top + 0.15 * self.shoulder_half, self.neck_half
        neck_top = proj([[-0.5, 0.55, -0.6], [0.5, 0.55, -0.6]])
        canvas.polygon(
            "neck",
            [neck_top[0], neck_top[1], (neck_x + neck_half, neck_y), (neck_x - neck_half, neck_y)],
            fill=_mix(ident.skin, (0, 0, 0), 0.15),
            mesh=True,
        )
        for side in (-1, 1):
            ((ex, ey),) = proj([[side * 1.0, 0.0, -0.6]])
            canvas.ellipse(
                "ears", [ex - 0.13 * px, ey - 0.24 * px, ex + 0.13 * px, ey + 0.24 * px], fill=shade, mesh=True
            )
            if ident.earrings is not None:
                ((rx, ry),) = proj([[side * 1.02, 0.3, -0.55]])
                r = 0.06 * px
                canvas.ellipse("earrings", [rx - r, ry - r, rx + r, ry + r], fill=ident.earrings, mesh=True)
        # The face: jaw landmarks closed over the forehead, filled with the shaded skin.  Its mesh joins
        # the outline, every landmark and the freckles.
        outline = chain(range(17)) + proj(_arc(abs(ident.shape[16, 0]), 1.05, ident.shape[16, 1], -0.6)[1:-1])
        freckles = proj(ident.freckles)
        canvas.add_mesh("face", outline + lm[17:] + freckles)
        mask = Image.new("L", self.canvas_size, 0)
        ImageDraw.Draw(mask).polygon(outline, fill=255)
        canvas.paste("face", self.skin, mask)
        for fx, fy in freckles:
            r = 0.015 * px
            canvas.ellipse("face", [fx - r, fy - r, fx + r, fy + r], fill=_mix(ident.skin, (120, 60, 30), 0.3))
        # Hair on top of the head, then the hat.
        buzz = ident.hair_style == "buzz"
        cap = np.concatenate([_arc(1.08, 1.06 if buzz else 1.12, -0.1, -0.4), _hairline(ident)])
        hair = _mix(ident.hair, ident.skin, 0.35) if buzz else ident.hair
        canvas.polygon("hair", proj(cap), fill=hair, mesh=True)
        if ident.hair_style == "bun":
            ((bx, by),) = proj([[0.0, -1.3, -0.3]])
            canvas.ellipse("bun", [bx - 0.3 * px, by - 0.3 * px, bx + 0.3 * px, by + 0.3 * px], fill=hair, mesh=True)
        if ident.hat is not None:
            crown = [[-0.95, -0.72, 0.1], [-0.8, -1.55, -0.2], [0.8, -1.55, -0.2], [0.95, -0.72, 0.1]]
            brim = [[-1.35, -0.7, 0.2], [1.35, -0.7, 0.2], [1.35, -0.84, 0.2], [-1.35, -0.84, 0.2]]
            canvas.polygon("hat_crown", proj(crown), fill=ident.hat, mesh=True)
            canvas.polygon("hat_brim", proj(brim), fill=_mix(ident.hat, (0, 0, 0), 0.35), mesh=True)
        # Brows, eyes, nose, mouth at the landmarks (on the face's mesh, except the eye openings and the
        # inside of the mouth, which have no counterpart between frames).
        brow_colour = _mix(ident.hair, (0, 0, 0), 0.3)
        for brow in (RIGHT_BROW, LEFT_BROW):
            canvas.line("face", chain(brow), fill=brow_colour, width=max(1, round(0.08 * px)), joint="curve")
        for eye in (RIGHT_EYE, LEFT_EYE):
            self._draw_eye(canvas, chain(eye), state, px)
        canvas.line(
            "face", chain(range(27, 31)), fill=_mix(ident.skin, (0, 0, 0), 0.12), width=max(1, round(0.04 * px))
        )
        canvas.line("face", chain(range(31, 36)), fill=shade, width=max(1, round(0.04 * px)), joint="curve")
        for nostril in (32, 34):
            nx, ny = lm[nostril]
            r = 0.035 * px
            canvas.ellipse("face", [nx - r, ny - r * 0.7, nx + r, ny + r * 0.7], fill=_mix(ident.skin, (0, 0, 0), 0.5))
        canvas.polygon("face", chain(OUTER_LIPS), fill=ident.lips)
        canvas.polygon(None, chain(INNER_LIPS), fill=(60, 15, 25))
        gap = lm[66][1] - lm[62][1]
        if gap > 0.08 * px:
            tooth = min(0.4 * gap, 0.08 * px)
            upper = chain(range(60, 65))
            canvas.polygon(None, upper + [(x, y + tooth) for x, y in reversed(upper)], fill=(238, 236, 226))
        canvas.line(None, chain(range(60, 65)), fill=_mix(ident.lips, (0, 0, 0), 0.5), width=max(1, round(0.02 * px)))
        if ident.glasses is not None:
            self._draw_glasses(canvas, lm, px)
        return landmarks

    def _draw_eye(self, canvas: _LayeredCanvas, eye: list[tuple[float, float]], state: FaceState, px: float) -> None:
        """Eye white, iris and pupil, clipped by eyelid patches above and below the lid lines."""
        points = np.asarray(eye)
        outer, inner = points[0], points[3]
        width = float(np.linalg.norm(inner - outer))
        centre = (outer + inner) / 2 + np.array(state.gaze) * np.array([0.22, 0.12]) * width
        radius = 0.3 * width
        canvas.polygon(None, eye, fill=(245, 245, 240))
        canvas.ellipse(
            None,
            [centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius],
            fill=self.identity.iris,
        )
        pupil = 0.45 * radius
        canvas.ellipse(
            None, [centre[0] - pupil, centre[1] - pupil, centre[0] + pupil, centre[1] + pupil], fill=(15, 15, 20)
        )
        canvas_w, canvas_h = self.canvas_size
        at = (min(max(int(centre[0]), 0), canvas_w - 1), min(max(int(centre[1]), 0), canvas_h - 1))
        skin_here = self.skin.getpixel(at)
        lid = _mix(skin_here, (0, 0, 0), 0.06)  # the shaded skin colour at the eye, a touch darker
        reach = radius + 0.02 * px
        upper, lower = eye[0:4], [eye[3], eye[4], eye[5], eye[0]]
        canvas.polygon(None, upper + [(x, y - reach) for x, y in reversed(upper)], fill=lid)
        canvas.polygon(None, lower + [(x, y + reach) for x, y in reversed(lower)], fill=lid)
        canvas.line(None, upper, fill=(25, 20, 20), width=max(1, round(0.035 * px)), joint="curve")

    def _draw_glasses(self, canvas: _LayeredCanvas, lm: list[tuple[float, float]], px: float) -> None:
        """Round frames around both eyes with a bridge and temple arms."""
        colour = self.identity.glasses
        width = max(1, round(0.035 * px))
        rims = []
        for eye in (RIGHT_EYE, LEFT_EYE):
            points = np.asarray([lm[i] for i in eye])
            centre = points.mean(axis=0)
            rx = 0.75 * float(np.linalg.norm(points[3] - points[0]))
            ry = 0.75 * rx
            box = [centre[0] - rx, centre[1] - ry, centre[0] + rx, centre[1] + ry]
            canvas.ellipse("glasses", box, outline=colour, width=width, mesh=True)
            rims.append((centre, rx))
        (right, r_rx), (left, l_rx) = rims
        canvas.line(
            "glasses", [(right[0] + r_rx, right[1]), (left[0] - l_rx, left[1])], fill=colour, width=width, mesh=True
        )
        canvas.line("glasses", [(right[0] - r_rx, right[1]), lm[0]], fill=colour, width=width, mesh=True)
        canvas.line("glasses", [(left[0] + l_rx, left[1]), lm[16]], fill=colour, width=width, mesh=True)


# -------------------------------------------------------------------------------------------------
# Layers: what the correspondence (face_correspondence.py) is computed from
# -------------------------------------------------------------------------------------------------
MESH_LAYERS = ("back_hair", "neck", "ears", "earrings", "face", "hair", "bun", "hat_crown", "hat_brim", "glasses")
_LABEL = {name: index for index, name in enumerate(MESH_LAYERS, start=1)}
# An ellipse: its centre and the corners of its box (every triangle then has the same affine map, exact for
# the axis-aligned ellipses drawn here).
_FAN = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 1]])
_QUAD = np.array([[0, 1, 2], [0, 2, 3]])  # a convex four-corner polygon
# Frontal, mouth wide open and eyes open, at a large scale so that the rounded landmarks are exact.
_CANONICAL = FaceState(1.0, 0.0, 0.0, 0.0, (0.0, 0.0), 0.0, 0.0, 0.0, 100.0, (0.0, 0.0))


@dataclass(frozen=True)
class FrameLayers:
    """One frame's layers: ``labels`` uint8 (H, W) (which layer shows at each pixel, face_correspondence
    numbering) and per layer of MESH_LAYERS its mesh vertices (N, 2) in output pixels."""

    labels: np.ndarray
    vertices: list[np.ndarray]


class _LayeredCanvas:
    """A frame being drawn: the image, the same primitives painted as layer labels (so the labels show
    which layer is on top at each canvas pixel), and the vertices of every layer's mesh.  A layer of
    ``None`` paints what has no counterpart in other frames.  Without a base image only the mesh
    vertices are recorded (the canonical pose)."""

    def __init__(self, base: Image.Image | None) -> None:
        self.image = None if base is None else base.copy()
        self.draw = None if base is None else ImageDraw.Draw(self.image)
        self.labels = None if base is None else Image.new("L", base.size, BACKDROP)
        self.label_draw = None if base is None else ImageDraw.Draw(self.labels)
        self.parts: dict[str, list[tuple[np.ndarray, np.ndarray | None]]] = {name: [] for name in MESH_LAYERS}

    def _paint(self, shape: str, layer: str | None, geometry: list, **style) -> None:
        if self.draw is None:
            return
        getattr(self.draw, shape)(geometry, **style)
        label = NO_CORRESPONDENCE if layer is None else _LABEL[layer]
        getattr(self.label_draw, shape)(
            geometry, **{k: label if k in ("fill", "outline") else v for k, v in style.items()}
        )

    def add_mesh(self, layer: str, points: list[tuple[float, float]], triangles: np.ndarray | None = None) -> None:
        """Mesh vertices of ``layer`` (canvas coordinates); triangles None: Delaunay in the canonical pose."""
        self.parts[layer].append((np.asarray(points, dtype=np.float64).reshape(-1, 2), triangles))

    def polygon(self, layer: str | None, points: list, *, mesh: bool = False, **style) -> None:
        self._paint("polygon", layer, points, **style)
        if mesh:
            self.add_mesh(layer, points, _QUAD if len(points) == 4 else None)

    def ellipse(self, layer: str | None, box: list, *, mesh: bool = False, **style) -> None:
        self._paint("ellipse", layer, box, **style)
        if mesh:
            x0, y0, x1, y1 = box
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            self.add_mesh(layer, [(cx, cy), (x0, y0), (x1, y0), (x1, y1), (x0, y1)], _FAN)

    def line(self, layer: str | None, points: list, *, mesh: bool = False, **style) -> None:
        """A polyline; its mesh (one segment only) is the quad one pixel wider than the stroke around it."""
        self._paint("line", layer, points, **style)
        if mesh:
            (start, end) = np.asarray(points, dtype=np.float64)
            along = (end - start) / max(float(np.linalg.norm(end - start)), 1e-9)
            side = np.array([-along[1], along[0]]) * (style["width"] / 2 + SUPERSAMPLE)
            self.add_mesh(layer, [start + side, end + side, end - side, start - side], _QUAD)

    def paste(self, layer: str, image: Image.Image, mask: Image.Image) -> None:
        if self.image is not None:
            self.image.paste(image, mask=mask)
            self.labels.paste(_LABEL[layer], (0, 0, *self.labels.size), mask=mask)

    def layers(self, height: int, width: int) -> FrameLayers:
        """The labels at output size (the majority of each 2x2 block; ties to the later layer id) and
        the mesh vertices in output pixels."""
        blocks = np.asarray(self.labels).reshape(height, SUPERSAMPLE, width, SUPERSAMPLE).transpose(0, 2, 1, 3)
        blocks = blocks.reshape(height, width, SUPERSAMPLE**2)
        votes = (blocks[..., None] == blocks[..., None, :]).sum(axis=-1)  # how often each sample's label occurs
        best = np.argmax(votes * 256 + blocks, axis=-1)
        labels = np.take_along_axis(blocks, best[..., None], axis=-1)[..., 0]
        vertices = [_snap((_vertices(parts) - (SUPERSAMPLE - 1) / 2) / SUPERSAMPLE) for parts in self.parts.values()]
        return FrameLayers(labels.astype(np.uint8), vertices)


def _snap(values: np.ndarray) -> np.ndarray:
    """Round to multiples of 2**-20 (about 1e-6 px): the last bits of sin/cos may differ between CPUs
    and libraries, the stored ground truth must not; integer shifts stay exact."""
    return np.round(values * 2.0**20) / 2.0**20


def _vertices(parts: list[tuple[np.ndarray, np.ndarray | None]]) -> np.ndarray:
    return np.concatenate([points for points, _ in parts]) if parts else np.zeros((0, 2))


def _triangulate(parts: list[tuple[np.ndarray, np.ndarray | None]]) -> np.ndarray:
    """One layer's triangles over its parts' vertices (concatenated), counter-clockwise, from the
    canonical vertices; parts without fixed triangles get a Delaunay triangulation."""
    triangles, offset = [], 0
    for points, fixed in parts:
        local = Delaunay(_snap(points)).simplices if fixed is None else fixed
        triangles.append(np.asarray(local, dtype=np.int64) + offset)
        offset += len(points)
    if not triangles:
        return np.zeros((0, 3), dtype=np.int64)
    triangles = np.concatenate(triangles)
    areas = signed_areas(_vertices(parts), triangles)
    triangles[areas < 0] = triangles[areas < 0][:, [0, 2, 1]]
    return triangles[np.abs(areas) > 1e-6 * np.abs(areas).max()]


# -------------------------------------------------------------------------------------------------
# Videos and the dataset directory
# -------------------------------------------------------------------------------------------------
def video_rng(seed: int, phase: str, index: int) -> np.random.Generator:
    """The random stream of one video (independent of every other video)."""
    return np.random.default_rng([seed, PHASES.index(phase), index])


def video_renderer(params: FaceGeneratorParams, phase: str, index: int) -> tuple[FaceRenderer, list[FaceState]]:
    """The renderer and the face states of video ``index`` of ``phase``."""
    rng = video_rng(params.seed, phase, index)
    identity = sample_identity(rng)
    states = sample_motion(rng, params.frames_per_video, params.resolution)
    return FaceRenderer(identity, params.resolution, states[0]), states


def video_correspondence(renderer: FaceRenderer, layers: list[FrameLayers]) -> VideoCorrespondence:
    """The correspondence of the frames whose layers ``renderer.render_layers`` gave, in their order."""
    return VideoCorrespondence(
        np.stack([frame.labels for frame in layers]),
        MESH_LAYERS,
        tuple(np.stack([frame.vertices[i] for frame in layers]) for i in range(len(MESH_LAYERS))),
        tuple(renderer.mesh_triangles()),
    )


def render_video(params: FaceGeneratorParams, phase: str, index: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Frames and landmarks of video ``index`` of ``phase``: (uint8 (H, W, 3), int (68, 2))."""
    renderer, states = video_renderer(params, phase, index)
    for state in states:
        yield renderer.render(state)


def video_name(index: int) -> str:
    return f"{index:04d}"


def frame_name(index: int) -> str:
    return f"{index:05d}"


def write_dataset(params: FaceGeneratorParams, directory: Path, progress: Progress | None = None) -> None:
    """Render every video into ``directory`` (FaceForensics layout) and write params.json last."""
    counts = {"train": params.videos_train, "test": params.videos_test}
    total = sum(counts.values()) * params.frames_per_video
    done = 0
    for phase, count in counts.items():
        for index in range(count):
            frames_dir = directory / f"{phase}_data" / video_name(index)
            keypoints_dir = directory / f"{phase}_keypoints" / video_name(index)
            frames_dir.mkdir(parents=True)
            keypoints_dir.mkdir(parents=True)
            renderer, states = video_renderer(params, phase, index)
            layers = []
            for t, state in enumerate(states):
                frame, landmarks, frame_layers = renderer.render_layers(state)
                Image.fromarray(frame).save(frames_dir / f"{frame_name(t)}.png")
                write_landmarks(keypoints_dir / f"{frame_name(t)}.txt", landmarks)
                layers.append(frame_layers)
                done += 1
            correspondence = video_correspondence(renderer, layers)
            correspondence.save(correspondence_path(directory, phase, video_name(index)))
            if progress is not None:
                progress(f"synthetic faces: {phase} video {index + 1}/{count}", done, total)
    (directory / "params.json").write_text(json.dumps(params.to_dict(), indent=2, sort_keys=True) + "\n")


def prepare_synthetic_faces(cfg: TaskConfig, data_root: Path, progress: Progress | None = None) -> Path:
    """The synthetic face dataset for ``cfg.dataset.synthetic`` under ``<data_root>/synthetic/``,
    generated into a temporary directory and renamed into place unless already there."""
    params = FaceGeneratorParams.from_config(cfg)
    parent = Path(data_root) / "synthetic"
    target = parent / f"faces-{params.digest()}"

    def complete() -> bool:
        marker = target / "params.json"
        expected = json.loads(json.dumps(params.to_dict()))  # as read back: tuples become lists
        return marker.is_file() and json.loads(marker.read_text()) == expected

    if complete():
        return target
    parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if complete():
            return target
        staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.tmp-", dir=parent))
        try:
            write_dataset(params, staging, progress)
            if target.exists():  # an incomplete earlier attempt
                shutil.rmtree(target)
            os.replace(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    return target
