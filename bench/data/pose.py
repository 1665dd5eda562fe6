"""Pose-transfer datasets in GFLA's layout: DeepFashion, Market-1501 and the synthetic persons.

Layout (``root``)::

    train/  test/                               images
    <prefix>-annotation-{train,test}.csv        name:keypoints_y:keypoints_x  (18 ints each, -1 missing)
    <prefix>-pairs-{train,test}.csv             from,to                       (image names)

Keypoints are annotated in a fixed frame (256x176 for DeepFashion, 128x64 for Market, the
generated size for synthetic persons).  The loader resizes images to ``cfg.dataset.resolution``
(bicubic), rescales the keypoints from the annotation frame to it (x by W/frame_w, y by H/frame_h,
as GFLA does when it resizes DeepFashion to 256x256) and encodes them as Gaussian heatmaps of
``cfg.dataset.heatmap_sigma`` pixels.  With ``cfg.train.augment`` training pairs get GFLA's Market
augmentation: a random affine (rotation +-5 deg, shift U(-5, 5) px per axis, scale U(0.95, 1.05),
grey fill) on the source and an independent, damped one (angle x0.2, shift x0.5, scale 1) on the
target, applied to the keypoints as well.  Augmentation draws from torch's global RNG, so it is
reproducible under ``torch.manual_seed`` (DataLoader workers derive their seeds from it).

Generated datasets may hold ground-truth correspondence (``<prefix>-flow-<split>.npy``,
``<prefix>-visibility-<split>.npy``, see :mod:`bench.data.person_correspondence`); when present,
samples carry ``flow_gt`` and ``visibility_gt``, carried through the resize and the augmentation
exactly as the images are.  Real datasets have none.
"""

from __future__ import annotations

import csv
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from bench.config import ConfigError, TaskConfig
from bench.data import persons
from bench.data.base import DatasetError, DatasetSpec, Problem, Progress
from bench.data.heatmaps import MISSING, NUM_KEYPOINTS, keypoints_to_heatmaps, missing_mask
from bench.data.person_correspondence import ground_truth_paths
from bench.registry import DATASETS

ANNOTATION_HEADER = ["name", "keypoints_y", "keypoints_x"]
SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
RESIZE_FILTER = "bicubic"
GREY_FILL = (128, 128, 128)
ASPECT_TOLERANCE = 0.03  # images resized into the annotation frame may differ this much in H/W


# ---------------------------------------------------------------------------------------------
# CSV parsing (shared by the loader and check)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pair:
    """One row of a pairs CSV; ``line`` is its 1-based line number."""

    source: str
    target: str
    line: int


def _coordinates(text: str, field: str, limit: int, where: str, problems: list[Problem]) -> list[int] | None:
    try:
        values = json.loads(text)
    except ValueError:
        problems.append(Problem(where, f"{field} is not a JSON list: {text[:60]!r}"))
        return None
    if not isinstance(values, list):
        problems.append(Problem(where, f"{field} is not a JSON list: {text[:60]!r}"))
        return None
    if len(values) != NUM_KEYPOINTS:
        problems.append(Problem(where, f"{field} has {len(values)} values, expected {NUM_KEYPOINTS}"))
        return None
    ok = True
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int):
            problems.append(Problem(where, f"{field}[{i}] = {v!r} is not an integer"))
            ok = False
        elif v != MISSING and not 0 <= v < limit:
            problems.append(Problem(where, f"{field}[{i}] = {v}: expected -1 (missing) or a pixel in [0, {limit})"))
            ok = False
    return values if ok else None


