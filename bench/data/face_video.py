"""Face animation data in GFLA's FaceForensics layout: the ``synthetic_faces`` and ``faceforensics``
DatasetSpecs, their loaders and their checks.

Layout (``phase`` = train, test)::

    <root>/<phase>_data/<video>/<frame>.png         (.jpg accepted)
    <root>/<phase>_keypoints/<video>/<frame>.txt    68 lines "x,y"; <phase>_keypoint/ also accepted

Samples follow bench/data/base.py: ``frames`` (T, 3, H, W) in [-1, 1], ``structures`` (T, S, H, W) in
[0, 1] (``dataset.structure``: ``face16``, S = 16, or ``face_edges``, S = 1, see face_structure.py),
``name`` (the video folder) and ``frame_names`` (frame file stems).  Frames are resized to
``dataset.resolution`` (bicubic) with the landmarks scaled alike; the structure is drawn at that size.
Where the dataset holds ground truth (``<phase>_correspondence/``, written by the synthetic generator
only) samples also carry ``flows_gt`` and ``visibility_gt`` at that size, for the sources the trainer
uses: the sample's previous frame and its first frame (face_correspondence.py).

* ``train_set``: every window of ``train.clip_length`` consecutive frames of every training video;
  the trainer's sampler, seeded by (seed, epoch), permutes them, so batches hold clips from random
  videos at random start frames (GFLA draws one random start per video per epoch; this covers the
  same clips without state in the dataset).  ``dataset.max_train`` keeps the first N videos (name
  order); videos shorter than a clip are skipped.
* ``test_set``: whole test videos in name order; ``dataset.max_test`` keeps the first N *videos*
  and ``dataset.options.test_frames`` (default: all) the first frames of each.
* ``reference_images``: every frame of the train split, or exactly the test set's frames.

``dataset.options``: ``canny`` (default true) adds the frame's own Canny edges outside the face
parts to the edge map, as the original does; ``test_frames`` as above.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from bench.config import ConfigError, TaskConfig
from bench.data.base import DatasetSpec, Problem, Progress, reject_unknown_keys
from bench.data.face_correspondence import VideoCorrespondence, correspondence_dir, correspondence_path
from bench.data.face_landmarks import KEYPOINT_DIR_NAMES, keypoint_dir, parse_landmarks, read_landmarks
from bench.data.face_structure import face_structure
from bench.data.faces import PHASES, prepare_synthetic_faces
from bench.registry import DATASETS

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
STRUCTURE_MODES = {"face16": "face16", "face_edges": "edges"}  # dataset.structure -> face_structure mode
OPTIONS = {"canny": True, "test_frames": None}


def _natural_key(text: str) -> list:
    """Sort key that orders ``frame2`` before ``frame10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _frame_files(folder: Path) -> list[Path]:
    frames = [p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES]
    return sorted(frames, key=lambda p: _natural_key(p.stem))


@dataclass(frozen=True)
class FaceVideo:
    """One video: its frames and their landmark files, in frame order."""

    name: str
    frames: tuple[Path, ...]
    landmarks: tuple[Path, ...]
    correspondence: Path | None = None  # the generator's ground-truth correspondence, when there is one

    @property
    def frame_names(self) -> list[str]:
        return [p.stem for p in self.frames]


def list_videos(root: Path, phase: str) -> list[FaceVideo]:
    """The videos of ``phase`` in name order, each with the frames that have a landmark file."""
    data_dir = Path(root) / f"{phase}_data"
    keypoints = keypoint_dir(root, phase)
    if not data_dir.is_dir() or keypoints is None:
        raise FileNotFoundError(
            f"{root}: expected {phase}_data/ and {phase}_keypoints/ (or {phase}_keypoint/) folders; "
            "run the dataset check for details"
        )
    videos = []
    for folder in sorted((p for p in data_dir.iterdir() if p.is_dir()), key=lambda p: _natural_key(p.name)):
        pairs = [(f, keypoints / folder.name / f"{f.stem}.txt") for f in _frame_files(folder)]
        pairs = [(f, k) for f, k in pairs if k.is_file()]
        if pairs:
            frames, landmarks = zip(*pairs)
            correspondence = correspondence_path(root, phase, folder.name)
            videos.append(
                FaceVideo(folder.name, frames, landmarks, correspondence if correspondence.is_file() else None)
            )
    return videos


