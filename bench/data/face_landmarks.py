"""The iBUG-68 facial landmark layout and GFLA's per-frame landmark text files.

One file per video frame, ``<root>/<phase>_keypoints/<video>/<frame>.txt``, with 68 lines ``x,y``
(integer pixel column, row) in iBUG-68 order, as written by GFLA's ``script/obtain_face_kp.py`` with
dlib.  That script writes ``<phase>_keypoint/`` while GFLA's loader reads ``<phase>_keypoints/``;
both spellings are accepted here (:func:`keypoint_dir`).

iBUG-68 index ranges (image left = the subject's right)::

    jaw 0-16 (image left ear -> chin 8 -> image right ear)   right brow 17-21   left brow 22-26
    nose bridge 27-30   lower nose 31-35   right eye 36-41   left eye 42-47
    outer lips 48-59   inner lips 60-67
"""

from __future__ import annotations

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
    """Parse landmark file text; returns (int (68, 2) array or None, problems naming ``where:line``)."""
    lines = text.splitlines()
    while lines and not lines[-1].strip():  # a trailing blank line is harmless
        lines.pop()
    problems: list[Problem] = []
    if len(lines) != NUM_LANDMARKS:
        problems.append(Problem(where, f"has {len(lines)} landmark lines, expected {NUM_LANDMARKS} lines 'x,y'"))
    points = []
    for number, line in enumerate(lines, start=1):
        fields = line.split(",")
        try:
            if len(fields) != 2:
                raise ValueError
            points.append((int(fields[0]), int(fields[1])))
        except ValueError:
            problems.append(Problem(f"{where}:{number}", f"expected two integers 'x,y', got {line!r}"))
    if problems:
        return None, problems
    return np.asarray(points, dtype=np.int64), []


def read_landmarks(path: Path) -> np.ndarray:
    """Read one landmark file as int (68, 2) ``x, y``; raises LandmarkFileError naming file and line."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise LandmarkFileError([Problem(str(path), f"cannot be read: {exc}")]) from exc
    points, problems = parse_landmarks(text, str(path))
    if points is None:
        raise LandmarkFileError(problems)
    return points
