"""M2NV view-synthesis loader: view codes, GFLA sampling, a hand-written HDF5 fixture, check()."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from bench.config import ConfigError, DatasetConfig, TaskConfig
from bench.data.shapenet import (
    AZIMUTH_BINS,
    ELEVATIONS,
    ShapeNetViews,
    SyntheticShapes,
    parse_view_id,
    view_code,
    view_structure,
)
from bench.registry import DATASETS

TRAIN_MODELS = ["1a2b", "odd_name"]  # M2NV ids are hex hashes; an underscore must still parse
TEST_MODELS = ["ue63-9c33", "77ff", "3c3c"]
ALL_MODELS = TRAIN_MODELS + TEST_MODELS


def pixel(model: str, azimuth: int, elevation: int) -> list[int]:
    """The constant colour of a fixture view: it identifies the view in a loaded sample."""
    return [azimuth * 7, elevation * 10, ALL_MODELS.index(model) * 50]


def write_fixture(root: Path, size: int = 8, test_names: str = "name") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with h5py.File(root / "data_chair.hdf5", "w") as h5:
        for model in ALL_MODELS:
            for azimuth in AZIMUTH_BINS:
                for elevation in ELEVATIONS:
                    group = h5.create_group(f"{model}_{azimuth}_{elevation}")
                    image = np.zeros((size, size, 3), np.uint8) + np.array(pixel(model, azimuth, elevation), np.uint8)
                    group.create_dataset("image", data=image)
                    group.create_dataset("pose", data=np.array([azimuth, elevation], np.int32))

    def ids(models):
        return "".join(f"{m}_{a}_{e}\n" for m in models for a in AZIMUTH_BINS for e in ELEVATIONS)

    (root / "id_chair_train.txt").write_text(ids(TRAIN_MODELS))
    (root / "id_chair_test.txt").write_text(ids(TEST_MODELS))
    (root / f"{test_names}_chair_test.txt").write_text("\n".join(TEST_MODELS) + "\n")
    return root


def config(resolution=(8, 8), **dataset) -> TaskConfig:
    return TaskConfig(
        kind="view_synthesis",
        dataset=DatasetConfig(
            **{"name": "shapenet", "resolution": list(resolution), "structure": "view_onehot",
               "options": {"category": "chair"}, **dataset},
        ),
    )


def view_of(image: torch.Tensor) -> list[int]:
    """The fixture colour of a loaded [-1, 1] image (checks that it is constant)."""
    values = ((image + 1) * 127.5).round().to(torch.int64)
    assert (values == values[:, :1, :1]).all()
    return values[:, 0, 0].tolist()


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_fixture(tmp_path_factory.mktemp("m2nv"))


SPEC = ShapeNetViews()


def test_view_code_is_the_21_dim_one_hot_of_az_over_2_and_el_over_10():
    code = view_code(14, 20)
    assert code.shape == (21,) and code.sum() == 2
    assert code[7] == 1 and code[18 + 2] == 1
    assert view_code(0, 0).nonzero().flatten().tolist() == [0, 18]
    assert view_code(34, 10).nonzero().flatten().tolist() == [17, 19]
    structure = view_structure(34, 10, (3, 5))
    assert structure.shape == (21, 3, 5) and torch.equal(structure[:, 2, 4], view_code(34, 10))
    for azimuth, elevation in [(3, 0), (36, 0), (0, 5), (0, 30)]:
        with pytest.raises(ValueError, match="not on the grid"):
            view_code(azimuth, elevation)


def test_parse_view_id_splits_from_the_right():
    assert parse_view_id("odd_name_12_10") == ("odd_name", 12, 10)
    for bad in ("abc_12", "abc_x_10", "abc_13_10"):
        with pytest.raises(ValueError):
            parse_view_id(bad)


def test_registered_specs():
    assert isinstance(DATASETS.get("shapenet"), ShapeNetViews)
    assert isinstance(DATASETS.get("synthetic_shapes"), SyntheticShapes)
    assert DATASETS.get("shapenet").kind == DATASETS.get("synthetic_shapes").kind == "view_synthesis"
    assert DATASETS.get("synthetic_shapes").synthetic and not DATASETS.get("shapenet").synthetic


def test_train_pairs_cover_every_target_azimuth_at_the_source_elevation(root):
    train = SPEC.train_set(root, config(), seed=0)
    train_ids = (root / "id_chair_train.txt").read_text().split()
    assert len(train) == len(train_ids) * 18 == len(TRAIN_MODELS) * 54 * 18
    for view_index in (0, 40, 101):
        model, source_az, elevation = parse_view_id(train_ids[view_index])
        pairs = [train.pair(view_index * 18 + j) for j in range(18)]
        assert pairs == [(model, source_az, target, elevation) for target in AZIMUTH_BINS]
    for index in (0, 7 * 18 + 5, len(train) - 1):
        sample = train[index]
        model, source_az, target_az, elevation = train.pair(index)
        assert sample["name"] == f"{model}_{source_az}_{elevation}_2_{model}_{target_az}_{elevation}"
        assert view_of(sample["source_image"]) == pixel(model, source_az, elevation)
        assert view_of(sample["target_image"]) == pixel(model, target_az, elevation)
        assert torch.equal(sample["source_structure"][:, 0, 0], view_code(source_az, elevation))
        assert torch.equal(sample["target_structure"][:, 0, 0], view_code(target_az, elevation))
        assert sample["source_structure"].shape == (21, 8, 8)
    with pytest.raises(IndexError):
        train[len(train)]


def test_test_pairs_give_each_model_its_18_elevation_0_views_in_order(root):
    test = SPEC.test_set(root, config())
    assert len(test) == len(TEST_MODELS) * 18
    for model_index, model in enumerate(TEST_MODELS):
        source_az = AZIMUTH_BINS[model_index % 18]
        for j, target_az in enumerate(AZIMUTH_BINS):
            sample = test[model_index * 18 + j]
            assert sample["name"] == f"{model}_{source_az}_0_2_{model}_{target_az}_0"
            assert view_of(sample["source_image"]) == pixel(model, source_az, 0)
            assert view_of(sample["target_image"]) == pixel(model, target_az, 0)
            assert torch.equal(sample["target_structure"][:, 0, 0], view_code(target_az, 0))
    assert [test.pair(i)[1] for i in (0, 18, 36)] == [0, 2, 4]  # source azimuth taken in turn


def test_caps_count_models_and_resize_and_reference_images(root):
    cfg = config(resolution=(4, 6), max_train=1, max_test=2)
    train, test = SPEC.train_set(root, cfg, seed=0), SPEC.test_set(root, cfg)
    assert len(train) == 54 * 18 and {train.pair(i)[0] for i in range(len(train))} == {"1a2b"}
    assert len(test) == 2 * 18 and [test.pair(i)[0] for i in (0, 17, 18, 35)] == ["ue63-9c33"] * 2 + ["77ff"] * 2
    sample = test[19]
    assert sample["source_image"].shape == (3, 4, 6) and sample["target_structure"].shape == (21, 4, 6)
    assert view_of(sample["target_image"]) == pixel("77ff", 2, 0)  # constant images survive resizing
    reference = SPEC.reference_images(root, cfg, "train")
    assert len(reference) == 54
    image = reference[3]
    assert image.dtype == torch.uint8 and image.shape == (3, 4, 6)
    assert image[:, 0, 0].tolist() == pixel(*parse_view_id((root / "id_chair_train.txt").read_text().split()[3]))
    test_reference = SPEC.reference_images(root, cfg, "test")
    assert len(test_reference) == 2 * 18  # the distinct ground-truth views of the test pairs
    assert test_reference[20][:, 0, 0].tolist() == pixel("77ff", 4, 0)
    with pytest.raises(ValueError, match="split"):
        SPEC.reference_images(root, cfg, "val")


def test_datasets_pickle_and_work_in_dataloader_workers(root):
    train = SPEC.train_set(root, config(), seed=0)
    first = train[0]
    clone = pickle.loads(pickle.dumps(train))  # an open h5py handle must not travel
    assert clone[0]["name"] == first["name"]
    test = SPEC.test_set(root, config(max_test=1))
    test[0]  # the parent opens the file before forking, as the runner does
    loader = DataLoader(test, batch_size=4, num_workers=2, multiprocessing_context="fork")
    batches = list(loader)
    assert [len(b["name"]) for b in batches] == [4, 4, 4, 4, 2]
    assert batches[1]["name"][0] == "ue63-9c33_0_0_2_ue63-9c33_8_0"


def test_m2nv_model_lists_stand_in_for_the_gfla_lists(tmp_path):
    root = write_fixture(tmp_path / "m2nv", test_names="model")
    reference = [SPEC.train_set(root, config(), seed=5).pair(i) for i in range(54 * 2 * 18)]
    (root / "id_chair_train.txt").unlink()
    (root / "id_chair_test.txt").unlink()
    (root / "model_chair_train.txt").write_text("\n".join(TRAIN_MODELS) + "\n")
    assert SPEC.check(root, config()) == []
    assert [SPEC.train_set(root, config(), seed=5).pair(i) for i in range(54 * 2 * 18)] == reference
    assert len(SPEC.test_set(root, config())) == 3 * 18
    with h5py.File(root / "data_chair.hdf5", "a") as h5:
        del h5["odd_name_34_20"]
    assert [str(p) for p in SPEC.check(root, config())] == [
        f"{root / 'model_chair_train.txt'}:2: view 'odd_name_34_20' has no group in data_chair.hdf5"
    ]


def test_check_passes_on_a_sound_fixture(root):
    assert SPEC.check(root, config()) == []


def test_check_reports_every_problem_with_file_line_and_key(tmp_path):
    root = write_fixture(tmp_path / "bad")
    with h5py.File(root / "data_chair.hdf5", "a") as h5:
        del h5["1a2b_4_10/pose"]
        del h5["1a2b_6_0/image"]
        h5["1a2b_6_0"].create_dataset("image", data=np.zeros((8, 8), np.uint8))
        del h5["1a2b_8_20/pose"]
        h5["1a2b_8_20"].create_dataset("pose", data=np.array([8, 15], np.int32))
        del h5["77ff_10_0"]
    lines = (root / "id_chair_train.txt").read_text().splitlines()
    lines[4] = "1a2b_5_0"  # line 5: off-grid azimuth
    lines[6] = "gone_0_0"  # line 7: no such group
    (root / "id_chair_train.txt").write_text("\n".join(lines) + "\n")
    problems = [str(p) for p in SPEC.check(root, config())]
    h5_path, ids_path = root / "data_chair.hdf5", root / "id_chair_train.txt"
    expected = [
        f"{h5_path}:1a2b_4_10/pose: missing dataset 'pose'",
        f"{h5_path}:1a2b_6_0/image: expected uint8 (H, W, 3), got uint8 (8, 8)",
        f"{h5_path}:1a2b_8_20/pose: view (azimuth 8, elevation 15) is not on the grid",
        f"{ids_path}:5: view (azimuth 5, elevation 0) is not on the grid",
        f"{ids_path}:7: view 'gone_0_0' has no group in data_chair.hdf5",
        f"{root / 'id_chair_test.txt'}:{54 + 3 * 5 + 1}: view '77ff_10_0' has no group",
    ]
    for text in expected:
        assert any(p.startswith(text) for p in problems), (text, problems)
    assert len(problems) == len(expected)
    with pytest.raises(Exception, match="6 problem"):
        SPEC.validate(root, config())


def test_check_reports_missing_files_and_prepare_needs_a_root(tmp_path):
    problems = SPEC.check(tmp_path, config())
    assert sorted(Path(p.where).name for p in problems) == sorted(
        ["data_chair.hdf5", "id_chair_train.txt", "name_chair_test.txt"]
    )
    assert all("missing file" in p.message for p in problems)
    with pytest.raises(ConfigError, match="dataset.root"):
        SPEC.prepare(config(), tmp_path)
    assert SPEC.prepare(config(root=str(tmp_path)), tmp_path) == tmp_path
    bad = config()
    bad.dataset.options = {"category": "table"}
    with pytest.raises(ConfigError, match="dataset.options.category"):
        SPEC.check(tmp_path, bad)
    with pytest.raises(ConfigError, match="dataset.structure"):
        SPEC.test_set(tmp_path, config(structure="heatmaps"))


def test_synthetic_shapes_prepare_generates_a_sound_dataset(tmp_path):
    spec = DATASETS.get("synthetic_shapes")
    cfg = config(resolution=(16, 16))
    cfg.dataset.name = "synthetic_shapes"
    cfg.dataset.options = {"category": "car"}
    cfg.dataset.synthetic = {"category": "car", "resolution": [16, 16], "models_train": 1, "models_test": 1}
    root = spec.prepare(cfg, tmp_path)
    assert (root / "data_car.hdf5").is_file() and spec.check(root, cfg) == []
    sample = spec.test_set(root, cfg)[5]
    assert sample["target_image"].shape == (3, 16, 16) and sample["target_image"].min() < 0.5
    record = spec.preprocessing(root, cfg)
    assert record["resize_filter"] == "bilinear" and record["generator"]["models_train"] == 1
    cfg.dataset.options = {"category": "chair"}
    with pytest.raises(ConfigError, match="disagrees"):
        spec.check(root, cfg)
