"""Heatmaps and the pose-transfer loaders (DeepFashion, Market-1501 layouts) with their check()."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.config import ConfigError, TaskConfig
from bench.data import pose
from bench.data.base import DatasetError
from bench.data.heatmaps import MISSING, keypoints_to_heatmaps
from bench.registry import DATASETS


# ---------------------------------------------------------------------------------------------
# Heatmaps
# ---------------------------------------------------------------------------------------------
def test_heatmaps_match_the_per_pixel_formula_with_truncated_centres():
    rng = np.random.default_rng(0)
    keypoints = np.column_stack([rng.uniform(0, 20, 18), rng.uniform(0, 12, 18)])
    keypoints[3] = MISSING
    keypoints[4] = (-0.7, 5.9)  # truncation toward zero: (0, 5)
    maps = keypoints_to_heatmaps(keypoints, 20, 12, sigma=2.5)
    assert maps.shape == (18, 20, 12) and maps.dtype == torch.float32
    yy, xx = np.mgrid[0:20, 0:12]
    for k, (y, x) in enumerate(keypoints):
        if k == 3:
            assert maps[k].abs().max() == 0
            continue
        cy, cx = int(y), int(x)
        expected = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.5**2))
        np.testing.assert_allclose(maps[k].numpy(), expected, rtol=1e-6, atol=1e-7)
        assert maps[k, cy, cx] == 1.0 and maps[k].max() == 1.0


def test_heatmaps_reject_bad_shapes_and_sigma():
    with pytest.raises(ValueError, match=r"\(K, 2\)"):
        keypoints_to_heatmaps(np.zeros((18, 3)), 8, 8, 1.0)
    with pytest.raises(ValueError, match="sigma"):
        keypoints_to_heatmaps(np.zeros((18, 2)), 8, 8, 0.0)


# ---------------------------------------------------------------------------------------------
# Fixtures: tiny hand-written datasets in GFLA's layout
# ---------------------------------------------------------------------------------------------
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40)]


def _keypoints(seed: int, frame: tuple[int, int]) -> tuple[list[int], list[int]]:
    rng = np.random.default_rng(seed)
    ys = rng.integers(0, frame[0], 18).tolist()
    xs = rng.integers(0, frame[1], 18).tolist()
    ys[15] = xs[15] = MISSING
    return ys, xs


def _write_layout(root: Path, prefix: str, frame: tuple[int, int], image_size: tuple[int, int]) -> dict:
    """Four solid-colour images per split (train: a..d, test: e..h), annotation and pairs CSVs."""
    truth = {}
    for split, names in (("train", "abcd"), ("test", "efgh")):
        (root / split).mkdir(parents=True)
        rows = ["name:keypoints_y:keypoints_x"]
        for i, letter in enumerate(names):
            name = f"{letter}.jpg" if prefix != "market" else f"{letter}.png"
            Image.new("RGB", (image_size[1], image_size[0]), COLOURS[i]).save(root / split / name, quality=98)
            ys, xs = _keypoints(ord(letter), frame)
            truth[name] = (ys, xs, COLOURS[i])
            rows.append(f"{name}:{json.dumps(ys)}:{json.dumps(xs)}")
        (root / f"{prefix}-annotation-{split}.csv").write_text("\n".join(rows) + "\n")
        ext = ".jpg" if prefix != "market" else ".png"
        pairs = [
            f"{names[0]}{ext},{names[1]}{ext}",
            f"{names[2]}{ext},{names[3]}{ext}",
            f"{names[1]}{ext},{names[0]}{ext}",
        ]
        (root / f"{prefix}-pairs-{split}.csv").write_text("from,to\n" + "\n".join(pairs) + "\n")
    return truth


def _cfg(name: str, resolution: list[int], sigma: float = 2.0, **options) -> TaskConfig:
    cfg = TaskConfig()
    cfg.dataset.name = name
    cfg.dataset.resolution = resolution
    cfg.dataset.heatmap_sigma = sigma
    cfg.dataset.options = options
    return cfg


@pytest.fixture
def fashion(tmp_path) -> tuple[Path, dict]:
    root = tmp_path / "deepfashion"
    return root, _write_layout(root, "fasion", (256, 176), (128, 88))  # a half-size 256:176 image


@pytest.fixture
def market(tmp_path) -> tuple[Path, dict]:
    root = tmp_path / "market"
    return root, _write_layout(root, "market", (128, 64), (128, 64))


# ---------------------------------------------------------------------------------------------
# Loader
# ---------------------------------------------------------------------------------------------
def test_deepfashion_256x256_rescales_keypoints_from_256x176(fashion):
    root, truth = fashion
    spec = DATASETS.get("deepfashion")
    cfg = _cfg("deepfashion", [256, 256], sigma=6.0, protocol="256x256")
    assert spec.check(root, cfg) == []
    test = spec.test_set(root, cfg)
    assert len(test) == 3
    sample = test[0]
    assert sample["name"] == "e_2_f"
    assert sample["source_image"].shape == (3, 256, 256) and sample["source_structure"].shape == (18, 256, 256)
    ys, xs, colour = truth["e.jpg"]
    expected = np.column_stack([ys, np.array(xs) * 256 / 176]).astype(np.float32)
    expected[15] = MISSING
    np.testing.assert_allclose(sample["source_keypoints"].numpy(), expected, rtol=1e-6)
    maps = sample["source_structure"]
    for k in range(18):
        if k == 15:
            assert maps[k].max() == 0
            continue
        peak = divmod(int(maps[k].argmax()), 256)
        assert peak == (int(expected[k, 0]), int(expected[k, 1])) and maps[k].max() == 1.0
    # Image content: the solid colour survives the bicubic resize, in [-1, 1].
    mean = (sample["source_image"].mean(dim=(1, 2)) + 1) * 127.5
    np.testing.assert_allclose(mean.numpy(), colour, atol=2.0)
    assert spec.preprocessing(root, cfg)["annotation_frame"] == [256, 176]
    assert spec.preprocessing(root, cfg)["protocol"] == "256x256"


def test_fashion_prefix_without_typo_is_accepted_too(fashion):
    root, _ = fashion
    for path in root.glob("fasion-*.csv"):
        path.rename(root / path.name.replace("fasion-", "fashion-"))
    spec = DATASETS.get("deepfashion")
    cfg = _cfg("deepfashion", [64, 44], protocol="256x176")
    assert len(spec.train_set(root, cfg, seed=0)) == 3


def test_market_keeps_keypoints_at_128x64_and_honours_max_test(market):
    root, truth = market
    spec = DATASETS.get("market1501")
    cfg = _cfg("market1501", [128, 64])
    assert spec.check(root, cfg) == []
    sample = spec.train_set(root, cfg, seed=0)[1]
    ys, xs, _ = truth["c.png"]
    assert sample["name"] == "c_2_d"
    expected = np.column_stack([ys, xs]).astype(np.float32)
    expected[15] = MISSING
    np.testing.assert_array_equal(sample["source_keypoints"].numpy(), expected)
    cfg.dataset.max_test = 2
    names = [s["name"] for s in spec.test_set(root, cfg)]
    assert len(names) == 2 and names == [s["name"] for s in spec.test_set(root, cfg)]
    refs = spec.reference_images(root, cfg, "test")
    assert len(refs) == 4 and refs[0].dtype == torch.uint8 and refs[0].shape == (3, 128, 64)
    assert tuple(refs[2][:, 0, 0].tolist()) == COLOURS[2]  # sorted order: e, f, g, h


def test_real_datasets_need_dataset_root():
    with pytest.raises(ConfigError, match="dataset.root"):
        DATASETS.get("market1501").prepare(_cfg("market1501", [128, 64]), Path("/nonexistent"))


def test_affine_moves_keypoints_with_the_image_content():
    height, width = 64, 48
    keypoints = np.full((18, 2), float(MISSING))
    keypoints[0] = (20, 14)
    pixels = np.full((height, width, 3), 128, np.uint8)  # the fill colour, so only the blob has weight
    pixels[19:22, 13:16] = 255  # a bright 3x3 blob centred on the keypoint
    image = Image.fromarray(pixels)
    for affine in (pose.Affine(25.0, (3.0, -2.0), 1.1), pose.Affine(-4.0, (-5.0, 4.5), 0.95)):
        moved = np.asarray(affine.apply_image(image)).astype(float)[..., 0]
        spot = moved - 128
        centroid = np.array([(spot.sum(1) * np.arange(height)).sum(), (spot.sum(0) * np.arange(width)).sum()])
        centroid /= spot.sum()
        kp = affine.apply_keypoints(keypoints, height, width)
        np.testing.assert_allclose(kp[0], centroid, atol=0.35)
        assert (kp[1:] == MISSING).all()
    corner = np.asarray(pose.Affine(0.0, (4.0, 4.0), 1.0).apply_image(Image.new("RGB", (width, height))))[0, 0]
    assert tuple(corner) == pose.GREY_FILL  # uncovered pixels are grey


def test_market_augmentation_draws_gflas_ranges_and_damps_the_target():
    torch.manual_seed(0)
    draws = [pose.market_augmentation(2.0) for _ in range(300)]
    for source, target in draws:
        assert -5 <= source.angle <= 5 and 0.95 <= source.scale <= 1.05
        assert all(-10 <= s <= 10 for s in source.shift)  # U(-5, 5) frame pixels at twice the frame size
        assert -1 <= target.angle <= 1 and target.scale == 1.0 and all(-5 <= s <= 5 for s in target.shift)
    angles = np.array([[s.angle, t.angle] for s, t in draws])
    assert angles[:, 0].min() < -4.5 and angles[:, 0].max() > 4.5 and angles[:, 1].max() > 0.9
    assert abs(np.corrcoef(angles.T)[0, 1]) < 0.2  # the target's draw is independent, as in the original


def test_augmented_training_pairs_keep_keypoints_on_their_content(tmp_path):
    root = tmp_path / "market"
    _write_layout(root, "market", (128, 64), (128, 64))
    # Redraw each image as grey with white blobs on its keypoints, so the content can be located.
    for split in ("train", "test"):
        keypoints, _ = pose.read_annotation(root / f"market-annotation-{split}.csv", (128, 64))
        for name, kp in keypoints.items():
            pixels = np.full((128, 64, 3), 128, np.uint8)  # as the grey fill: only the blob has weight
            y, x = kp[0]
            pixels[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = 255
            Image.fromarray(pixels).save(root / split / name)
    cfg = _cfg("market1501", [128, 64])
    cfg.train.augment = True
    spec = DATASETS.get("market1501")
    torch.manual_seed(3)
    data = spec.train_set(root, cfg, seed=0)
    plain = spec.test_set(root, cfg)  # never augmented
    first = data[0]
    torch.manual_seed(3)
    assert torch.equal(data[0]["source_image"], first["source_image"])  # reproducible under the seed
    assert not torch.equal(data[0]["source_image"], data[0]["source_image"])  # fresh draw each time
    for sample in (data[0], data[1], data[2]):
        for side in ("source", "target"):
            kp = sample[f"{side}_keypoints"][0].numpy()
            grey = (sample[f"{side}_image"][0].numpy() + 1) * 127.5
            if not (2 <= kp[0] < 125 and 2 <= kp[1] < 61):
                continue
            spot = np.clip(grey - 128, 0, None)
            centroid = np.array([(spot.sum(1) * np.arange(128)).sum(), (spot.sum(0) * np.arange(64)).sum()])
            np.testing.assert_allclose(kp, centroid / spot.sum(), atol=0.6)
            assert divmod(int(sample[f"{side}_structure"][0].argmax()), 64) == (int(kp[0]), int(kp[1]))
    assert plain[0]["source_keypoints"].numpy().dtype == np.float32


# ---------------------------------------------------------------------------------------------
# check(): every problem at once, with file and line
# ---------------------------------------------------------------------------------------------
def test_check_reports_every_malformed_case_with_file_and_line(fashion):
    root, _ = fashion
    annotation = root / "fasion-annotation-train.csv"
    lines = annotation.read_text().splitlines()
    ys, xs = _keypoints(1, (256, 176))
    lines[1] = lines[1] + ":extra"  # line 2: four fields
    lines[2] = f"c.jpg:{json.dumps(ys[:17])}:{json.dumps(xs)}"  # line 3: 17 y values
    lines[3] = "d.jpg:[1, 2, oops]:" + json.dumps(xs)  # line 4: not JSON
    lines.append(f"z.jpg:{json.dumps([1.5] + ys[1:])}:{json.dumps(xs)}")  # line 6: non-integer
    annotation.write_text("\n".join(lines) + "\n")
    png = root / "test" / "f.jpg"
    png.write_bytes(png.read_bytes()[:200])  # truncated
    pairs = root / "fasion-pairs-test.csv"
    pairs.write_text(pairs.read_text() + "e.jpg,nobody.jpg\n")  # line 5: unknown image
    (root / "fasion-pairs-train.csv").unlink()
    problems = DATASETS.get("deepfashion").check(root, _cfg("deepfashion", [256, 256], protocol="256x256"))
    found = {(p.where, p.message.split(" ")[0]) for p in problems}
    text = "\n".join(str(p) for p in problems)
    assert (f"{annotation}:2", "expected") in found and "3 ':'-separated fields" in text
    assert any(p.where == f"{annotation}:3" and "17 values, expected 18" in p.message for p in problems)
    assert any(p.where == f"{annotation}:4" and "not a JSON list" in p.message for p in problems)
    assert any(p.where == f"{annotation}:6" and "keypoints_y[0] = 1.5 is not an integer" in p.message for p in problems)
    assert any(p.where == str(png) and "unreadable image" in p.message for p in problems)
    assert any(
        p.where == f"{pairs}:5" and "'nobody.jpg' is not in fasion-annotation-test.csv" in p.message for p in problems
    )
    assert any(p.where == f"{pairs}:5" and "test/nobody.jpg does not exist" in p.message for p in problems)
    assert any(p.where.endswith("fasion-pairs-train.csv") and "missing" in p.message for p in problems)
    with pytest.raises(DatasetError, match="problem"):
        DATASETS.get("deepfashion").validate(root, _cfg("deepfashion", [256, 256]))
    with pytest.raises(DatasetError, match=r"fasion-annotation-train.csv:2"):
        DATASETS.get("deepfashion").train_set(root, _cfg("deepfashion", [64, 64]), seed=0)


def test_check_reports_missing_directories_sizes_and_options(fashion, tmp_path):
    root, _ = fashion
    spec = DATASETS.get("deepfashion")
    assert spec.check(tmp_path / "absent", _cfg("deepfashion", [64, 64])) == [
        pose.Problem(str(tmp_path / "absent"), "dataset directory does not exist")
    ]
    problems = spec.check(root, _cfg("deepfashion", [64, 64], protocol="256x176"))
    assert len(problems) == 8 and all("expected 256x176" in p.message for p in problems)  # 128x88 files
    problems = spec.check(root, _cfg("deepfashion", [64, 64], protocol="512x352", crop=True))
    assert [p.where for p in problems] == ["dataset.options", "dataset.options.protocol"]
    assert "unknown key(s) crop" in problems[0].message and "'512x352'" in problems[1].message
    with pytest.raises(ConfigError, match="dataset.options.protocol"):
        spec.test_set(root, _cfg("deepfashion", [64, 64], protocol="512x352"))
    wrong = _cfg("deepfashion", [64, 64])
    wrong.dataset.structure = "face16"
    assert spec.check(root, wrong)[0].where == "dataset.structure"
    for path in (root / "test").iterdir():
        path.unlink()
    (root / "test").rmdir()
    problems = spec.check(root, _cfg("deepfashion", [64, 64]))
    assert any(p.where == str(root / "test") and "missing test image directory" in p.message for p in problems)


def test_synthetic_persons_go_through_the_same_loader(tmp_path):
    cfg = _cfg("synthetic_persons", [32, 32], sigma=1.0)
    cfg.dataset.synthetic = {
        "identities_train": 2,
        "identities_test": 1,
        "poses_per_identity": 2,
        "pairs_per_identity": 2,
    }
    spec = DATASETS.get("synthetic_persons")
    root = spec.prepare(cfg, tmp_path)
    assert spec.check(root, cfg) == []
    sample = spec.test_set(root, cfg)[0]
    assert sample["target_structure"].shape == (18, 32, 32)
    cfg.dataset.resolution = [64, 64]  # loading at another size rescales from the generated frame
    bigger = spec.test_set(root, cfg)[0]
    small, large = sample["target_keypoints"].numpy(), bigger["target_keypoints"].numpy()
    present = small[:, 0] != MISSING
    np.testing.assert_allclose(large[present], small[present] * 2)
