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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from bench.config import ConfigError, TaskConfig
from bench.data.base import DatasetSpec, Problem, Progress, reject_unknown_keys
from bench.registry import DATASETS

CATEGORIES = ("car", "chair")
AZIMUTH_BINS = tuple(range(0, 36, 2))  # pose[0]: azimuth in 10 deg units
ELEVATIONS = (0, 10, 20)  # pose[1]: elevation in degrees
GRID = tuple((az, el) for az in AZIMUTH_BINS for el in ELEVATIONS)  # M2NV id-file order: azimuth-major
VIEW_CODE_CHANNELS = len(AZIMUTH_BINS) + len(ELEVATIONS)
RESIZE_FILTER = "bilinear"  # PIL bilinear, as GFLA's transforms.Resize on PIL images


def hdf5_name(category: str) -> str:
    return f"data_{category}.hdf5"


def train_ids_name(category: str) -> str:
    return f"id_{category}_train.txt"


def test_ids_name(category: str) -> str:
    return f"id_{category}_test.txt"


def test_names_name(category: str) -> str:
    return f"name_{category}_test.txt"


def m2nv_models_name(category: str, split: str) -> str:
    """M2NV's per-split model list (``model_<cat>_<split>.txt``)."""
    return f"model_{category}_{split}.txt"


# ---------------------------------------------------------------------------------------------
# View ids and codes
# ---------------------------------------------------------------------------------------------
def view_id(model: str, azimuth: int, elevation: int) -> str:
    """The HDF5 group / split-file id of a view."""
    return f"{model}_{azimuth}_{elevation}"


def parse_view_id(text: str) -> tuple[str, int, int]:
    """Split ``<model>_<az>_<el>`` (the model id may itself contain ``_``) and check the grid."""
    parts = text.rsplit("_", 2)
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not parts[2].isdigit():
        raise ValueError(f"expected a view id <model>_<azimuth index>_<elevation>, got {text!r}")
    model, azimuth, elevation = parts[0], int(parts[1]), int(parts[2])
    check_on_grid(azimuth, elevation)
    return model, azimuth, elevation


def check_on_grid(azimuth: int, elevation: int) -> None:
    """Raise ValueError unless (azimuth index, elevation) is a view of the M2NV grid."""
    if azimuth not in AZIMUTH_BINS or elevation not in ELEVATIONS:
        raise ValueError(
            f"view (azimuth {azimuth}, elevation {elevation}) is not on the grid: azimuth index in "
            f"{{0, 2, ..., 34}} (10 deg units), elevation in {{0, 10, 20}}"
        )


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

    def image(self, model: str, azimuth: int, elevation: int) -> np.ndarray:
        """uint8 (H, W, 3) at the configured size."""
        if self._file is None or self._owner != os.getpid():
            self._file, self._owner = h5py.File(self.path, "r"), os.getpid()
        pixels = self._file[view_id(model, azimuth, elevation)]["image"][()]
        height, width = self.size
        if pixels.shape[:2] != (height, width):
            pixels = np.array(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR))
        return pixels


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
        return {
            "source_image": to_model_input(self.reader.image(model, source, elevation)),
            "source_structure": view_structure(source, elevation, size),
            "target_image": to_model_input(self.reader.image(model, target, elevation)),
            "target_structure": view_structure(target, elevation, size),
            "name": f"{view_id(model, source, elevation)}_2_{view_id(model, target, elevation)}",
        }


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
        from bench.data.shapes import ShapesParams  # the generator (trimesh, embree) only loads here

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

        return {**super().preprocessing(root, cfg), "generator": asdict(ShapesParams.from_config(cfg))}


DATASETS.add(ShapeNetViews.name, ShapeNetViews())
DATASETS.add(SyntheticShapes.name, SyntheticShapes())
