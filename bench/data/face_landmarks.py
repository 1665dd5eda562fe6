"""The iBUG-68 facial landmark layout and GFLA's per-frame landmark text files.

One file per video frame, ``<root>/<phase>_keypoints/<video>/<frame>.txt``, with 68 lines ``x,y``
(pixel column, row) in iBUG-68 order: integers as GFLA's ``script/obtain_face_kp.py`` writes them
with dlib, or decimals (``37.6,18.3``) as most other detectors do.  GFLA's loader reads either with
``np.loadtxt(path, delimiter=',')`` and rounds only where it draws; so does :func:`parse_landmarks`,
which returns floats.  That script writes ``<phase>_keypoint/`` while GFLA's loader reads
``<phase>_keypoints/``; both spellings are accepted here (:func:`keypoint_dir`).

iBUG-68 index ranges (image left = the subject's right)::

    jaw 0-16 (image left ear -> chin 8 -> image right ear)   right brow 17-21   left brow 22-26
    nose bridge 27-30   lower nose 31-35   right eye 36-41   left eye 42-47
    outer lips 48-59   inner lips 60-67
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bench.data.base import Problem

NUM_LANDMARKS = 68

JAW = range(0, 17)
RIGHT_BROW = range(17, 22)
LEFT_BROW = range(22, 27)
NOSE_BRIDGE = range(27, 31)
LOWER_NOSE = range(31, 36)
RIGHT_EYE = range(36, 42)
LEFT_EYE = range(42, 48)
OUTER_LIPS = range(48, 60)
INNER_LIPS = range(60, 68)

# Left/right mirror partner of every landmark (self for points on the symmetry axis).
_MIRROR_PAIRS = (
    [(i, 16 - i) for i in range(8)]
    + [(17 + i, 26 - i) for i in range(5)]
    + [(31, 35), (32, 34)]
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]
    + [(60, 64), (61, 63), (65, 67)]
)
MIRROR = np.arange(NUM_LANDMARKS)
for _a, _b in _MIRROR_PAIRS:
    MIRROR[_a], MIRROR[_b] = _b, _a

KEYPOINT_DIR_NAMES = ("{phase}_keypoints", "{phase}_keypoint")  # GFLA loader's name first


class LandmarkFileError(ValueError):
    """A landmark file is malformed; carries the problems (file and line) found in it."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def keypoint_dir(root: Path, phase: str) -> Path | None:
    """The landmark folder of ``phase`` (``<phase>_keypoints`` or ``<phase>_keypoint``), or None."""
    for pattern in KEYPOINT_DIR_NAMES:
        candidate = Path(root) / pattern.format(phase=phase)
        if candidate.is_dir():
            return candidate
    return None


def format_landmarks(landmarks: np.ndarray) -> str:
    """The file text for integer (68, 2) ``x, y`` landmarks."""
    points = np.asarray(landmarks)
    if points.shape != (NUM_LANDMARKS, 2) or not np.issubdtype(points.dtype, np.integer):
        raise ValueError(f"expected integer landmarks of shape (68, 2), got {points.dtype} {points.shape}")
    return "".join(f"{x},{y}\n" for x, y in points.tolist())


def write_landmarks(path: Path, landmarks: np.ndarray) -> None:
    """Write integer (68, 2) landmarks as 68 lines ``x,y``."""
    Path(path).write_text(format_landmarks(landmarks))


def parse_landmarks(text: str, where: str) -> tuple[np.ndarray | None, list[Problem]]:
    """Parse landmark file text as GFLA's ``np.loadtxt(path, delimiter=',')`` does: rows of two
    comma-separated numbers, integer or decimal, blank lines and ``#`` comments skipped.  Returns
    (float (68, 2) ``x, y`` array or None, problems naming ``where:line``); refused, as the original
    fails on them or draws garbage from them: a row count other than 68, a row without exactly two
    numbers, a coordinate that is not finite."""
    problems: list[Problem] = []
    points = []
    rows = 0
    for number, line in enumerate(text.splitlines(), start=1):
        row = line.split("#", 1)[0].strip()
        if not row:
            continue
        rows += 1
        fields = row.split(",")
        try:
            if len(fields) != 2 or "_" in row:  # loadtxt refuses Python's digit separators
                raise ValueError
            x, y = float(fields[0]), float(fields[1])
        except ValueError:
            problems.append(Problem(f"{where}:{number}", f"expected two numbers 'x,y', got {line!r}"))
            continue
        if not (math.isfinite(x) and math.isfinite(y)):
            problems.append(Problem(f"{where}:{number}", f"expected finite coordinates 'x,y', got {line!r}"))
        points.append((x, y))
    if rows != NUM_LANDMARKS:
        problems.insert(0, Problem(where, f"has {rows} landmark lines, expected {NUM_LANDMARKS} lines 'x,y'"))
    if problems:
        return None, problems
    return np.asarray(points, dtype=np.float64), []


def read_landmarks(path: Path) -> np.ndarray:
    """Read one landmark file as float (68, 2) ``x, y``; raises LandmarkFileError naming file and line."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise LandmarkFileError([Problem(str(path), f"cannot be read: {exc}")]) from exc
    points, problems = parse_landmarks(text, str(path))
    if points is None:
        raise LandmarkFileError(problems)
    return points
