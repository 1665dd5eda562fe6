"""ShapeNet novel view synthesis in the Multiview2Novelview (M2NV) HDF5 layout, real or synthetic.

Layout of a dataset directory for category ``<cat>`` (``car`` or ``chair``)::

    data_<cat>.hdf5          one group per view, keyed <model>_<az>_<el>, holding
                               image  uint8 (H, W, 3)
                               pose   2 ints: azimuth index in 10 deg units, elevation in degrees
    id_<cat>_train.txt       training view ids, one <model>_<az>_<el> per line
                             (or M2NV's model_<cat>_train.txt: model ids, each meaning its 54 views)
    name_<cat>_test.txt      test model ids, as GFLA reads them
                             (or M2NV's model_<cat>_test.txt, the same list)
    id_<cat>_test.txt        optional: test view ids; checked when present, the test pairs come
                             from the test model ids

Generated datasets (:mod:`bench.data.shapes`) add to each view group ``depth``, float32 (H, W): the
length of each pixel-centre ray to its hit, 0 where it misses.  With the generator's camera it gives
every pair's ground-truth correspondence, delivered as ``flow_gt`` / ``visibility_gt``
(:func:`pair_ground_truth`, format in :mod:`bench.data.base`); files without it give samples without.
The layout's names and grid are owned by :mod:`bench.data.m2nv_layout`.

Views lie on the grid az in {0, 2, ..., 34} (18 azimuths 20 deg apart) x el in {0, 10, 20}.  The view
code is GFLA's 21-dim one-hot (18 azimuth bins az/2, then 3 elevation bins el/10), tiled to
(21, H, W) as the structure map of both the source and the target.  Sampling follows GFLA: training
pairs a source view with a random azimuth at the same elevation (here: every such pair, permuted by
the trainer's seeded sampler); the test set gives every test model its 18 elevation-0 views as
targets, from one source azimuth taken in turn (model i uses azimuth bin i mod 18).
``dataset.max_train`` and ``dataset.max_test`` count *models*: the first N training models (in
split-file order) and the first N test models (18 pairs each).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from bench.config import ConfigError, TaskConfig
from bench.data.base import DatasetSpec, Problem, Progress, reject_unknown_keys
from bench.data.m2nv_layout import (
    AZIMUTH_BINS,
    CATEGORIES,
    DEPTH_KEY,
    ELEVATIONS,
    GRID,
    check_on_grid,
    hdf5_name,
    m2nv_models_name,
    parse_view_id,
    test_ids_name,
    test_names_name,
    train_ids_name,
    view_id,
)
from bench.registry import DATASETS

VIEW_CODE_CHANNELS = len(AZIMUTH_BINS) + len(ELEVATIONS)
RESIZE_FILTER = "bilinear"  # PIL bilinear, as GFLA's transforms.Resize on PIL images


# ---------------------------------------------------------------------------------------------
# View codes
# ---------------------------------------------------------------------------------------------
def view_code(azimuth: int, elevation: int) -> torch.Tensor:
    """GFLA's 21-dim one-hot view code: azimuth bin az/2 in 0..17, then elevation bin 18 + el/10."""
    check_on_grid(azimuth, elevation)
    code = torch.zeros(VIEW_CODE_CHANNELS)
    code[azimuth // 2] = 1.0
    code[len(AZIMUTH_BINS) + elevation // 10] = 1.0
    return code


def view_structure(azimuth: int, elevation: int, size: tuple[int, int]) -> torch.Tensor:
    """The view code tiled to a (21, H, W) structure map."""
    return view_code(azimuth, elevation)[:, None, None].expand(-1, *size).contiguous()


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SplitFiles:
    """The files of one category in a dataset directory.

    GFLA's lists are preferred; M2NV's model lists stand in when they are absent: ``model_<cat>_test.txt``
    holds the same model ids as ``name_<cat>_test.txt``, and ``model_<cat>_train.txt`` expands to every
    grid view of each model, which is what M2NV's ``id_*`` files list (model by model, azimuth-major).
    """

    hdf5: Path
    train_list: Path  # id_<cat>_train.txt (view ids), or model_<cat>_train.txt (model ids)
    test_models: Path  # name_<cat>_test.txt, or model_<cat>_test.txt
    test_ids: Path  # id_<cat>_test.txt: checked when present, not needed by the loader

    @classmethod
    def locate(cls, root: Path, category: str) -> SplitFiles:
        root = Path(root)

        def preferred(first: str, fallback: str) -> Path:
            return root / fallback if not (root / first).exists() and (root / fallback).exists() else root / first

        return cls(
            hdf5=root / hdf5_name(category),
            train_list=preferred(train_ids_name(category), m2nv_models_name(category, "train")),
            test_models=preferred(test_names_name(category), m2nv_models_name(category, "test")),
            test_ids=root / test_ids_name(category),
        )

    @property
    def train_list_has_models(self) -> bool:
        return self.train_list.name.startswith("model_")


def read_lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, stripped text) of every non-blank line."""
    with open(path) as handle:
        return [(number, line.strip()) for number, line in enumerate(handle, 1) if line.strip()]


def grid_views(model: str) -> list[tuple[str, int, int]]:
    """Every view of ``model``, in M2NV's id-file order (azimuth-major)."""
    return [(model, azimuth, elevation) for azimuth, elevation in GRID]


def train_views(files: SplitFiles, max_train: int | None) -> list[tuple[str, int, int]]:
    """The training views in file order, of the first ``max_train`` models (all when None)."""
    if files.train_list_has_models:
        views = [view for _, model in read_lines(files.train_list) for view in grid_views(model)]
    else:
        views = [parse_view_id(text) for _, text in read_lines(files.train_list)]
    if max_train is None:
        return views
    kept = set(list(dict.fromkeys(model for model, _, _ in views))[:max_train])
    return [view for view in views if view[0] in kept]


def test_pairs(files: SplitFiles, max_test: int | None) -> list[tuple[str, int, int]]:
    """(model, source azimuth, target azimuth) at elevation 0 for the first ``max_test`` test models:
    model i keeps source azimuth bin i mod 18 and has all 18 azimuths as targets, as GFLA's test loop."""
    models = [text for _, text in read_lines(files.test_models)][:max_test]
    return [
        (model, AZIMUTH_BINS[index % len(AZIMUTH_BINS)], target)
        for index, model in enumerate(models)
        for target in AZIMUTH_BINS
    ]


class ViewReader:
    """Reads views from the HDF5 file, resized to ``size`` with the PIL filter named by RESIZE_FILTER.

    The file is opened lazily by each process that reads: h5py handles neither pickle (spawned
    DataLoader workers) nor survive a fork safely (forked workers would share the parent's handle),
    so a handle opened by another process id is replaced."""

    def __init__(self, path: Path, size: tuple[int, int]) -> None:
        self.path = Path(path)
        self.size = (int(size[0]), int(size[1]))
        self._file: h5py.File | None = None
        self._owner = 0  # pid that opened self._file

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_file": None, "_owner": 0}

    def _group(self, model: str, azimuth: int, elevation: int) -> h5py.Group:
        if self._file is None or self._owner != os.getpid():
            self._file, self._owner = h5py.File(self.path, "r"), os.getpid()
        return self._file[view_id(model, azimuth, elevation)]

    def has_depth(self, model: str, azimuth: int, elevation: int) -> bool:
        """Whether the view carries a depth map (generated datasets; real M2NV files have none)."""
        return DEPTH_KEY in self._group(model, azimuth, elevation)

    def depth(self, model: str, azimuth: int, elevation: int) -> np.ndarray:
        """float32 (h, w) depth map at the written resolution (see :mod:`bench.data.shapes`)."""
        return self._group(model, azimuth, elevation)[DEPTH_KEY][()]

    def image(self, model: str, azimuth: int, elevation: int) -> np.ndarray:
        """uint8 (H, W, 3) at the configured size."""
        pixels = self._group(model, azimuth, elevation)["image"][()]
        height, width = self.size
        if pixels.shape[:2] != (height, width):
            pixels = np.array(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR))
        return pixels