@dataclass(frozen=True)
class FaceEncoding:
    """How frames become samples: output size and structure mode."""

    height: int
    width: int
    mode: str  # face_structure mode: face16 or edges
    canny: bool

    @classmethod
    def from_config(cls, cfg: TaskConfig) -> FaceEncoding:
        structure = cfg.dataset.structure
        if structure not in STRUCTURE_MODES:
            raise ConfigError(
                f"dataset.structure: {structure!r} is not a face structure; expected one of "
                f"{', '.join(STRUCTURE_MODES)}"
            )
        height, width = _resolution(cfg)
        return cls(height, width, STRUCTURE_MODES[structure], bool(_options(cfg)["canny"]))

    def image(self, path: Path) -> tuple[np.ndarray, tuple[int, int]]:
        """uint8 (H, W, 3) frame at the output size, and its original (width, height)."""
        with Image.open(path) as image:
            image = image.convert("RGB")
            original = image.size
            if original != (self.width, self.height):
                image = image.resize((self.width, self.height), Image.BICUBIC)
            return np.asarray(image), original

    def frame(self, frame_path: Path, landmark_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        """(3, H, W) image in [-1, 1] and its (S, H, W) structure."""
        pixels, (original_w, original_h) = self.image(frame_path)
        landmarks = read_landmarks(landmark_path).astype(np.float64)
        # Pixel centres map onto pixel centres: x' + 0.5 = (x + 0.5) * W / w.
        landmarks = (landmarks + 0.5) * np.array([self.width / original_w, self.height / original_h]) - 0.5
        structure = face_structure(landmarks, self.height, self.width, pixels if self.canny else None, self.mode)
        image = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 127.5 - 1.0
        return image, structure

    def sample(self, video: FaceVideo, indices: range) -> dict:
        """A video sample (see bench/data/base.py) of the frames at ``indices``."""
        pairs = [self.frame(video.frames[i], video.landmarks[i]) for i in indices]
        sample = {
            "frames": torch.stack([p[0] for p in pairs]),
            "structures": torch.stack([p[1] for p in pairs]),
            "name": video.name,
            "frame_names": [video.frame_names[i] for i in indices],
        }
        if video.correspondence is not None:
            sample["flows_gt"], sample["visibility_gt"] = self.ground_truth(video, indices)
        return sample

    def ground_truth(self, video: FaceVideo, indices: range) -> tuple[torch.Tensor, torch.Tensor]:
        """``flows_gt`` (T, 2, 2, H, W) and ``visibility_gt`` (T, 2, 1, H, W) of the frames at ``indices``
        with the sources the models get: previous = the sample's previous frame (its first frame for the
        first), reference = the sample's first frame (frame 0 of a test video, a clip's start frame)."""
        correspondence = VideoCorrespondence.load(video.correspondence)
        if correspondence.frames != len(video.frames):
            raise ValueError(
                f"{video.correspondence}: holds {correspondence.frames} frames but video {video.name} has "
                f"{len(video.frames)}; regenerate the dataset"
            )
        flows, visibility = correspondence.sample(list(indices), (self.height, self.width))
        return torch.from_numpy(flows), torch.from_numpy(visibility)


def _resolution(cfg: TaskConfig) -> tuple[int, int]:
    resolution = cfg.dataset.resolution
    if len(resolution) != 2 or min(resolution) < 1:
        raise ConfigError(f"dataset.resolution: expected [H, W] positive integers, got {resolution!r}")
    return resolution[0], resolution[1]


def _options(cfg: TaskConfig) -> dict:
    reject_unknown_keys(cfg.dataset.options, OPTIONS, "dataset.options", "face datasets")
    options = {**OPTIONS, **cfg.dataset.options}
    frames = options["test_frames"]
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 1):
        raise ConfigError(f"dataset.options.test_frames: expected a positive integer or null, got {frames!r}")
    if not isinstance(options["canny"], bool):
        raise ConfigError(f"dataset.options.canny: expected true or false, got {options['canny']!r}")
    return options


