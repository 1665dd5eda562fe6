"""Procedural clothed persons in natural poses, written in the DeepFashion layout GFLA reads.

A person is an *identity* (body build, skin tone, hair, a textured top with an optional torso logo,
textured trousers / shorts / skirt, shoes) rendered in several *poses* and views (front, back, side).
Clothing patterns are laid out in each body part's own coordinates (along and across the limb, in
body units), so stripes, checks and prints move with the body and must be transported between
poses rather than invented.  Joint positions come from forward kinematics with natural ranges: arms
from hanging to slightly above horizontal, elbows and knees bending the anatomical way, legs under
the body; poses whose width would shrink the figure are re-drawn, so nothing leaves the frame.

Views follow how OpenPose sees people: in the back view the nose and eyes are missing; in a side
view the far eye and ear are missing, the far limbs are drawn behind the torso (darker) and their
joints are marked missing where the nearer body covers them.  Keypoints are the 18 COCO/OpenPose
joints as integer pixel ``(y, x)``; the figure is drawn through exactly those integer positions, so
the annotation written to disk is the drawn pose.  Drawing is PIL at 2x, downsampled with LANCZOS.

Output (``write_dataset``): ``train/`` and ``test/`` PNGs, ``fashion-annotation-{train,test}.csv``
(``name:keypoints_y:keypoints_x``), ``fashion-pairs-{train,test}.csv`` (``from,to``: two poses of one
identity) and ``params.json``; train and test identities are disjoint.  ``ensure_dataset`` caches it
under ``<data_root>/synthetic/persons-<hash>/``.

Ground truth: every shape that bounds a body part is drawn with its part (a key and the part's
coordinate frame, the one its garment pattern is laid out in), and the canvas records it; from the
two recordings of a pair :mod:`bench.data.person_correspondence` gives the exact backward flow and
visibility, written as ``fashion-flow-<split>.npy`` / ``fashion-visibility-<split>.npy`` for the
splits ``ground_truth`` names (rows in the pairs CSV's order).
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from filelock import FileLock
from PIL import Image, ImageDraw

from bench.config import ConfigError, TaskConfig
from bench.data.base import Progress, reject_unknown_keys
from bench.data.heatmaps import MISSING, NUM_KEYPOINTS
from bench.data.person_correspondence import (
    GROUND_TRUTH_SPLITS,
    Ellipse,
    Frame,
    GroundTruthWriter,
    Part,
    Polygon,
    Recording,
    correspondence,
)

PARAMS_FILE = "params.json"
FILE_PREFIX = "fashion"
GENERATOR_VERSION = 4  # bump when the drawing changes, so cached datasets are regenerated
# 2: one backdrop per identity (its photo session) instead of one per image
# 3: ground-truth correspondence of the pairs (the images are unchanged)
# 4: dataset.synthetic.backdrop (default studio: one near-white backdrop for the set)
SUPERSAMPLE = 2
BACKDROPS = ("studio", "session")
VIEWS = ("front", "back", "side_left", "side_right")
VIEW_WEIGHTS = (0.45, 0.2, 0.175, 0.175)
PATTERNS = ("solid", "stripes", "vstripes", "checks", "dots", "print")
LOGOS = ("none", "circle", "triangle", "star", "diamond", "ring")

# COCO-18 indices.
NOSE, NECK = 0, 1
R_SHOULDER, R_ELBOW, R_WRIST, L_SHOULDER, L_ELBOW, L_WRIST = 2, 3, 4, 5, 6, 7
R_HIP, R_KNEE, R_ANKLE, L_HIP, L_KNEE, L_ANKLE = 8, 9, 10, 11, 12, 13
R_EYE, L_EYE, R_EAR, L_EAR = 14, 15, 16, 17
ARM = {"R": (R_SHOULDER, R_ELBOW, R_WRIST), "L": (L_SHOULDER, L_ELBOW, L_WRIST)}
LEG = {"R": (R_HIP, R_KNEE, R_ANKLE), "L": (L_HIP, L_KNEE, L_ANKLE)}
FACE = {"R": (R_EYE, R_EAR), "L": (L_EYE, L_EAR)}

SKIN_TONES = ((255, 224, 196), (241, 194, 150), (224, 172, 120), (198, 140, 90), (150, 98, 60), (96, 60, 38))
HAIR_COLOURS = ((28, 24, 22), (66, 42, 26), (112, 74, 42), (206, 172, 104), (146, 62, 30), (168, 166, 160))

Point = np.ndarray  # (2,) float (x, y) in output pixels
RGB = tuple[int, int, int]


# ---------------------------------------------------------------------------------------------
# Parameters and caching
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PersonsParams:
    """Generator parameters (``dataset.synthetic`` keys); any change gives a new cache directory."""

    resolution: tuple[int, int] = (64, 64)  # H, W of the written images
    identities_train: int = 160
    identities_test: int = 20
    poses_per_identity: int = 4
    pairs_per_identity: int | None = None  # ordered (source, target) pose pairs per identity; None: all
    closeup_fraction: float = 0.0  # share of images framed closer, legs leaving the frame
    ground_truth: str = "all"  # splits whose pairs get ground-truth correspondence: all, test, none
    backdrop: str = "studio"  # studio: one near-white backdrop for the whole set; session: one per identity
    seed: int = 0

    def __post_init__(self) -> None:
        res = self.resolution
        if (
            not isinstance(res, (list, tuple))
            or len(res) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 16 for v in res)
        ):
            raise ConfigError(f"dataset.synthetic.resolution: expected [H, W] integers >= 16, got {res!r}")
        object.__setattr__(self, "resolution", (int(res[0]), int(res[1])))
        for key in ("identities_train", "identities_test"):
            _require_int(key, getattr(self, key), minimum=1)
        _require_int("poses_per_identity", self.poses_per_identity, minimum=2)
        _require_int("seed", self.seed, minimum=0)
        fraction = self.closeup_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise ConfigError(f"dataset.synthetic.closeup_fraction: expected a number in [0, 1], got {fraction!r}")
        if self.ground_truth not in GROUND_TRUTH_SPLITS:
            raise ConfigError(
                f"dataset.synthetic.ground_truth: expected one of {', '.join(GROUND_TRUTH_SPLITS)}, "
                f"got {self.ground_truth!r}"
            )
        if self.backdrop not in BACKDROPS:
            raise ConfigError(
                f"dataset.synthetic.backdrop: expected one of {', '.join(BACKDROPS)}, got {self.backdrop!r}"
            )
        if self.pairs_per_identity is None:
            return
        _require_int("pairs_per_identity", self.pairs_per_identity, minimum=1)
        most = self.poses_per_identity * (self.poses_per_identity - 1)
        if self.pairs_per_identity > most:
            raise ConfigError(
                f"dataset.synthetic.pairs_per_identity: {self.pairs_per_identity} exceeds the {most} ordered "
                f"pairs that poses_per_identity={self.poses_per_identity} allows"
            )

    @classmethod
    def from_config(cls, cfg: TaskConfig) -> PersonsParams:
        """Read ``cfg.dataset.synthetic``; the resolution defaults to ``cfg.dataset.resolution``."""
        given = dict(cfg.dataset.synthetic)
        reject_unknown_keys(given, (f.name for f in fields(cls)), "dataset.synthetic", "synthetic_persons")
        given.setdefault("resolution", list(cfg.dataset.resolution))
        return cls(**given)

    def to_json(self) -> dict:
        """The parameters as stored in ``params.json`` (with the generator version)."""
        return {**asdict(self), "resolution": list(self.resolution), "generator_version": GENERATOR_VERSION}

    def digest(self) -> str:
        """A short hash of the parameters, naming the cache directory."""
        return hashlib.sha1(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:12]


def _require_int(key: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"dataset.synthetic.{key}: expected an integer >= {minimum}, got {value!r}")


def dataset_dir(params: PersonsParams, data_root: Path) -> Path:
    """Where the generated dataset for ``params`` lives."""
    return Path(data_root) / "synthetic" / f"persons-{params.digest()}"


def ensure_dataset(params: PersonsParams, data_root: Path, progress: Progress | None = None) -> Path:
    """Return the dataset directory for ``params``, generating it first unless already cached.

    Generation writes into a temporary sibling directory renamed into place at the end (``params.json``
    written last), under a file lock, so concurrent callers and interrupted runs never use a
    half-written dataset.
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
            (staging / PARAMS_FILE).write_text(json.dumps(params.to_json(), indent=2, sort_keys=True) + "\n")
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _cached(directory: Path, params: PersonsParams) -> bool:
    try:
        return json.loads((directory / PARAMS_FILE).read_text()) == params.to_json()
    except (OSError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# Identities and poses
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Garment:
    """A piece of clothing: base colour and a pattern laid out in body units on each part."""

    base: RGB
    accent: RGB
    accent2: RGB
    pattern: str  # one of PATTERNS
    period: float  # pattern repeat, body units
    phase: float  # pattern offset along the part, body units


@dataclass(frozen=True)
class Build:
    """Body proportions in head heights (the unit of all body geometry)."""

    shoulder: float  # half distance between the shoulder joints
    hip: float  # half distance between the hip joints
    torso: float  # neck to hip line
    upper_arm: float
    forearm: float
    thigh: float
    shin: float
    girth: float  # limb and torso width factor


@dataclass(frozen=True)
class Identity:
    """Everything that stays the same when a person changes pose."""

    build: Build
    skin: RGB
    hair: RGB
    long_hair: bool
    top: Garment
    sleeves: str  # long, short, none
    logo: str  # one of LOGOS (drawn on the chest in the front view)
    logo_colour: RGB
    bottom: Garment
    bottom_kind: str  # trousers, shorts, skirt
    shoes: RGB


@dataclass(frozen=True)
class Pose:
    """Joint angles in degrees.  Front/back views read the ``abduct`` angles (away from the body in
    the image plane, 0 = hanging); side views read the ``swing`` angles (forward positive).  Elbows
    and knees are flexion angles >= 0; ``forearm_up`` turns a bent front-view forearm upwards."""

    view: str
    lean: float
    head_tilt: float
    arm_abduct: tuple[float, float]  # (R, L)
    arm_swing: tuple[float, float]
    elbow: tuple[float, float]
    forearm_up: tuple[bool, bool]
    leg_abduct: tuple[float, float]
    leg_swing: tuple[float, float]
    knee: tuple[float, float]


@dataclass(frozen=True)
class Background:
    """A vertical gradient between two light colours, as studio backdrops."""

    top: RGB
    bottom: RGB


def _colour(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (round(r * 255), round(g * 255), round(b * 255))


def _garment(rng: np.random.Generator, patterns: tuple[str, ...]) -> Garment:
    hue = rng.random()
    base = _colour(hue, rng.uniform(0.25, 0.85), rng.uniform(0.25, 0.85))
    accent = _colour(hue + rng.uniform(0.25, 0.75), rng.uniform(0.2, 0.9), rng.uniform(0.55, 1.0))
    accent2 = _colour(hue + rng.uniform(0.1, 0.9), rng.uniform(0.5, 1.0), rng.uniform(0.3, 0.9))
    period = rng.uniform(0.22, 0.42)
    return Garment(base, accent, accent2, str(rng.choice(patterns)), period, rng.uniform(0.0, period))


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw a person: build, skin, hair and clothes."""
    girth = rng.uniform(0.9, 1.2)
    limb = rng.uniform(0.95, 1.05)
    build = Build(
        shoulder=rng.uniform(0.85, 1.0) * girth**0.5,
        hip=rng.uniform(0.48, 0.58) * girth**0.5,
        torso=rng.uniform(2.45, 2.7),
        upper_arm=1.4 * limb,
        forearm=1.2 * limb,
        thigh=1.75 * limb,
        shin=1.7 * limb,
        girth=girth,
    )
    return Identity(
        build=build,
        skin=SKIN_TONES[rng.integers(len(SKIN_TONES))],
        hair=HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))],
        long_hair=bool(rng.random() < 0.4),
        top=_garment(rng, PATTERNS),
        sleeves=str(rng.choice(["long", "short", "short", "none"])),
        logo=str(rng.choice(LOGOS)),
        logo_colour=_colour(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.6, 1.0)),
        bottom=_garment(rng, ("solid", "solid", "stripes", "vstripes", "checks")),
        bottom_kind=str(rng.choice(["trousers", "trousers", "shorts", "skirt"])),
        shoes=_colour(rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.1, 0.5)),
    )


def sample_pose(rng: np.random.Generator) -> Pose:
    """Draw a view and joint angles within natural ranges."""
    view = str(rng.choice(VIEWS, p=VIEW_WEIGHTS))

    def both(draw: Callable[[], float]) -> tuple[float, float]:
        return (float(draw()), float(draw()))

    arm_abduct = both(lambda: rng.uniform(5, 35) if rng.random() < 0.65 else rng.uniform(35, 100))
    elbow = both(lambda: rng.uniform(0, 15) if rng.random() < 0.5 else rng.uniform(15, 110))
    raise_forearm = [bool(a > 50 and rng.random() < 0.4) for a in arm_abduct]
    stride = float(rng.uniform(-30, 30))
    leg_swing = (stride, -stride * float(rng.uniform(0.5, 1.0)))  # walking: the legs swing opposite
    arm_swing = [-leg * float(rng.uniform(0.3, 1.0)) + float(rng.uniform(-10, 10)) for leg in leg_swing]
    if rng.random() < 0.15:  # reaching forward with one arm
        arm_swing[int(rng.integers(2))] = float(rng.uniform(50, 95))
    # A leg swung back bends its knee more, as in a walking stride.
    knee = [float(rng.uniform(0, 15) + (rng.uniform(10, 35) if swing < -5 else 0.0)) for swing in leg_swing]
    return Pose(
        view=view,
        lean=float(rng.uniform(-4, 4) if view in ("front", "back") else rng.uniform(-2, 7)),
        head_tilt=float(rng.uniform(-8, 8)),
        arm_abduct=arm_abduct,
        arm_swing=(arm_swing[0], arm_swing[1]),
        elbow=elbow,
        forearm_up=(raise_forearm[0], raise_forearm[1]),
        leg_abduct=both(lambda: rng.uniform(-2, 16)),
        leg_swing=leg_swing,
        knee=(knee[0], knee[1]),
    )


# DeepFashion's in-shop photos share one near-white studio backdrop, with a faint shadow at the floor.
STUDIO = Background((240, 240, 238), (226, 226, 223))


def sample_background(rng: np.random.Generator) -> Background:
    """A light backdrop of some hue, slightly darker at the bottom (the ``session`` backdrop)."""
    hue, sat, val = rng.random(), rng.uniform(0.0, 0.15), rng.uniform(0.8, 0.97)
    return Background(_colour(hue, sat, val), _colour(hue, sat, val - rng.uniform(0.05, 0.15)))


# ---------------------------------------------------------------------------------------------
# Skeleton (forward kinematics in body units, y down)
# ---------------------------------------------------------------------------------------------
def _direction(angle_deg: float, sideways: float) -> Point:
    """Unit vector at ``angle_deg`` from straight down, turned towards image-x sign ``sideways``."""
    a = math.radians(angle_deg)
    return np.array([sideways * math.sin(a), math.cos(a)])


@dataclass
class Skeleton:
    """Joint positions (18, 2) as (x, y) in body units, with what the renderer needs besides."""

    joints: np.ndarray
    head_centre: Point
    head_axis: Point  # unit vector from the top of the head towards the chin
    facing: float  # side views: +1 facing image right, -1 left; 0 for front/back
    near: str  # side views: "R" or "L", the side towards the camera; "" for front/back


def build_skeleton(identity: Identity, pose: Pose) -> Skeleton:
    """Forward kinematics: neck at the origin, torso down, limbs from their angles."""
    b = identity.build
    joints = np.zeros((NUM_KEYPOINTS, 2))
    side_view = pose.view.startswith("side")
    facing = (1.0 if pose.view == "side_right" else -1.0) if side_view else 0.0
    # A person facing image right shows the camera their right side.
    near = ("R" if facing > 0 else "L") if side_view else ""
    # Side views: a positive lean brings the neck ahead of the hips, so the torso axis points back.
    down = _direction(-pose.lean, facing) if side_view else _direction(pose.lean, 1.0)
    across = np.array([down[1], -down[0]])  # image-right perpendicular of the torso axis
    for i, side in enumerate("RL"):
        shoulder_j, elbow_j, wrist_j = ARM[side]
        hip_j, knee_j, ankle_j = LEG[side]
        if side_view:
            behind = 0.0 if side == near else -0.08 * facing
            joints[shoulder_j] = [behind, 0.05]
            joints[hip_j] = down * b.torso + [behind, 0.0]
            upper = _direction(pose.arm_swing[i], facing)
            fore = _direction(pose.arm_swing[i] + max(pose.elbow[i], 5.0), facing)
            thigh = _direction(pose.leg_swing[i], facing)
            shin = _direction(max(pose.leg_swing[i] - pose.knee[i], -60.0), facing)  # no heel kicked up high
            lengths = (b.upper_arm, b.forearm, b.thigh, b.shin)
        else:
            # Front view: the person's right is on the image left; back view: mirrored.
            outward = (-1.0 if side == "R" else 1.0) * (1.0 if pose.view == "front" else -1.0)
            joints[shoulder_j] = across * outward * b.shoulder + down * 0.12
            joints[hip_j] = down * b.torso + across * outward * b.hip
            abduct = pose.arm_abduct[i] + pose.lean * outward
            bend = pose.elbow[i] if pose.forearm_up[i] else -pose.elbow[i]
            upper = _direction(abduct, outward)
            fore = _direction(min(max(abduct + bend, -45.0), 165.0), outward)
            thigh = _direction(pose.leg_abduct[i], outward)
            shin = _direction(pose.leg_abduct[i] * 0.4, outward)
            # Bending towards or away from the camera shortens the limb on the image.
            lengths = (
                b.upper_arm * max(0.7, math.cos(math.radians(pose.arm_swing[i]))),
                b.forearm * max(0.6, math.cos(math.radians(pose.elbow[i] * 0.6))),
                b.thigh * max(0.8, math.cos(math.radians(pose.leg_swing[i]))),
                b.shin * max(0.85, math.cos(math.radians(pose.knee[i] - pose.leg_swing[i]))),
            )
        joints[elbow_j] = joints[shoulder_j] + upper * lengths[0]
        joints[wrist_j] = joints[elbow_j] + fore * lengths[1]
        joints[knee_j] = joints[hip_j] + thigh * lengths[2]
        joints[ankle_j] = joints[knee_j] + shin * lengths[3]
    tilt = pose.lean + pose.head_tilt
    head_axis = _direction(-tilt, facing) if side_view else _direction(tilt, 1.0)
    head_centre = -head_axis * 0.85 + np.array([0.08 * facing, 0.0])
    head_across = np.array([head_axis[1], -head_axis[0]])
    if side_view:
        joints[NOSE] = head_centre + head_across * 0.40 * facing + head_axis * 0.1
        joints[FACE[near][0]] = head_centre + head_across * 0.22 * facing - head_axis * 0.06
        joints[FACE[near][1]] = head_centre - head_across * 0.06 * facing + head_axis * 0.02
        far = "L" if near == "R" else "R"
        joints[FACE[far][0]] = joints[FACE[near][0]]
        joints[FACE[far][1]] = joints[FACE[near][1]]
    else:
        mirror = 1.0 if pose.view == "front" else -1.0
        joints[NOSE] = head_centre + head_axis * 0.12
        joints[R_EYE] = head_centre - head_across * 0.17 * mirror - head_axis * 0.05
        joints[L_EYE] = head_centre + head_across * 0.17 * mirror - head_axis * 0.05
        joints[R_EAR] = head_centre - head_across * 0.41 * mirror
        joints[L_EAR] = head_centre + head_across * 0.41 * mirror
    return Skeleton(joints, head_centre, head_axis, facing, near)


def _extent(skeleton: Skeleton) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box (min xy, max xy) of the drawn figure in body units."""
    pts = np.vstack([skeleton.joints, skeleton.head_centre[None]])
    low = pts.min(axis=0) - 0.38
    high = pts.max(axis=0) + 0.38
    low[1] = min(low[1], skeleton.head_centre[1] - 0.62)
    high[1] = max(high[1], skeleton.joints[[R_ANKLE, L_ANKLE], 1].max() + 0.32)
    return low, high


@dataclass
class Layout:
    """A skeleton placed in the image: integer keypoints and the pixels per body unit."""

    keypoints: np.ndarray  # (18, 2) int (x, y) pixel indices of every joint (hidden ones too)
    head_centre: Point
    unit: float  # output pixels per body unit


def _scales(skeleton: Skeleton, height: int, width: int) -> tuple[float, float]:
    """Pixels per body unit that fit the figure's height and its width into the frame (with margins)."""
    low, high = _extent(skeleton)
    size = high - low
    return 0.92 * (height - 2) / size[1], 0.92 * (width - 2) / size[0]


def width_fit(skeleton: Skeleton, height: int, width: int) -> float:
    """1 when the height decides the figure's scale; below 1 when a wide pose must be shrunk."""
    by_height, by_width = _scales(skeleton, height, width)
    return min(1.0, by_width / by_height)


def place(skeleton: Skeleton, rng: np.random.Generator, height: int, width: int, closeup: bool = False) -> Layout:
    """Scale and position the figure inside the frame, with random size and position jitter.

    ``closeup`` frames the figure 1.3-1.7x larger with the head near the top, so the legs (and
    possibly hands) leave the frame, as in DeepFashion's upper-body shots.
    """
    low, high = _extent(skeleton)
    unit = min(_scales(skeleton, height, width)) * rng.uniform(0.9, 1.0)
    if closeup:
        unit *= rng.uniform(1.3, 1.7)
    slack = np.array([width - 1, height - 1]) - (high - low) * unit
    vertical = rng.uniform(0.55, 0.85) * slack[1] if not closeup else rng.uniform(0.02, 0.06) * (height - 1)
    offset = np.array([rng.uniform(0.3, 0.7) * slack[0], vertical]) - low * unit
    keypoints = np.round(skeleton.joints * unit + offset).astype(np.int64)
    return Layout(keypoints, skeleton.head_centre * unit + offset, unit)


# ---------------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------------
def _darker(colour: RGB, factor: float) -> RGB:
    return (round(colour[0] * factor), round(colour[1] * factor), round(colour[2] * factor))


def _shade(garment: Garment, factor: float) -> Garment:
    return Garment(
        _darker(garment.base, factor),
        _darker(garment.accent, factor),
        _darker(garment.accent2, factor),
        garment.pattern,
        garment.period,
        garment.phase,
    )


def _solid(colour: RGB) -> Garment:
    return Garment(colour, colour, colour, "solid", 1.0, 0.0)


def _backdrop(background: Background, height: int, width: int) -> Image.Image:
    ramp = np.linspace(0.0, 1.0, height)[:, None]
    rows = ((1 - ramp) * np.array(background.top) + ramp * np.array(background.bottom)).round()
    return Image.fromarray(np.ascontiguousarray(np.broadcast_to(rows.astype(np.uint8)[:, None, :], (height, width, 3))))


def render_background(background: Background, height: int, width: int) -> Image.Image:
    """The backdrop alone, exactly as behind a person (drawn at 2x and downsampled the same way)."""
    return _backdrop(background, height * SUPERSAMPLE, width * SUPERSAMPLE).resize(
        (width, height), Image.Resampling.LANCZOS
    )


class _Canvas:
    """PIL drawing in output-pixel coordinates (pixel centres at integers) on a supersampled image.

    Shapes drawn with a part (a ``key`` for round shapes, whose frame defaults to offsets from their
    centre) are recorded in ``recording``, the input of :mod:`bench.data.person_correspondence`.
    """

    def __init__(self, background: Background, height: int, width: int, unit: float) -> None:
        self.image = _backdrop(background, height * SUPERSAMPLE, width * SUPERSAMPLE)
        self.draw = ImageDraw.Draw(self.image)
        self.unit = unit
        self.size = (width, height)
        self.recording = Recording([])

    def xy(self, points: np.ndarray) -> list[tuple[float, float]]:
        pts = (np.asarray(points, dtype=float).reshape(-1, 2) + 0.5) * SUPERSAMPLE
        return [tuple(p) for p in pts.tolist()]

    def polygon(self, points: np.ndarray, colour: RGB, part: Part | None = None) -> None:
        self.draw.polygon(self.xy(points), fill=colour)
        if part is not None:
            self.recording.shapes.append((Polygon(np.asarray(points, dtype=float)), part))

    def ellipse(
        self,
        centre: Point,
        rx: float,
        ry: float,
        colour: RGB,
        key: tuple | None = None,
        shade: float = 1.0,
        arc: tuple[float, float] | None = None,
        frame: Frame | None = None,
    ) -> None:
        """An axis-aligned ellipse with radii in body units (with ``arc``, PIL's chord of it)."""
        ((cx, cy),) = self.xy(centre)
        s = SUPERSAMPLE * self.unit
        box = (cx - rx * s, cy - ry * s, cx + rx * s, cy + ry * s)
        if arc is None:
            self.draw.ellipse(box, fill=colour)
        else:
            self.draw.chord(box, arc[0], arc[1], fill=colour)
        if key is not None:
            centre = np.asarray(centre, dtype=float)
            part = Part(key, frame or Frame.rigid(centre, self.unit), shade)
            self.recording.shapes.append((Ellipse(centre, (rx * self.unit, ry * self.unit), arc), part))

    def disc(self, centre: Point, radius: float, colour: RGB, key: tuple | None = None, shade: float = 1.0) -> None:
        self.ellipse(centre, radius, radius, colour, key, shade)

    def result(self) -> Image.Image:
        return self.image.resize(self.size, Image.Resampling.LANCZOS)


def _patch(corners: np.ndarray, t: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Bilinear patch: corners (a_left, a_right, b_right, b_left); t in [0, 1] from a to b, s in
    [-1, 1] from left to right.  Returns points of shape t.shape + (2,)."""
    t = np.asarray(t, dtype=float)[..., None]
    sigma = (np.asarray(s, dtype=float)[..., None] + 1) / 2
    a = corners[0] + (corners[1] - corners[0]) * sigma
    b = corners[3] + (corners[2] - corners[3]) * sigma
    return a + (b - a) * t


def _limb_corners(a: Point, b: Point, half_a: float, half_b: float) -> np.ndarray:
    axis = b - a
    normal = np.array([-axis[1], axis[0]]) / max(np.hypot(*axis), 1e-6)
    return np.array([a - normal * half_a, a + normal * half_a, b + normal * half_b, b - normal * half_b])


def _pattern_cells(garment: Garment, length: float, half: float) -> tuple[np.ndarray, ...]:
    """Accent rectangles ``(u0, u1, v0, v1)`` of a stripes/vstripes/checks pattern in body units:
    u along the part from its start, v across from its axis."""
    p, big = garment.period, 1e3
    along = np.arange(-1, int(length / p) + 2) * p + garment.phase
    lanes = np.arange(-int(half / p) - 1, int(half / p) + 1) * p
    if garment.pattern == "stripes":
        return along, along + 0.45 * p, np.full_like(along, -big), np.full_like(along, big)
    if garment.pattern == "vstripes":
        return np.full_like(lanes, -big), np.full_like(lanes, big), lanes + 0.25 * p, lanes + 0.7 * p
    u, v = np.meshgrid(along, lanes, indexing="ij")
    odd = (np.rint(u / p - garment.phase / p) + np.rint(v / p)) % 2 == 0
    return u[odd], u[odd] + p, v[odd], v[odd] + p


def _draw_part(
    canvas: _Canvas, corners: np.ndarray, length: float, garment: Garment, key: tuple, shade: float = 1.0
) -> None:
    """Fill a quad part and lay the garment's pattern over it in the part's own body units:
    ``length`` is the part's true length (before foreshortening), so patterns stay attached.  The
    quad is recorded as part ``key`` in those units (the pattern's stripes and checks are not: they
    are a function of them)."""
    unit = canvas.unit
    canvas.polygon(corners, garment.base, Part(key, Frame.along(corners, length, unit), shade))
    if garment.pattern == "solid":
        return
    half_a = np.hypot(*(corners[1] - corners[0])) / 2 / unit
    half_b = np.hypot(*(corners[2] - corners[3])) / 2 / unit
    if garment.pattern in ("dots", "print"):
        _draw_prints(canvas, corners, length, (half_a, half_b), garment, key, shade)
        return
    u0, u1, v0, v1 = _pattern_cells(garment, length, max(half_a, half_b))
    t = np.clip(np.stack([u0, u1], axis=1) / length, 0.0, 1.0)  # (n, 2): the cell's ends along the part
    half = half_a + (half_b - half_a) * t
    s0 = np.clip(v0[:, None] / half, -1.0, 1.0)  # (n, 2): the cell's sides at each end
    s1 = np.clip(v1[:, None] / half, -1.0, 1.0)
    keep = (t[:, 1] > t[:, 0]) & ((s1 > s0).any(axis=1))
    ts = t[keep][:, [0, 0, 1, 1]]
    ss = np.stack([s0[keep][:, 0], s1[keep][:, 0], s1[keep][:, 1], s0[keep][:, 1]], axis=1)
    for quad in _patch(corners, ts, ss):
        canvas.polygon(quad, garment.accent)


def _draw_prints(
    canvas: _Canvas,
    corners: np.ndarray,
    length: float,
    half: tuple[float, float],
    garment: Garment,
    key: tuple,
    shade: float,
) -> None:
    """Dots, or diamonds in two alternating colours, on a staggered lattice inside the part; each
    print is a part of its own (``key`` + its lattice row and lane), as PIL draws it unturned."""
    p, radius = garment.period, 0.22 * garment.period
    rows = np.arange(-1, int(length / p) + 2)
    lanes = np.arange(-int(max(half) / p) - 1, int(max(half) / p) + 2)
    i, j = np.meshgrid(rows, lanes, indexing="ij")
    u = i * p + garment.phase
    v = (j + 0.5 * (i % 2)) * p
    t = u / length
    w = half[0] + (half[1] - half[0]) * t
    inside = (u >= radius) & (u <= length - radius) & (np.abs(v) + radius <= w)
    centres = _patch(corners, t[inside], v[inside] / w[inside])
    diamond = np.array([[0, -1], [1, 0], [0, 1], [-1, 0]]) * 1.2 * radius * canvas.unit
    for centre, parity, row, lane in zip(centres, (i + j)[inside] % 2, i[inside].tolist(), j[inside].tolist()):
        print_key = (*key, "print", row, lane)
        if garment.pattern == "dots":
            canvas.disc(centre, radius, garment.accent, print_key, shade)
        else:
            part = Part(print_key, Frame.rigid(centre, canvas.unit), shade)
            canvas.polygon(centre + diamond, garment.accent if parity else garment.accent2, part)


def _draw_limb(
    canvas: _Canvas,
    joints: np.ndarray,
    chain: tuple[int, int, int],
    lengths: tuple[float, float],
    halves: tuple[float, float, float],
    dress: tuple[Garment, Garment],
    name: tuple,
    shade: float,
) -> None:
    """Two segments (upper, lower), each in its own garment (or skin), over round joint caps; the
    parts are ``name`` + upper, lower and the caps' root, middle."""
    a, b, c = (joints[j].astype(float) for j in chain)
    unit = canvas.unit
    canvas.disc(a, halves[0], dress[0].base, (*name, "root"), shade)
    canvas.disc(b, halves[1], dress[1].base, (*name, "middle"), shade)
    upper = _limb_corners(a, b, halves[0] * unit, halves[1] * unit)
    _draw_part(canvas, upper, lengths[0], dress[0], (*name, "upper"), shade)
    lower = _limb_corners(b, c, halves[1] * unit, halves[2] * unit)
    _draw_part(canvas, lower, lengths[1], dress[1], (*name, "lower"), shade)


def _draw_arm(canvas: _Canvas, identity: Identity, joints: np.ndarray, side: str, shade: float) -> None:
    g = identity.build.girth
    skin = _solid(_darker(identity.skin, shade))
    sleeve = _shade(identity.top, shade)
    dress = {"long": (sleeve, sleeve), "short": (sleeve, skin), "none": (skin, skin)}[identity.sleeves]
    chain = ARM[side]
    lengths, halves = (identity.build.upper_arm, identity.build.forearm), (0.24 * g, 0.19 * g, 0.15 * g)
    _draw_limb(canvas, joints, chain, lengths, halves, dress, ("arm", side), shade)
    elbow, wrist = joints[chain[1]].astype(float), joints[chain[2]].astype(float)
    direction = (wrist - elbow) / max(np.hypot(*(wrist - elbow)), 1e-6)
    canvas.disc(wrist + direction * 0.12 * canvas.unit, 0.15 * g, skin.base, ("arm", side, "hand"), shade)


def _draw_leg(canvas: _Canvas, identity: Identity, joints: np.ndarray, side: str, facing: float, shade: float) -> None:
    g = identity.build.girth
    skin = _solid(_darker(identity.skin, shade))
    cloth = _shade(identity.bottom, shade)
    dress = {"trousers": (cloth, cloth), "shorts": (cloth, skin), "skirt": (skin, skin)}[identity.bottom_kind]
    chain = LEG[side]
    lengths, halves = (identity.build.thigh, identity.build.shin), (0.33 * g, 0.25 * g, 0.17 * g)
    _draw_limb(canvas, joints, chain, lengths, halves, dress, ("leg", side), shade)
    ankle = joints[chain[2]].astype(float)
    shoe = _darker(identity.shoes, shade)
    key = ("leg", side, "shoe")
    if facing:
        canvas.ellipse(ankle + np.array([0.2 * facing, 0.12]) * canvas.unit, 0.32, 0.13, shoe, key, shade)
    else:
        canvas.ellipse(ankle + np.array([0.0, 0.12]) * canvas.unit, 0.2, 0.14, shoe, key, shade)


@dataclass
class TorsoQuads:
    """The torso's parts in output pixels, each a quad (a_left, a_right, b_right, b_left)."""

    top: np.ndarray  # shoulders to waist
    pelvis: np.ndarray  # waist to crotch
    skirt: np.ndarray  # waist to above the knees, flared


def torso_quads(identity: Identity, sk: Skeleton, joints: np.ndarray, unit: float) -> TorsoQuads:
    """Quads of the top, the pelvis and a skirt from the neck and hip keypoints."""
    g = identity.build.girth
    neck = joints[NECK].astype(float)
    hips = (joints[R_HIP] + joints[L_HIP]) / 2
    down = (hips - neck) / max(np.hypot(*(hips - neck)), 1e-6)
    across = np.array([down[1], -down[0]]) * unit
    if sk.facing:
        chest, waist = 0.55 * g, 0.47 * g
    else:
        spread = abs(float(np.dot(joints[L_SHOULDER] - joints[R_SHOULDER], across))) / 2 / unit**2
        chest, waist = spread + 0.12 * g, identity.build.hip + 0.22 * g
    belt = hips - down * 0.15 * unit
    crotch = hips + down * 0.45 * unit
    hem = hips + down * 1.25 * unit
    return TorsoQuads(
        top=np.array([neck - across * chest, neck + across * chest, hips + across * waist, hips - across * waist]),
        pelvis=np.array(
            [
                belt - across * waist,
                belt + across * waist,
                crotch + across * waist * 0.75,
                crotch - across * waist * 0.75,
            ]
        ),
        skirt=np.array(
            [belt - across * waist, belt + across * waist, hem + across * waist * 1.45, hem - across * waist * 1.45]
        ),
    )


def _draw_logo(canvas: _Canvas, identity: Identity, corners: np.ndarray) -> None:
    centre = _patch(corners, 0.3, 0.0)
    axis = _patch(corners, 1.0, 0.0) - _patch(corners, 0.0, 0.0)
    angle = math.atan2(-axis[0], axis[1])
    r = 0.26 * canvas.unit * identity.build.girth
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])

    def shape(points: list[tuple[float, float]]) -> np.ndarray:
        return centre + (np.array(points) * r) @ rot.T

    colour = identity.logo_colour
    part = Part(("logo",), Frame.rigid(centre, canvas.unit, angle))
    if identity.logo == "circle":
        canvas.disc(centre, 0.26 * identity.build.girth, colour, part.key)
    elif identity.logo == "ring":
        canvas.disc(centre, 0.26 * identity.build.girth, colour, part.key)
        canvas.disc(centre, 0.14 * identity.build.girth, identity.top.base, ("logo", "hole"))
    elif identity.logo == "triangle":
        canvas.polygon(shape([(0, -1), (0.95, 0.7), (-0.95, 0.7)]), colour, part)
    elif identity.logo == "diamond":
        canvas.polygon(shape([(0, -1), (0.75, 0), (0, 1), (-0.75, 0)]), colour, part)
    elif identity.logo == "star":
        star = [
            (
                math.sin(k * math.pi / 5) * (1 if k % 2 == 0 else 0.45),
                -math.cos(k * math.pi / 5) * (1 if k % 2 == 0 else 0.45),
            )
            for k in range(10)
        ]
        canvas.polygon(shape(star), colour, part)


def _draw_head(canvas: _Canvas, identity: Identity, pose: Pose, sk: Skeleton, layout: Layout) -> None:
    joints = layout.keypoints.astype(float)
    centre = layout.head_centre
    skin = identity.skin
    # The head's rotation in PIL's clockwise degrees, to turn the hair chords with it.
    tilt = math.degrees(math.atan2(-sk.head_axis[0], sk.head_axis[1]))
    # The face and the hair share the head's frame, turned with it (the ellipses themselves are not).
    head = Frame.rigid(centre, layout.unit, math.radians(tilt))
    dark = (30, 25, 25)
    if sk.facing:
        canvas.ellipse(centre, 0.4, 0.5, skin, ("head",), frame=head)
        canvas.ellipse(joints[NOSE], 0.07, 0.07, skin, ("nose", "profile"))
        # Hair over the back and top: a chord from behind the jaw round to the brow.
        start, end = (120, 300) if sk.facing > 0 else (240, 60)
        canvas.ellipse(centre, 0.44, 0.54, identity.hair, ("hair",), arc=(start + tilt, end + tilt), frame=head)
        canvas.ellipse(joints[FACE[sk.near][1]], 0.08, 0.12, _darker(skin, 0.9), ("ear", sk.near), 0.9)
        canvas.disc(joints[FACE[sk.near][0]], 0.06, dark, ("eye", sk.near))
        return
    for side in "RL":
        canvas.ellipse(joints[FACE[side][1]], 0.08, 0.13, _darker(skin, 0.92), ("ear", side), 0.92)
    if pose.view == "back":
        canvas.ellipse(centre - np.array([0.0, 0.02]) * layout.unit, 0.42, 0.53, identity.hair, ("hair",), frame=head)
        return
    canvas.ellipse(centre, 0.39, 0.5, skin, ("head",), frame=head)
    hair_centre = centre - np.array([0.0, 0.04]) * layout.unit
    canvas.ellipse(hair_centre, 0.43, 0.52, identity.hair, ("hair",), arc=(185 + tilt, 355 + tilt), frame=head)
    for eye, side in ((R_EYE, "R"), (L_EYE, "L")):
        canvas.disc(joints[eye], 0.06, dark, ("eye", side))
    canvas.disc(joints[NOSE], 0.05, _darker(skin, 0.8), ("nose",))
    mouth = joints[NOSE] + (joints[NOSE] - (joints[R_EYE] + joints[L_EYE]) / 2) * 1.1
    canvas.ellipse(mouth, 0.1, 0.03, (150, 60, 60), ("mouth",))


def _draw_long_hair(canvas: _Canvas, identity: Identity, layout: Layout) -> None:
    top = layout.head_centre
    neck = layout.keypoints[NECK].astype(float)
    down = (neck - top) / max(np.hypot(*(neck - top)), 1e-6)
    across = np.array([down[1], -down[0]])
    u = layout.unit
    bottom = neck + down * 0.55 * u
    corners = np.array(
        [top - across * 0.45 * u, top + across * 0.45 * u, bottom + across * 0.5 * u, bottom - across * 0.5 * u]
    )
    length = float(np.hypot(*(bottom - top))) / u
    canvas.polygon(corners, identity.hair, Part(("hair", "long"), Frame.along(corners, length, u)))


def _draw_neck(canvas: _Canvas, identity: Identity, layout: Layout) -> None:
    neck = layout.keypoints[NECK].astype(float)
    g = identity.build.girth
    corners = _limb_corners(layout.head_centre, neck, 0.16 * g * layout.unit, 0.19 * g * layout.unit)
    length = float(np.hypot(*(neck - layout.head_centre))) / layout.unit
    part = Part(("neck",), Frame.along(corners, length, layout.unit), 0.93)
    canvas.polygon(corners, _darker(identity.skin, 0.93), part)


def _point_in_quad(point: np.ndarray, quad: np.ndarray) -> bool:
    """Whether ``point`` lies inside the convex quad (either winding)."""
    edge = np.roll(quad, -1, axis=0) - quad
    to_point = point - quad
    signs = edge[:, 0] * to_point[:, 1] - edge[:, 1] * to_point[:, 0]
    return bool((signs >= 0).all() or (signs <= 0).all())


def render_person(
    identity: Identity,
    pose: Pose,
    background: Background,
    height: int,
    width: int,
    rng: np.random.Generator,
    closeup: bool = False,
) -> tuple[Image.Image, np.ndarray, Recording]:
    """Draw one person; return the RGB image, (18, 2) int ``(y, x)`` keypoints (-1: not visible,
    hidden by the body or outside the frame) and the recording of its parts (the input of
    :func:`bench.data.person_correspondence.correspondence`).  ``rng`` only places the figure (see
    :func:`place`).
    """
    sk = build_skeleton(identity, pose)
    layout = place(sk, rng, height, width, closeup)
    kp = layout.keypoints
    canvas = _Canvas(background, height, width, layout.unit)
    quads = torso_quads(identity, sk, kp, layout.unit)
    visible = np.ones(NUM_KEYPOINTS, dtype=bool)

    def torso() -> None:
        if identity.bottom_kind == "skirt":
            _draw_part(canvas, quads.skirt, 1.4, identity.bottom, ("skirt",))
        else:
            _draw_part(canvas, quads.pelvis, 0.6, identity.bottom, ("pelvis",))
        _draw_part(canvas, quads.top, identity.build.torso, identity.top, ("top",))

    if sk.facing:
        near, far = sk.near, ("L" if sk.near == "R" else "R")
        _draw_arm(canvas, identity, kp, far, 0.75)
        _draw_leg(canvas, identity, kp, far, sk.facing, 0.75)
        _draw_leg(canvas, identity, kp, near, sk.facing, 1.0)
        if identity.long_hair:
            _draw_long_hair(canvas, identity, layout)
        _draw_neck(canvas, identity, layout)
        torso()
        _draw_head(canvas, identity, pose, sk, layout)
        _draw_arm(canvas, identity, kp, near, 1.0)
        # The far side of the face is never seen; far joints are hidden where the body covers them.
        visible[list(FACE[far])] = False
        unit = layout.unit
        near_leg = [
            _limb_corners(kp[a].astype(float), kp[b].astype(float), 0.3 * unit, 0.3 * unit)
            for a, b in zip(LEG[near][:-1], LEG[near][1:])
        ]
        cover = quads.skirt if identity.bottom_kind == "skirt" else quads.pelvis
        occluders = [quads.top, cover, *near_leg]
        for joint in (*ARM[far], *LEG[far]):
            if any(_point_in_quad(kp[joint].astype(float), q) for q in occluders):
                visible[joint] = False
    else:
        if identity.long_hair and pose.view == "front":
            _draw_long_hair(canvas, identity, layout)
        for side in "RL":
            _draw_leg(canvas, identity, kp, side, 0.0, 1.0)
        _draw_neck(canvas, identity, layout)
        torso()
        if pose.view == "front" and identity.logo != "none":
            _draw_logo(canvas, identity, quads.top)
        if identity.long_hair and pose.view == "back":
            _draw_long_hair(canvas, identity, layout)
        _draw_head(canvas, identity, pose, sk, layout)
        for side in "RL":
            _draw_arm(canvas, identity, kp, side, 1.0)
        if pose.view == "back":
            visible[[NOSE, R_EYE, L_EYE]] = False
    inside = (kp[:, 0] >= 0) & (kp[:, 0] < width) & (kp[:, 1] >= 0) & (kp[:, 1] < height)
    yx = np.where((visible & inside)[:, None], kp[:, ::-1], MISSING)
    return canvas.result(), yx, canvas.recording


# ---------------------------------------------------------------------------------------------
# Dataset writer
# ---------------------------------------------------------------------------------------------
SPLITS = {"train": 0, "test": 1}


def stream(params: PersonsParams, split: str, index: int, purpose: int) -> np.random.Generator:
    """A random stream that depends only on (seed, split, identity index, purpose): 0 the identity,
    1 its pairs, 2 + k its k-th image.  Changing one split's size leaves the other split unchanged."""
    return np.random.default_rng([params.seed, SPLITS[split], index, purpose])


def sample_session(params: PersonsParams, split: str, index: int) -> tuple[Identity, Background]:
    """Identity ``index`` of ``split`` and the backdrop of its photo session.

    All images of one person share the backdrop, as the photos of one item in DeepFashion's in-shop
    set come from one studio session; a backdrop drawn per image would be a part of the target that
    neither the source image nor the target pose can tell, and it would fill most of the frame.
    ``studio`` (the default) uses one near-white backdrop for every identity, as the in-shop set does:
    the original encoders instance-normalise the raw image, so a backdrop colour drawn per identity
    shifts the whole frame by a per-channel offset no method can see, and the garments' colours with
    it.  The backdrop is drawn either way, so the identities are the same under both.
    """
    rng = stream(params, split, index, 0)
    identity = sample_identity(rng)
    session = sample_background(rng)
    return identity, STUDIO if params.backdrop == "studio" else session


def render_example(
    params: PersonsParams, split: str, index: int, pose_index: int, session: tuple[Identity, Background]
) -> tuple[Image.Image, np.ndarray, Pose, Recording]:
    """Image ``pose_index`` of identity ``index`` as ``write_dataset`` writes it: (image, keypoints,
    pose, recording of its parts)."""
    height, width = params.resolution
    identity, background = session
    rng = stream(params, split, index, 2 + pose_index)
    pose = fitting_pose(rng, identity, height, width)
    closeup = bool(rng.random() < params.closeup_fraction)
    image, keypoints, recording = render_person(identity, pose, background, height, width, rng, closeup)
    return image, keypoints, pose, recording


def fitting_pose(rng: np.random.Generator, identity: Identity, height: int, width: int) -> Pose:
    """Draw poses until one fits the frame without being shrunk much for its width (50 tries)."""
    for _ in range(50):
        pose = sample_pose(rng)
        if width_fit(build_skeleton(identity, pose), height, width) >= 0.85:
            return pose
    return pose


def pair_count(params: PersonsParams) -> int:
    """Ordered (source, target) pairs written per identity."""
    every = params.poses_per_identity * (params.poses_per_identity - 1)
    return every if params.pairs_per_identity is None else params.pairs_per_identity


def write_dataset(params: PersonsParams, out_dir: Path, progress: Progress | None = None) -> None:
    """Write images, annotation and pairs CSVs for both splits into ``out_dir``, and the ground-truth
    correspondence of every pair of the splits ``params.ground_truth`` names."""
    counts = {"train": params.identities_train, "test": params.identities_test}
    total = sum(counts.values()) * params.poses_per_identity
    height, width = params.resolution
    done = 0
    for split, count in counts.items():
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        annotation = ["name:keypoints_y:keypoints_x"]
        pairs = ["from,to"]
        truth = None
        if split in GROUND_TRUTH_SPLITS[params.ground_truth]:
            truth = GroundTruthWriter(out_dir, FILE_PREFIX, split, count * pair_count(params), height, width)
        for index in range(count):
            session = sample_session(params, split, index)
            names, recordings = [], []
            for pose_index in range(params.poses_per_identity):
                image, keypoints, pose, recording = render_example(params, split, index, pose_index, session)
                name = f"{split[:2]}{index:05d}-p{pose_index}-{pose.view.replace('_', '')}.png"
                image.save(out_dir / split / name, compress_level=1)
                ys, xs = (json.dumps(keypoints[:, i].tolist()) for i in (0, 1))
                annotation.append(f"{name}:{ys}:{xs}")
                names.append(name)
                recordings.append(recording)
                done += 1
                if progress is not None:
                    progress("synthetic persons", done, total)
            ordered = [(a, b) for a in range(len(names)) for b in range(len(names)) if a != b]
            chosen = range(len(ordered))
            if params.pairs_per_identity is not None:
                chosen = sorted(stream(params, split, index, 1).choice(len(ordered), params.pairs_per_identity, False))
            pairs.extend(f"{names[ordered[k][0]]},{names[ordered[k][1]]}" for k in chosen)
            if truth is not None:
                for k in chosen:
                    source, target = ordered[k]
                    truth.add(*correspondence(recordings[source], recordings[target], height, width))
        if truth is not None:
            truth.close()
        (out_dir / f"{FILE_PREFIX}-annotation-{split}.csv").write_text("\n".join(annotation) + "\n")
        (out_dir / f"{FILE_PREFIX}-pairs-{split}.csv").write_text("\n".join(pairs) + "\n")