def pair_ground_truth(reader: ViewReader, model: str, source: int, target: int,
                      elevation: int) -> dict[str, torch.Tensor]:
    """``flow_gt`` (2, H, W) and ``visibility_gt`` (1, H, W) of a pair from the two views' depth maps,
    at the loaded size: when it differs from the written one, the flow is resampled bilinearly with its
    values scaled by the size ratio, and a pixel stays visible only where every written pixel it
    samples is (so no pixel is scored on a flow blended across an occlusion or silhouette edge)."""
    from bench.data.shapes import grid_camera, view_correspondence  # the camera model of the depth maps

    flow, visibility = view_correspondence(
        reader.depth(model, target, elevation), reader.depth(model, source, elevation),
        grid_camera(target, elevation), grid_camera(source, elevation),
    )
    flow, visibility = torch.from_numpy(flow), torch.from_numpy(visibility)
    height, width = reader.size
    written = tuple(flow.shape[1:])
    if written != (height, width):
        scale = torch.tensor([width / written[1], height / written[0]]).view(2, 1, 1)
        flow = torch.nn.functional.interpolate(flow[None], size=(height, width), mode="bilinear",
                                               align_corners=False)[0] * scale
        blended = torch.nn.functional.interpolate(visibility[None], size=(height, width), mode="bilinear",
                                                  align_corners=False)[0]
        visibility = (blended > 1 - 1e-6).float()
        flow = flow * (blended > 0)
    return {"flow_gt": flow, "visibility_gt": visibility}