class FaceClipDataset(Dataset):
    """Every window of ``clip_length`` consecutive frames of every video, video by video.

    The trainer's sampler permutes the indices per (seed, epoch), so each batch draws random videos
    and random start frames, reproducibly, with no state kept here (safe with worker processes).
    """

    def __init__(self, videos: list[FaceVideo], clip_length: int, encoding: FaceEncoding) -> None:
        if clip_length < 1:
            raise ValueError(f"train.clip_length must be >= 1, got {clip_length}")
        self.videos = [v for v in videos if len(v.frames) >= clip_length]
        if not self.videos:
            longest = max((len(v.frames) for v in videos), default=0)
            raise ValueError(f"train.clip_length={clip_length} but the longest training video has {longest} frames")
        self.clip_length = clip_length
        self.encoding = encoding
        windows = [len(v.frames) - clip_length + 1 for v in self.videos]
        self._first_window = np.cumsum([0, *windows])  # index of each video's first window

    def __len__(self) -> int:
        return int(self._first_window[-1])

    def clip(self, index: int) -> tuple[FaceVideo, int]:
        """(video, start frame) of clip ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"clip index {index} out of range for {len(self)} clips")
        video = int(np.searchsorted(self._first_window, index, side="right")) - 1
        return self.videos[video], index - int(self._first_window[video])

    def __getitem__(self, index: int) -> dict:
        video, start = self.clip(index)
        return self.encoding.sample(video, range(start, start + self.clip_length))


class FaceVideoDataset(Dataset):
    """Whole videos (or their first ``max_frames`` frames), in a fixed order."""

    def __init__(self, videos: list[FaceVideo], encoding: FaceEncoding, max_frames: int | None = None) -> None:
        self.videos = videos
        self.encoding = encoding
        self.max_frames = max_frames

    def __len__(self) -> int:
        return len(self.videos)

    def frame_count(self, video: FaceVideo) -> int:
        return len(video.frames) if self.max_frames is None else min(self.max_frames, len(video.frames))

    def __getitem__(self, index: int) -> dict:
        video = self.videos[index]
        return self.encoding.sample(video, range(self.frame_count(video)))


class FaceFrameDataset(Dataset):
    """Single frames as uint8 (3, H, W) at the configured size (FID reference images)."""

    def __init__(self, frames: list[Path], encoding: FaceEncoding) -> None:
        self.frames = frames
        self.encoding = encoding

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> torch.Tensor:
        pixels, _ = self.encoding.image(self.frames[index])
        return torch.from_numpy(pixels.copy()).permute(2, 0, 1)


def _image_problem(path: Path) -> Problem | None:
    try:
        with Image.open(path) as image:
            image.load()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError ... for broken files
        return Problem(str(path), f"unreadable or truncated image ({type(exc).__name__}: {exc})")
    return None


def _landmark_problems(path: Path) -> list[Problem]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return [Problem(str(path), f"cannot be read: {exc}")]
    return parse_landmarks(text, str(path))[1]


def _phase_problems(root: Path, phase: str) -> tuple[list[Problem], list[int]]:
    """Problems of one phase and the frame counts of its videos."""
    data_dir = root / f"{phase}_data"
    names = " or ".join(f"{p.format(phase=phase)}/" for p in KEYPOINT_DIR_NAMES)
    present = [root / p.format(phase=phase) for p in KEYPOINT_DIR_NAMES if (root / p.format(phase=phase)).is_dir()]
    problems: list[Problem] = []
    if len(present) > 1:
        problems.append(Problem(str(root), f"both {present[0].name}/ and {present[1].name}/ exist; keep one"))
    keypoints = present[0] if present else None
    if keypoints is None:
        problems.append(Problem(str(root), f"missing landmark folder {names} (one folder of .txt files per video)"))
    if not data_dir.is_dir():
        problems.append(Problem(str(data_dir), "missing: expected one folder of frames per video"))
        return problems, []
    folders = sorted((p for p in data_dir.iterdir() if p.is_dir()), key=lambda p: _natural_key(p.name))
    if not folders:
        problems.append(Problem(str(data_dir), "contains no video folders"))
    counts = []
    for folder in folders:
        frames = _frame_files(folder)
        counts.append(len(frames))
        if not frames:
            problems.append(Problem(str(folder), f"video folder has no frames ({', '.join(FRAME_SUFFIXES)})"))
        problems += [p for p in map(_image_problem, frames) if p is not None]
        if keypoints is None:
            continue
        landmark_dir = keypoints / folder.name
        if not landmark_dir.is_dir():
            if frames:
                problems.append(
                    Problem(
                        str(landmark_dir), f"missing: video {folder} has {len(frames)} frames but no landmark folder"
                    )
                )
            continue
        landmark_files = {p.stem: p for p in landmark_dir.glob("*.txt")}
        frame_stems = {p.stem for p in frames}
        for frame in frames:
            if frame.stem not in landmark_files:
                problems.append(Problem(str(frame), f"frame has no landmark file {landmark_dir / frame.stem}.txt"))
        for stem in sorted(set(landmark_files) - frame_stems, key=_natural_key):
            problems.append(Problem(str(landmark_files[stem]), f"landmark file has no frame {stem}.png in {folder}"))
        for stem in sorted(landmark_files, key=_natural_key):
            problems += _landmark_problems(landmark_files[stem])
    if keypoints is not None:
        for orphan in sorted(p for p in keypoints.iterdir() if p.is_dir() and not (data_dir / p.name).is_dir()):
            problems.append(Problem(str(orphan), f"landmark folder without a video folder {data_dir / orphan.name}"))
    return problems, counts


def _correspondence_problems(root: Path, phase: str) -> list[Problem]:
    """Ground-truth files (generated datasets only) that do not load or do not match their video."""
    folder = correspondence_dir(root, phase)
    problems = []
    for path in sorted(folder.glob("*.npz")) if folder.is_dir() else []:
        frames = (
            _frame_files(root / f"{phase}_data" / path.stem) if (root / f"{phase}_data" / path.stem).is_dir() else []
        )
        try:
            correspondence = VideoCorrespondence.load(path)
        except (ValueError, OSError) as exc:
            problems.append(Problem(str(path), f"unreadable ground truth: {exc}"))
            continue
        if correspondence.frames != len(frames):
            problems.append(Problem(str(path), f"holds {correspondence.frames} frames, video has {len(frames)}"))
        elif frames:
            with Image.open(frames[0]) as image:
                if image.size[::-1] != correspondence.size:
                    problems.append(
                        Problem(str(path), f"is {correspondence.size} (H, W), the frames are {image.size[::-1]}")
                    )
    return problems


class FaceVideoSpec(DatasetSpec):
    """The FaceForensics layout shared by the real and the synthetic face datasets."""

    kind = "face_animation"

    def check(self, root: Path, cfg: TaskConfig) -> list[Problem]:
        root = Path(root)
        if not root.is_dir():
            return [Problem(str(root), "dataset directory does not exist")]
        problems: list[Problem] = []
        for phase in PHASES:
            phase_problems, counts = _phase_problems(root, phase)
            problems += phase_problems + _correspondence_problems(root, phase)
            if phase == "train" and counts and max(counts) < cfg.train.clip_length:
                problems.append(
                    Problem(
                        str(root / "train_data"),
                        f"no training video has train.clip_length={cfg.train.clip_length} frames "
                        f"(longest: {max(counts)})",
                    )
                )
        return problems

    def train_set(self, root: Path, cfg: TaskConfig, seed: int) -> FaceClipDataset:
        videos = list_videos(root, "train")[: cfg.dataset.max_train]
        return FaceClipDataset(videos, cfg.train.clip_length, FaceEncoding.from_config(cfg))

    def test_set(self, root: Path, cfg: TaskConfig) -> FaceVideoDataset:
        videos = list_videos(root, "test")[: cfg.dataset.max_test]
        return FaceVideoDataset(videos, FaceEncoding.from_config(cfg), _options(cfg)["test_frames"])

    def reference_images(self, root: Path, cfg: TaskConfig, split: str) -> FaceFrameDataset:
        encoding = FaceEncoding.from_config(cfg)
        if split == "train":
            frames = [frame for video in list_videos(root, "train") for frame in video.frames]
        elif split == "test":
            test = self.test_set(root, cfg)
            frames = [frame for video in test.videos for frame in video.frames[: test.frame_count(video)]]
        else:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return FaceFrameDataset(frames, encoding)


class SyntheticFacesSpec(FaceVideoSpec):
    """Procedural talking faces (bench/data/faces.py), generated on first use and cached."""

    name = "synthetic_faces"
    synthetic = True

    def prepare(self, cfg: TaskConfig, data_root: Path, progress: Progress | None = None) -> Path:
        return prepare_synthetic_faces(cfg, data_root, progress)


class FaceForensicsSpec(FaceVideoSpec):
    """Real FaceForensics videos prepared as in datasets/sections/faces.md."""

    name = "faceforensics"

    def prepare(self, cfg: TaskConfig, data_root: Path, progress: Progress | None = None) -> Path:
        if cfg.dataset.root is None:
            raise ConfigError(
                "dataset.root is not set: point it at the prepared FaceForensics folder "
                "(train_data/, train_keypoints/, test_data/, test_keypoints/; see datasets/sections/faces.md)"
            )
        root = Path(cfg.dataset.root).expanduser()
        if not root.is_dir():
            raise ConfigError(f"dataset.root: {root} does not exist (see datasets/sections/faces.md)")
        return root


DATASETS.add(SyntheticFacesSpec.name, SyntheticFacesSpec())
DATASETS.add(FaceForensicsSpec.name, FaceForensicsSpec())