def read_annotation(path: Path, frame: tuple[int, int]) -> tuple[dict[str, np.ndarray], list[Problem]]:
    """Parse ``name:keypoints_y:keypoints_x`` rows into name -> (18, 2) int (y, x) arrays, collecting
    every problem (with ``file:line``) instead of stopping at the first."""
    keypoints: dict[str, np.ndarray] = {}
    problems: list[Problem] = []
    lines = Path(path).read_text().splitlines()
    if not lines:
        return keypoints, [Problem(str(path), "empty file; expected the header name:keypoints_y:keypoints_x")]
    header = [h.strip() for h in lines[0].split(":")]
    if header != ANNOTATION_HEADER:
        problems.append(Problem(f"{path}:1", f"expected the header name:keypoints_y:keypoints_x, got {lines[0]!r}"))
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        fields = line.split(":")
        if len(fields) != 3:
            problems.append(
                Problem(where, f"expected 3 ':'-separated fields (name:keypoints_y:keypoints_x), got {len(fields)}")
            )
            continue
        name = fields[0].strip()
        ys = _coordinates(fields[1], "keypoints_y", frame[0], where, problems)
        xs = _coordinates(fields[2], "keypoints_x", frame[1], where, problems)
        if name in keypoints:
            problems.append(Problem(where, f"duplicate name {name!r}"))
        elif ys is not None and xs is not None:
            keypoints[name] = np.stack([ys, xs], axis=1).astype(np.int64)
    return keypoints, problems


def read_pairs(path: Path) -> tuple[list[Pair], list[Problem]]:
    """Parse a ``from,to`` pairs CSV (extra columns, such as an index, are ignored)."""
    pairs: list[Pair] = []
    problems: list[Problem] = []
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return pairs, [Problem(str(path), "empty file; expected a header with columns from,to")]
    header = [h.strip() for h in rows[0]]
    if "from" not in header or "to" not in header:
        return pairs, [Problem(f"{path}:1", f"expected a header with columns from,to, got {','.join(rows[0])!r}")]
    i_from, i_to = header.index("from"), header.index("to")
    for number, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) != len(header):
            problems.append(
                Problem(
                    f"{path}:{number}",
                    f"expected {len(header)} comma-separated fields ({','.join(header)}), got {len(row)}",
                )
            )
            continue
        pairs.append(Pair(row[i_from].strip(), row[i_to].strip(), number))
    return pairs, problems


def _image_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as an image (opened and fully decoded), or None."""
    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                image.draft("RGB", (image.width // 8, image.height // 8))  # decodes every byte, 1/8 scale
            image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        return f"unreadable image: {exc}"
    return None


def _image_size(path: Path) -> tuple[int, int]:
    """(H, W) from the image header."""
    with Image.open(path) as image:
        return image.height, image.width


def subset(count: int, cap: int | None) -> list[int]:
    """Indices of a deterministic subset of at most ``cap`` items (the same for every seed and method)."""
    if cap is None or cap >= count:
        return list(range(count))
    return sorted(np.random.default_rng(0).choice(count, size=cap, replace=False).tolist())


# ---------------------------------------------------------------------------------------------
# Geometry: resizing and augmentation
# ---------------------------------------------------------------------------------------------
def rescale_keypoints(keypoints: np.ndarray, frame: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Float (18, 2) (y, x) keypoints moved from the annotation ``frame`` to ``size`` (both H, W);
    missing rows stay -1."""
    out = keypoints.astype(np.float64) * (np.array(size, dtype=np.float64) / np.array(frame, dtype=np.float64))
    out[missing_mask(keypoints)] = MISSING
    return out


@dataclass(frozen=True)
class Affine:
    """Rotation (degrees, counter-clockwise on screen) and scale about the image centre, then a
    shift (pixels, x and y)."""

    angle: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)
    scale: float = 1.0

    def matrix(self, height: int, width: int) -> np.ndarray:
        """3x3 forward map of continuous (x, y) image coordinates (pixel i spans [i, i + 1))."""
        a = math.radians(self.angle)
        cx, cy = width / 2, height / 2
        rot = self.scale * np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
        out = np.eye(3)
        out[:2, :2] = rot
        out[:2, 2] = np.array([cx, cy]) + np.array(self.shift) - rot @ np.array([cx, cy])
        return out

    def apply_image(self, image: Image.Image) -> Image.Image:
        inverse = np.linalg.inv(self.matrix(image.height, image.width))
        return image.transform(
            image.size,
            Image.Transform.AFFINE,
            data=tuple(inverse[:2].ravel()),
            resample=Image.Resampling.BILINEAR,
            fillcolor=GREY_FILL,
        )

    def apply_keypoints(self, keypoints: np.ndarray, height: int, width: int) -> np.ndarray:
        """(y, x) pixel-index keypoints through the same map; missing rows stay -1."""
        xy1 = np.concatenate([keypoints[:, ::-1] + 0.5, np.ones((len(keypoints), 1))], axis=1)
        moved = (xy1 @ self.matrix(height, width).T)[:, 1::-1] - 0.5
        moved[missing_mask(keypoints)] = MISSING
        return moved