def to_model_input(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float (3, H, W) in [-1, 1] (ToTensor then Normalize(0.5, 0.5))."""
    return torch.from_numpy(pixels).permute(2, 0, 1).float().div(127.5).sub(1.0)


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------
class _ViewPairs(Dataset):
    """(source view, target view) samples; subclasses say which pair each index is."""

    def __init__(self, reader: ViewReader) -> None:
        self.reader = reader

    def pair(self, index: int) -> tuple[str, int, int, int]:
        """(model, source azimuth, target azimuth, elevation) of sample ``index``."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} pairs")
        model, source, target, elevation = self.pair(index)
        size = self.reader.size
        sample = {
            "source_image": to_model_input(self.reader.image(model, source, elevation)),
            "source_structure": view_structure(source, elevation, size),
            "target_image": to_model_input(self.reader.image(model, target, elevation)),
            "target_structure": view_structure(target, elevation, size),
            "name": f"{view_id(model, source, elevation)}_2_{view_id(model, target, elevation)}",
        }
        if self.reader.has_depth(model, target, elevation) and self.reader.has_depth(model, source, elevation):
            sample.update(pair_ground_truth(self.reader, model, source, target, elevation))
        return sample


class TrainPairs(_ViewPairs):
    """Every training view as source, paired with each of the 18 azimuths at its elevation.

    GFLA draws one random target azimuth per source view and epoch; here the trainer's sampler,
    seeded by (seed, epoch), permutes all pairs instead, which gives the same distribution (uniform
    source view, uniform target azimuth at the same elevation) without random state in the dataset,
    so it is reproducible whatever the worker layout.  Index i is source view i // 18, target bin i % 18.
    """

    def __init__(self, reader: ViewReader, sources: list[tuple[str, int, int]]) -> None:
        super().__init__(reader)
        self.sources = sources

    def __len__(self) -> int:
        return len(self.sources) * len(AZIMUTH_BINS)

    def pair(self, index: int) -> tuple[str, int, int, int]:
        model, source, elevation = self.sources[index // len(AZIMUTH_BINS)]
        return model, source, AZIMUTH_BINS[index % len(AZIMUTH_BINS)], elevation


class TestPairs(_ViewPairs):
    """The fixed test pairs at elevation 0 (see :func:`test_pairs`)."""

    def __init__(self, reader: ViewReader, pairs: list[tuple[str, int, int]]) -> None:
        super().__init__(reader)
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def pair(self, index: int) -> tuple[str, int, int, int]:
        model, source, target = self.pairs[index]
        return model, source, target, 0


class ReferenceViews(Dataset):
    """Views as uint8 (3, H, W) tensors, in a fixed order (the FID reference set)."""

    def __init__(self, reader: ViewReader, views: list[tuple[str, int, int]]) -> None:
        self.reader = reader
        self.views = views

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.reader.image(*self.views[index])).permute(2, 0, 1).contiguous()


# ---------------------------------------------------------------------------------------------
# Checking
# ---------------------------------------------------------------------------------------------
def check_directory(root: Path, category: str) -> list[Problem]:
    """Every problem of a category's files at once: missing files, malformed or dangling split
    lines (file:line), groups without ``image``/``pose``, wrong shapes or dtypes, off-grid poses."""
    files = SplitFiles.locate(root, category)
    problems: list[Problem] = []
    required = {
        files.hdf5: "the M2NV HDF5 file",
        files.train_list: f"training view ids ({m2nv_models_name(category, 'train')} is accepted instead)",
        files.test_models: f"test model ids ({m2nv_models_name(category, 'test')} is accepted instead)",
    }
    for path, what in required.items():
        if not path.is_file():
            problems.append(Problem(str(path), f"missing file; expected {what}"))
    if not files.hdf5.is_file():
        return problems
    try:
        h5 = h5py.File(files.hdf5, "r")
    except OSError as exc:
        return [*problems, Problem(str(files.hdf5), f"cannot be opened as HDF5: {exc}")]
    needed: dict[str, str] = {}  # group -> the file:line that first asks for it
    view_lists = [files.test_ids] + ([] if files.train_list_has_models else [files.train_list])
    for path in view_lists:
        for number, text in read_lines(path) if path.is_file() else []:
            try:
                parse_view_id(text)
            except ValueError as exc:
                problems.append(Problem(f"{path}:{number}", str(exc)))
                continue
            needed.setdefault(text, f"{path}:{number}")
    model_lists = [(files.test_models, [(a, 0) for a in AZIMUTH_BINS])]
    if files.train_list_has_models:
        model_lists.append((files.train_list, list(GRID)))
    for path, views in model_lists:
        for number, model in read_lines(path) if path.is_file() else []:
            for azimuth, elevation in views:
                needed.setdefault(view_id(model, azimuth, elevation), f"{path}:{number}")
    with h5:
        for group, where in needed.items():
            if group not in h5:
                problems.append(Problem(where, f"view {group!r} has no group in {files.hdf5.name}"))
            else:
                problems.extend(_check_group(files.hdf5, h5[group], group))
    return problems


def _check_group(path: Path, group: Any, name: str) -> list[Problem]:
    problems = []
    if not isinstance(group, h5py.Group):
        return [Problem(f"{path}:{name}", "expected a group holding 'image' and 'pose'")]
    image, pose = group.get("image"), group.get("pose")
    if image is None:
        problems.append(Problem(f"{path}:{name}/image", "missing dataset 'image' (uint8 H x W x 3)"))
    elif image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        problems.append(
            Problem(f"{path}:{name}/image", f"expected uint8 (H, W, 3), got {image.dtype} {image.shape}")
        )
    depth = group.get(DEPTH_KEY)
    if depth is not None and (depth.dtype != np.float32 or image is None or depth.shape != image.shape[:2]):
        problems.append(Problem(f"{path}:{name}/{DEPTH_KEY}", f"expected float32 (H, W) of the image's size, "
                                f"got {depth.dtype} {depth.shape}"))
    if pose is None:
        problems.append(Problem(f"{path}:{name}/pose", "missing dataset 'pose' (2 ints: azimuth, elevation)"))
    elif pose.shape != (2,) or not np.issubdtype(pose.dtype, np.integer):
        problems.append(Problem(f"{path}:{name}/pose", f"expected 2 integers, got {pose.dtype} {pose.shape}"))
    else:
        azimuth, elevation = (int(v) for v in pose[()])
        try:
            check_on_grid(azimuth, elevation)
            _, key_azimuth, key_elevation = parse_view_id(name)
            if (azimuth, elevation) != (key_azimuth, key_elevation):
                problems.append(
                    Problem(f"{path}:{name}/pose", f"pose {[azimuth, elevation]} disagrees with the group name")
                )
        except ValueError as exc:
            problems.append(Problem(f"{path}:{name}/pose", str(exc)))
    return problems