def _random_affine(shift_scale: float) -> Affine:
    """Angle U(-5, 5) degrees, shift U(-5, 5) pixels per axis (times ``shift_scale``), scale U(0.95, 1.05)."""
    u = torch.rand(4, dtype=torch.float64).tolist()
    shift = ((u[1] * 2 - 1) * 5.0 * shift_scale, (u[2] * 2 - 1) * 5.0 * shift_scale)
    return Affine((u[0] * 2 - 1) * 5.0, shift, 0.95 + 0.1 * u[3])


def market_augmentation(shift_scale: float = 1.0) -> tuple[Affine, Affine]:
    """GFLA's Market augmentation (source, target) from torch's RNG.  As the original, the target's
    parameters are a second, independent draw, damped to angle x0.2, shift x0.5 and scale 1.  Shifts
    are pixels of the annotation frame; ``shift_scale`` (load size / frame) carries them to the load size."""
    source, target = _random_affine(shift_scale), _random_affine(shift_scale)
    return source, Affine(target.angle * 0.2, (target.shift[0] * 0.5, target.shift[1] * 0.5), 1.0)


def transport_ground_truth(
    flow: np.ndarray, visibility: np.ndarray, size: tuple[int, int], source_map: np.ndarray, target_map: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """A written pair's ground truth, flow (2, h, w) and visibility (h, w), carried to the loaded
    pair of ``size`` (H, W): ``source_map`` / ``target_map`` are 3x3 maps of continuous (x, y)
    coordinates (pixel i spans [i, i + 1)) from the written image to the loaded one (resize, then
    augmentation).  Each loaded target pixel takes the written pixel under it (nearest: flows and
    visibility jump at part edges); its source point goes through ``source_map``.  Pixels whose
    preimage lies outside the written frame get flow 0 and visibility 0.  Returns float32
    ``flow_gt`` (2, H, W) and ``visibility_gt`` (1, H, W)."""
    height, width = size
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    loaded = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    written = np.linalg.inv(target_map) @ loaded
    column, row = np.floor(written[0]).astype(np.int64), np.floor(written[1]).astype(np.int64)
    inside = (column >= 0) & (column < visibility.shape[1]) & (row >= 0) & (row < visibility.shape[0])
    column, row = column.clip(0, visibility.shape[1] - 1), row.clip(0, visibility.shape[0] - 1)
    source = written[:2] + flow[:, row, column]
    moved = (source_map @ np.vstack([source, np.ones(source.shape[1])]))[:2] - loaded[:2]
    moved[:, ~inside] = 0.0
    shown = (visibility[row, column] > 0) & inside
    return (
        torch.from_numpy(moved.reshape(2, height, width).astype(np.float32)),
        torch.from_numpy(shown.reshape(1, height, width).astype(np.float32)),
    )


def _to_tensor(image: Image.Image) -> torch.Tensor:
    """uint8 (3, H, W)."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


def load_image(path: Path, size: tuple[int, int]) -> Image.Image:
    """An RGB image resized (bicubic) to ``size`` (H, W)."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.Resampling.BICUBIC)
        return image


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------
class PairDataset(Dataset):
    """(source, target) pairs of one split as GFLA samples, see :mod:`bench.data.base`.

    Besides the contract's keys each sample carries ``source_keypoints`` / ``target_keypoints``:
    float (18, 2) (y, x) at the load resolution after augmentation, -1 where missing.  With
    ``truth`` (the paths of the split's flow and visibility arrays, one row per pair of the pairs
    CSV; ``rows`` the row of each pair) samples carry ``flow_gt`` and ``visibility_gt`` too, resized
    and augmented with the images (:func:`transport_ground_truth`).  The arrays are memory-mapped on
    first use in each process, so pickling the dataset for DataLoader workers copies no data.
    """

    def __init__(
        self,
        folder: Path,
        pairs: list[Pair],
        keypoints: dict[str, np.ndarray],
        frame: tuple[int, int],
        size: tuple[int, int],
        sigma: float,
        augment: bool,
        truth: tuple[Path, Path] | None = None,
        rows: list[int] | None = None,
    ) -> None:
        self.folder, self.pairs, self.keypoints = folder, pairs, keypoints
        self.frame, self.size, self.sigma, self.augment = frame, size, sigma, augment
        self.truth, self.rows = truth, rows
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None}

    def _ground_truth(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None:
            flow, visibility = (np.load(path, mmap_mode="r") for path in self.truth)
            self._arrays = (flow, visibility)
        row = self.rows[index]
        return np.asarray(self._arrays[0][row]), np.asarray(self._arrays[1][row])

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, name: str, affine: Affine | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        height, width = self.size
        image = load_image(self.folder / name, self.size)
        keypoints = rescale_keypoints(self.keypoints[name], self.frame, self.size)
        if affine is not None:
            image = affine.apply_image(image)
            keypoints = affine.apply_keypoints(keypoints, height, width)
        pixels = _to_tensor(image).float() / 127.5 - 1.0
        heatmaps = keypoints_to_heatmaps(keypoints, height, width, self.sigma)
        return pixels, heatmaps, torch.from_numpy(keypoints.astype(np.float32))

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        source_affine = target_affine = None
        if self.augment:
            source_affine, target_affine = market_augmentation(self.size[0] / self.frame[0])
        src_image, src_maps, src_kp = self._load(pair.source, source_affine)
        tgt_image, tgt_maps, tgt_kp = self._load(pair.target, target_affine)
        sample = {
            "source_image": src_image,
            "source_structure": src_maps,
            "target_image": tgt_image,
            "target_structure": tgt_maps,
            "name": f"{Path(pair.source).stem}_2_{Path(pair.target).stem}",
            "source_keypoints": src_kp,
            "target_keypoints": tgt_kp,
        }
        if self.truth is not None:
            resize = np.diag([self.size[1] / self.frame[1], self.size[0] / self.frame[0], 1.0])
            source_map, target_map = (
                resize if affine is None else affine.matrix(*self.size) @ resize
                for affine in (source_affine, target_affine)
            )
            sample["flow_gt"], sample["visibility_gt"] = transport_ground_truth(
                *self._ground_truth(index), self.size, source_map, target_map
            )
        return sample


class ImageFolder(Dataset):
    """The images of a split as uint8 (3, H, W) at ``size``, sorted by name (the FID reference)."""

    def __init__(self, paths: list[Path], size: tuple[int, int]) -> None:
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return _to_tensor(load_image(self.paths[index], self.size))


# ---------------------------------------------------------------------------------------------
# Dataset specs
# ---------------------------------------------------------------------------------------------
class PoseTransferSpec(DatasetSpec):
    """The GFLA pose-transfer layout; subclasses fix the file prefixes and the annotation frame."""

    kind = "pose_transfer"
    prefixes: tuple[str, ...] = ()
    options: tuple[str, ...] = ()  # valid dataset.options keys

    def annotation_frame(self, root: Path, cfg: TaskConfig) -> tuple[int, int]:
        """(H, W) of the frame the CSV keypoints are given in."""
        raise NotImplementedError

    def exact_size(self, cfg: TaskConfig) -> bool:
        """Whether image files must have exactly the annotation frame's size (else its aspect ratio)."""
        return True

    def prepare(self, cfg: TaskConfig, data_root: Path, progress: Progress | None = None) -> Path:
        if cfg.dataset.root is None:
            raise ConfigError(
                f"dataset.root: not set; point it at the prepared {self.name} directory (layout in datasets/README.md)"
            )
        return Path(cfg.dataset.root).expanduser()

    def preprocessing(self, root: Path, cfg: TaskConfig) -> dict[str, Any]:
        """How images and keypoints are brought to the load resolution (stored with results)."""
        return {
            "dataset": self.name,
            "resolution": list(cfg.dataset.resolution),
            "resize_filter": RESIZE_FILTER,
            "annotation_frame": list(self.annotation_frame(root, cfg)),
            "heatmap_sigma": cfg.dataset.heatmap_sigma,
            "augment": bool(cfg.train.augment),
        }

    # -- files --------------------------------------------------------------------------------
    def csv_path(self, root: Path, kind: str, split: str) -> Path | None:
        """``<prefix>-<kind>-<split>.csv`` for the first prefix that exists, else None."""
        for prefix in self.prefixes:
            path = Path(root) / f"{prefix}-{kind}-{split}.csv"
            if path.is_file():
                return path
        return None

    def _read_split(
        self, root: Path, split: str, frame: tuple[int, int]
    ) -> tuple[dict[str, np.ndarray], list[Pair], list[Problem]]:
        """The split's keypoints and pairs, and every problem of its two CSVs."""
        problems: list[Problem] = []
        keypoints: dict[str, np.ndarray] = {}
        pairs: list[Pair] = []
        annotation = self.csv_path(root, "annotation", split)
        if annotation is None:
            problems.append(self._missing_csv(root, "annotation", split))
        else:
            keypoints, bad = read_annotation(annotation, frame)
            problems.extend(bad)
        pairs_path = self.csv_path(root, "pairs", split)
        if pairs_path is None:
            problems.append(self._missing_csv(root, "pairs", split))
        else:
            pairs, bad = read_pairs(pairs_path)
            problems.extend(bad)
            if annotation is not None:
                problems.extend(
                    Problem(f"{pairs_path}:{pair.line}", f"{name!r} is not in {annotation.name}")
                    for pair in pairs
                    for name in (pair.source, pair.target)
                    if name not in keypoints
                )
        return keypoints, pairs, problems

    def _records(self, root: Path, cfg: TaskConfig, split: str) -> tuple[dict[str, np.ndarray], list[Pair]]:
        """The split's keypoints and pairs; DatasetError lists every CSV problem at once."""
        keypoints, pairs, problems = self._read_split(root, split, self.annotation_frame(root, cfg))
        if problems:
            raise DatasetError(root, problems)
        return keypoints, pairs

    def _missing_csv(self, root: Path, kind: str, split: str) -> Problem:
        names = " or ".join(f"{p}-{kind}-{split}.csv" for p in self.prefixes)
        return Problem(str(Path(root) / f"{self.prefixes[0]}-{kind}-{split}.csv"), f"missing (expected {names})")

    # -- samples ------------------------------------------------------------------------------
    def _pairs(self, root: Path, cfg: TaskConfig, split: str, cap: int | None, augment: bool) -> PairDataset:
        self._require_valid_config(cfg)
        keypoints, pairs = self._records(root, cfg, split)
        rows = subset(len(pairs), cap)
        size = (int(cfg.dataset.resolution[0]), int(cfg.dataset.resolution[1]))
        frame = self.annotation_frame(root, cfg)
        truth, problems = self._ground_truth(root, split, len(pairs), frame)
        if problems:
            raise DatasetError(root, problems)
        return PairDataset(
            Path(root) / split,
            [pairs[i] for i in rows],
            keypoints,
            frame,
            size,
            cfg.dataset.heatmap_sigma,
            augment,
            truth,
            rows,
        )

    def _ground_truth(
        self, root: Path, split: str, count: int, frame: tuple[int, int]
    ) -> tuple[tuple[Path, Path] | None, list[Problem]]:
        """The paths of the split's ground-truth flow and visibility arrays, if the directory has
        them (only generated datasets do; layout in :mod:`bench.data.person_correspondence`), with
        every problem of their shapes."""
        pairs_path = self.csv_path(root, "pairs", split)
        if pairs_path is None:
            return None, []
        prefix = pairs_path.name[: -len(f"-pairs-{split}.csv")]
        paths = ground_truth_paths(root, prefix, split)
        present = [path.is_file() for path in paths]
        if not any(present):
            return None, []
        if not all(present):
            missing, there = (paths[1], paths[0]) if present[0] else (paths[0], paths[1])
            return None, [Problem(str(missing), f"missing, but {there.name} is there (both or neither)")]
        expected = {paths[0]: ((count, 2, *frame), np.float32), paths[1]: ((count, *frame), np.uint8)}
        problems = []
        for path, (shape, dtype) in expected.items():
            try:
                array = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                problems.append(Problem(str(path), f"unreadable .npy file: {exc}"))
                continue
            if array.shape != shape or array.dtype != dtype:
                problems.append(
                    Problem(
                        str(path),
                        f"expected {np.dtype(dtype).name} {shape} (one row per pair of {pairs_path.name}, "
                        f"frame {frame[0]}x{frame[1]}), got {array.dtype.name} {array.shape}",
                    )
                )
        return (None, problems) if problems else (paths, [])

    def config_problems(self, cfg: TaskConfig) -> list[Problem]:
        """Settings this dataset cannot serve, each named by its config key."""
        problems = []
        if cfg.dataset.structure != "heatmaps":
            problems.append(
                Problem("dataset.structure", f"{self.name} provides 'heatmaps', got {cfg.dataset.structure!r}")
            )
        unknown = sorted(set(cfg.dataset.options) - set(self.options))
        if unknown:
            valid = ", ".join(self.options) or "(none)"
            problems.append(
                Problem("dataset.options", f"unknown key(s) {', '.join(unknown)} for {self.name}; valid keys: {valid}")
            )
        return problems

    def _require_valid_config(self, cfg: TaskConfig) -> None:
        problems = self.config_problems(cfg)
        if problems:
            raise ConfigError("; ".join(str(p) for p in problems))

    def train_set(self, root: Path, cfg: TaskConfig, seed: int) -> Dataset:
        """Training pairs (deterministic ``max_train`` subset); augmentation draws from torch's RNG,
        which the runner seeds with ``seed``."""
        return self._pairs(root, cfg, "train", cfg.dataset.max_train, cfg.train.augment)

    def test_set(self, root: Path, cfg: TaskConfig) -> Dataset:
        return self._pairs(root, cfg, "test", cfg.dataset.max_test, False)

    def reference_images(self, root: Path, cfg: TaskConfig, split: str) -> Dataset:
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {', '.join(SPLITS)}, got {split!r}")
        paths = sorted(p for p in (Path(root) / split).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return ImageFolder(paths, (int(cfg.dataset.resolution[0]), int(cfg.dataset.resolution[1])))

    # -- checking -----------------------------------------------------------------------------
    def check(self, root: Path, cfg: TaskConfig) -> list[Problem]:
        root = Path(root)
        if not root.is_dir():
            return [Problem(str(root), "dataset directory does not exist")]
        problems = self.config_problems(cfg)
        if problems:
            return problems
        try:
            frame = self.annotation_frame(root, cfg)
        except ValueError as exc:
            return [Problem(str(root), str(exc))]
        exact = self.exact_size(cfg)
        for split in SPLITS:
            problems.extend(self._check_split(root, split, frame, exact))
        return problems

    def _check_split(self, root: Path, split: str, frame: tuple[int, int], exact: bool) -> list[Problem]:
        folder = root / split
        keypoints, pairs, problems = self._read_split(root, split, frame)
        if not folder.is_dir():
            return [Problem(str(folder), f"missing {split} image directory"), *problems]
        files = {p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
        problems.extend(self._ground_truth(root, split, len(pairs), frame)[1])
        pairs_path = self.csv_path(root, "pairs", split)
        problems.extend(
            Problem(f"{pairs_path}:{pair.line}", f"image {split}/{name} does not exist")
            for pair in pairs
            for name in (pair.source, pair.target)
            if name not in files
        )
        # Decoding dominates on real data; PIL releases the GIL while decoding, so threads help.
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for found in pool.map(lambda name: self._check_image(folder / name, frame, exact), sorted(files)):
                problems.extend(found)
        return problems

    def _check_image(self, path: Path, frame: tuple[int, int], exact: bool) -> list[Problem]:
        reason = _image_problem(path)
        if reason is not None:
            return [Problem(str(path), reason)]
        height, width = _image_size(path)
        if exact and (height, width) != frame:
            return [
                Problem(
                    str(path),
                    f"image is {height}x{width} (HxW), expected {frame[0]}x{frame[1]}, "
                    "the frame its keypoints are annotated in",
                )
            ]
        if abs(height / width - frame[0] / frame[1]) > ASPECT_TOLERANCE * frame[0] / frame[1]:
            return [
                Problem(
                    str(path),
                    f"image is {height}x{width} (HxW); its aspect ratio differs from the "
                    f"{frame[0]}x{frame[1]} keypoint frame",
                )
            ]
        return []


class DeepFashionSpec(PoseTransferSpec):
    """DeepFashion In-shop with GFLA's/PATN's splits; keypoints annotated at 256x176.

    ``dataset.options.protocol``: ``"256x256"`` (GFLA: img_highres-sized files resized straight to the
    load resolution, aspect distorted) or ``"256x176"`` (PATN: the 256x176 files).  Either way the
    keypoints are rescaled from 256x176 to the load resolution; the protocol decides which files
    check() expects (any size with the 256:176 aspect ratio, or exactly 256x176) and is recorded.
    """

    name = "deepfashion"
    prefixes = ("fasion", "fashion")  # the original repository's typo first
    options = ("protocol",)
    protocols = ("256x256", "256x176")

    def annotation_frame(self, root: Path, cfg: TaskConfig) -> tuple[int, int]:
        return (256, 176)

    def config_problems(self, cfg: TaskConfig) -> list[Problem]:
        problems = super().config_problems(cfg)
        value = cfg.dataset.options.get("protocol", "256x256")
        if value not in self.protocols:
            problems.append(
                Problem("dataset.options.protocol", f"expected one of {', '.join(self.protocols)}, got {value!r}")
            )
        return problems

    def protocol(self, cfg: TaskConfig) -> str:
        """The validated ``dataset.options.protocol`` (default ``256x256``)."""
        self._require_valid_config(cfg)
        return cfg.dataset.options.get("protocol", "256x256")

    def exact_size(self, cfg: TaskConfig) -> bool:
        return self.protocol(cfg) == "256x176"

    def preprocessing(self, root: Path, cfg: TaskConfig) -> dict[str, Any]:
        return {**super().preprocessing(root, cfg), "protocol": self.protocol(cfg)}


class Market1501Spec(PoseTransferSpec):
    """Market-1501 with GFLA's/PATN's splits: 128x64 images and keypoints."""

    name = "market1501"
    prefixes = ("market",)

    def annotation_frame(self, root: Path, cfg: TaskConfig) -> tuple[int, int]:
        return (128, 64)


class SyntheticPersonsSpec(PoseTransferSpec):
    """Procedural clothed persons (:mod:`bench.data.persons`), generated once and cached, then read
    through the same loader as DeepFashion; keypoints are annotated at the generated size."""

    name = "synthetic_persons"
    synthetic = True
    prefixes = (persons.FILE_PREFIX,)

    def prepare(self, cfg: TaskConfig, data_root: Path, progress: Progress | None = None) -> Path:
        if cfg.dataset.root is not None:
            return Path(cfg.dataset.root).expanduser()
        return persons.ensure_dataset(persons.PersonsParams.from_config(cfg), Path(data_root), progress)

    def annotation_frame(self, root: Path, cfg: TaskConfig) -> tuple[int, int]:
        path = Path(root) / persons.PARAMS_FILE
        try:
            height, width = json.loads(path.read_text())["resolution"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: cannot read the generated resolution ({type(exc).__name__}: {exc})") from exc
        return int(height), int(width)


DATASETS.add("synthetic_persons", SyntheticPersonsSpec())
DATASETS.add("deepfashion", DeepFashionSpec())
DATASETS.add("market1501", Market1501Spec())