# ---------------------------------------------------------------------------------------------
# Dataset specs
# ---------------------------------------------------------------------------------------------
class ShapeNetViews(DatasetSpec):
    """Real ShapeNet views from the M2NV files; ``dataset.options.category``: car or chair."""

    name = "shapenet"
    kind = "view_synthesis"
    synthetic = False

    def category(self, cfg: TaskConfig) -> str:
        options = dict(cfg.dataset.options)
        reject_unknown_keys(options, ["category"], "dataset.options", self.name)
        category = options.get("category", "chair")
        if category not in CATEGORIES:
            raise ConfigError(f"dataset.options.category: expected one of {', '.join(CATEGORIES)}, got {category!r}")
        return category

    def prepare(self, cfg: TaskConfig, data_root: Path, progress: Progress | None = None) -> Path:
        if not cfg.dataset.root:
            raise ConfigError(
                "dataset.root: the shapenet dataset needs the directory holding the Multiview2Novelview "
                f"files ({hdf5_name(self.category(cfg))} and the split lists); see datasets/README.md"
            )
        return Path(cfg.dataset.root)

    def check(self, root: Path, cfg: TaskConfig) -> list[Problem]:
        return check_directory(root, self.category(cfg))

    def preprocessing(self, root: Path, cfg: TaskConfig) -> dict[str, Any]:
        """How views become samples (for the results record, as the pose datasets report theirs)."""
        return {
            "dataset": self.name,
            "category": self.category(cfg),
            "resolution": list(cfg.dataset.resolution),
            "resize_filter": RESIZE_FILTER,
            "structure": f"view_onehot ({VIEW_CODE_CHANNELS} channels: az/2, then el/10)",
        }

    def _reader(self, root: Path, cfg: TaskConfig) -> ViewReader:
        if cfg.dataset.structure != "view_onehot":
            raise ConfigError(f"dataset.structure: {self.name} provides 'view_onehot', got {cfg.dataset.structure!r}")
        return ViewReader(SplitFiles.locate(root, self.category(cfg)).hdf5, tuple(cfg.dataset.resolution))

    def train_set(self, root: Path, cfg: TaskConfig, seed: int) -> TrainPairs:
        """All training pairs; ``seed`` is unused, the trainer's seeded sampler draws from them."""
        files = SplitFiles.locate(root, self.category(cfg))
        return TrainPairs(self._reader(root, cfg), train_views(files, cfg.dataset.max_train))

    def test_set(self, root: Path, cfg: TaskConfig) -> TestPairs:
        files = SplitFiles.locate(root, self.category(cfg))
        return TestPairs(self._reader(root, cfg), test_pairs(files, cfg.dataset.max_test))

    def reference_images(self, root: Path, cfg: TaskConfig, split: str) -> ReferenceViews:
        """train: every (capped) training view; test: the distinct ground-truth views of the test
        pairs (elevation 0), i.e. exactly the images the generated ones are compared with."""
        files = SplitFiles.locate(root, self.category(cfg))
        if split == "train":
            views = train_views(files, cfg.dataset.max_train)
        elif split == "test":
            views = list(dict.fromkeys((m, t, 0) for m, _, t in test_pairs(files, cfg.dataset.max_test)))
        else:
            raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
        return ReferenceViews(self._reader(root, cfg), views)


class SyntheticShapes(ShapeNetViews):
    """Procedural textured chairs or cars (:mod:`bench.data.shapes`) in the same layout; the
    category is ``dataset.synthetic.category``."""

    name = "synthetic_shapes"
    synthetic = True

    def category(self, cfg: TaskConfig) -> str:
        from bench.data.shapes import ShapesParams  # the generator (trimesh) only loads here

        category = ShapesParams.from_config(cfg).category
        chosen = cfg.dataset.options.get("category", category)
        if chosen != category:
            raise ConfigError(
                f"dataset.options.category ({chosen!r}) disagrees with dataset.synthetic.category ({category!r})"
            )
        return category

    def prepare(self, cfg: TaskConfig, data_root: Path, progress: Progress | None = None) -> Path:
        from bench.data.shapes import ShapesParams, ensure_dataset

        if cfg.dataset.root:
            return Path(cfg.dataset.root)
        return ensure_dataset(ShapesParams.from_config(cfg), Path(data_root), progress)

    def preprocessing(self, root: Path, cfg: TaskConfig) -> dict[str, Any]:
        from bench.data.shapes import ShapesParams

        return {**super().preprocessing(root, cfg), "generator": ShapesParams.from_config(cfg).stored()}


DATASETS.add(ShapeNetViews.name, ShapeNetViews())
DATASETS.add(SyntheticShapes.name, SyntheticShapes())
