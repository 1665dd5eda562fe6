"""Synthetic talking faces (bench/data/faces.py) and the FaceForensics-style loader (face_video.py)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.config import ConfigError, TaskConfig
from bench.data.face_landmarks import MIRROR, LandmarkFileError, read_landmarks, write_landmarks
from bench.data.face_structure import face_structure
from bench.data.face_video import FaceForensicsSpec, SyntheticFacesSpec
from bench.data.faces import (
    FaceGeneratorParams,
    FaceRenderer,
    face_template,
    render_video,
    sample_identity,
    sample_motion,
    video_rng,
)
from bench.registry import DATASETS

TINY = {"resolution": [32, 32], "videos_train": 2, "videos_test": 1, "frames_per_video": 5, "seed": 3}


def _config(structure: str = "face16", resolution=(32, 32), synthetic=None, **dataset) -> TaskConfig:
    cfg = TaskConfig(kind="face_animation")
    cfg.dataset.name = "synthetic_faces"
    cfg.dataset.structure = structure
    cfg.dataset.resolution = list(resolution)
    cfg.dataset.synthetic = dict(TINY if synthetic is None else synthetic)
    for key, value in dataset.items():
        setattr(cfg.dataset, key, value)
    cfg.train.clip_length = 3
    return cfg


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# -------------------------------------------------------------------------------------------------
# Generator
# -------------------------------------------------------------------------------------------------
def test_generation_is_deterministic_and_cached(tmp_path):
    calls = []
    first = SyntheticFacesSpec().prepare(_config(), tmp_path / "a", lambda *a: calls.append(a))
    second = SyntheticFacesSpec().prepare(_config(), tmp_path / "b")
    assert first.name == second.name and first.name.startswith("faces-")
    assert _tree_digest(first) == _tree_digest(second), "same seed, same bytes"
    assert calls[-1][1:] == (15, 15)  # (done, total) frames
    assert sorted(p.name for p in first.iterdir()) == [
        "params.json",
        "test_correspondence",
        "test_data",
        "test_keypoints",
        "train_correspondence",
        "train_data",
        "train_keypoints",
    ]
    assert len(list((first / "train_data" / "0001").glob("*.png"))) == 5
    calls.clear()
    assert SyntheticFacesSpec().prepare(_config(), tmp_path / "a", lambda *a: calls.append(a)) == first
    assert calls == [], "a cached dataset is not regenerated"
    other = SyntheticFacesSpec().prepare(_config(synthetic={**TINY, "seed": 4}), tmp_path / "a")
    assert other != first and _tree_digest(other) != _tree_digest(first)
    assert not [p for p in (tmp_path / "a" / "synthetic").iterdir() if ".tmp-" in p.name]


def test_landmark_files_round_trip_the_drawn_landmarks(tmp_path):
    root = SyntheticFacesSpec().prepare(_config(), tmp_path)
    params = FaceGeneratorParams.from_config(_config())
    for t, (frame, landmarks) in enumerate(render_video(params, "test", 0)):
        assert np.array_equal(read_landmarks(root / "test_keypoints" / "0000" / f"{t:05d}.txt"), landmarks)
        assert np.array_equal(np.asarray(Image.open(root / "test_data" / "0000" / f"{t:05d}.png")), frame)
    assert SyntheticFacesSpec().check(root, _config()) == []


@pytest.mark.parametrize("video", range(4))
def test_landmarks_lie_on_the_drawn_face(video):
    rng = video_rng(0, "train", video)
    # A pure blue background, so that no skin, lip or eye colour can match it by chance.
    identity = dataclasses.replace(sample_identity(rng), background=((0, 0, 255), (0, 0, 255)))
    states = sample_motion(rng, 12, (64, 64))
    renderer = FaceRenderer(identity, (64, 64), states[0])
    background = renderer.background().astype(int)
    for state in states[::4]:
        frame, landmarks = renderer.render(state)
        for index in (8, 30, 33, 36, 45, 51, 57, 62):
            x, y = landmarks[index]
            assert 0 <= x < 64 and 0 <= y < 64
            difference = np.abs(frame[y, x].astype(int) - background[y, x]).sum()
            assert difference > 60, f"landmark {index} at ({x}, {y}) shows the background"


def test_motion_is_smooth_and_present():
    params = FaceGeneratorParams((64, 64), 3, 0, 40, 0)
    for video in range(3):
        tracks = np.stack([landmarks for _, landmarks in render_video(params, "train", video)]).astype(float)
        step = np.linalg.norm(np.diff(tracks, axis=0), axis=2)  # (T - 1, 68) per-frame motion
        assert step.max() <= 0.1 * 64, f"video {video}: a landmark jumps {step.max():.1f} px in one frame"
        assert np.abs(tracks - tracks[0]).max() >= 3, f"video {video}: the face hardly moves"


def test_identities_differ_and_template_is_symmetric():
    template = face_template()
    np.testing.assert_allclose(template[MIRROR] * [-1, 1, 1], template, atol=1e-12)
    params = FaceGeneratorParams((32, 32), 2, 0, 1, 0)
    (a, _), (b, _) = next(render_video(params, "train", 0)), next(render_video(params, "train", 1))
    assert not np.array_equal(a, b)


def test_generator_parameters_are_validated():
    with pytest.raises(ConfigError, match=r"dataset.synthetic: unknown key\(s\) videos"):
        FaceGeneratorParams.from_config(_config(synthetic={**TINY, "videos": 3}))
    with pytest.raises(ConfigError, match="dataset.synthetic.frames_per_video"):
        FaceGeneratorParams.from_config(_config(synthetic={**TINY, "frames_per_video": 0}))
    params = FaceGeneratorParams.from_config(_config(resolution=(48, 48), synthetic={}))
    assert params.resolution == (48, 48) and params.videos_train > 0


# -------------------------------------------------------------------------------------------------
# Loader on hand-written fixtures
# -------------------------------------------------------------------------------------------------
FIXTURE_SIZE = (40, 48)  # H, W of the fixture frames (resized to the configured 32 x 32)


def _fixture_landmarks(shift: int, decimals: bool = False) -> np.ndarray:
    """Template landmarks in fixture-frame pixels: integers (as dlib writes them) or with 2 decimals."""
    points = face_template()[:, :2] * [13, 12] + [24 + shift, 18]
    return np.round(points, 2) if decimals else np.rint(points).astype(np.int64)


def _write_decimal_landmarks(path: Path, landmarks: np.ndarray) -> None:
    path.write_text("".join(f"{x:.2f},{y:.2f}\n" for x, y in landmarks.tolist()))


def _write_fixture(root: Path, keypoint_folder: str = "keypoints", frames: dict[str, int] | None = None,
                   decimals: bool = False) -> None:
    """Videos of random-noise frames with template landmarks (integer or decimal), in GFLA's layout."""
    rng = np.random.default_rng(0)
    frames = frames or {"train": 2, "test": 2}
    for phase, count in frames.items():
        for video, length in (("clipA", 4), ("clipB", 6))[:count]:
            for t in range(length):
                data = root / f"{phase}_data" / video
                keypoints = root / f"{phase}_{keypoint_folder}" / video
                data.mkdir(parents=True, exist_ok=True)
                keypoints.mkdir(parents=True, exist_ok=True)
                pixels = rng.integers(0, 256, (*FIXTURE_SIZE, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(data / f"{t}.png")
                landmarks = _fixture_landmarks(t % 3, decimals)
                write = _write_decimal_landmarks if decimals else write_landmarks
                write(keypoints / f"{t}.txt", landmarks)


@pytest.mark.parametrize("folder", ["keypoints", "keypoint"])
def test_loader_reads_both_folder_spellings(tmp_path, folder):
    _write_fixture(tmp_path, folder)
    spec, cfg = FaceForensicsSpec(), _config(root=str(tmp_path))
    assert spec.prepare(cfg, tmp_path / "unused") == tmp_path
    assert spec.check(tmp_path, cfg) == []
    train = spec.train_set(tmp_path, cfg, seed=0)
    assert len(train) == (4 - 3 + 1) + (6 - 3 + 1)  # every 3-frame window of both videos
    assert train.clip(3) == (train.videos[1], 1)
    sample = train[3]
    assert sample["name"] == "clipB" and sample["frame_names"] == ["1", "2", "3"]
    assert sample["frames"].shape == (3, 3, 32, 32) and sample["structures"].shape == (3, 16, 32, 32)
    assert float(sample["frames"].min()) >= -1 and float(sample["frames"].max()) <= 1
    # The structure is drawn from the landmarks scaled to 32 x 32 (pixel centres kept).
    expected = (_fixture_landmarks(1) + 0.5) * [32 / 48, 32 / 40] - 0.5
    assert torch.equal(sample["structures"][0, 1:], face_structure(expected, 32, 32)[1:])

    test = spec.test_set(tmp_path, cfg)
    assert [v["name"] for v in test] == ["clipA", "clipB"]
    assert test[1]["frames"].shape == (6, 3, 32, 32)
    reference = spec.reference_images(tmp_path, cfg, "train")
    assert len(reference) == 10 and reference[0].dtype == torch.uint8 and reference[0].shape == (3, 32, 32)


def test_landmark_files_read_integers_and_decimals_as_the_original_does(tmp_path):
    """GFLA reads a landmark file with np.loadtxt(path, delimiter=','): integers and decimals alike, as floats."""
    integers, decimals = _fixture_landmarks(0), _fixture_landmarks(0, decimals=True)
    assert not np.array_equal(decimals, np.rint(decimals))  # the fixture has fractional coordinates
    write_landmarks(tmp_path / "int.txt", integers)
    _write_decimal_landmarks(tmp_path / "dec.txt", decimals)
    for name, expected in (("int.txt", integers), ("dec.txt", decimals)):
        points = read_landmarks(tmp_path / name)
        assert points.dtype == np.float64 and np.array_equal(points, expected)
        assert np.array_equal(points, np.loadtxt(tmp_path / name, delimiter=","))
    rows = [f"{x:.2f},{y:.2f}" for x, y in decimals.tolist()]
    spaced = ["# x,y per landmark", *[f" {row.replace(',', ' , ')} " for row in rows[:30]], "", *rows[30:], ""]
    (tmp_path / "spaced.txt").write_text("\n".join(spaced))
    assert np.array_equal(read_landmarks(tmp_path / "spaced.txt"), decimals)


@pytest.mark.parametrize(
    ("row", "message"),
    [("12,abc", "expected two numbers 'x,y'"), ("12.5", "expected two numbers"), ("1,2,3", "expected two numbers"),
     ("12.5;3", "expected two numbers"), ("1_0,3", "expected two numbers"), ("nan,3", "expected finite coordinates"),
     ("4,inf", "finite")],
)
def test_landmark_files_the_original_cannot_use_are_refused_with_file_and_line(tmp_path, row, message):
    rows = [f"{x:.2f},{y:.2f}" for x, y in _fixture_landmarks(0, decimals=True).tolist()]
    rows[6] = row
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(rows))
    with pytest.raises(LandmarkFileError) as error:
        read_landmarks(path)
    assert [(p.where, message in p.message and repr(row) in p.message) for p in error.value.problems] == [
        (f"{path}:7", True)
    ]
    path.write_text("\n".join(rows[:6] + rows[7:]))
    with pytest.raises(LandmarkFileError, match="has 67 landmark lines, expected 68"):
        read_landmarks(path)


def test_decimal_landmarks_pass_the_check_and_are_drawn_unrounded(tmp_path):
    _write_fixture(tmp_path, decimals=True)
    spec, cfg = FaceForensicsSpec(), _config(root=str(tmp_path))
    assert spec.check(tmp_path, cfg) == []
    sample = spec.train_set(tmp_path, cfg, seed=0)[3]  # clipB frames 1-3
    scale = [32 / 48, 32 / 40]
    expected = face_structure((_fixture_landmarks(1, decimals=True) + 0.5) * scale - 0.5, 32, 32)
    rounded = face_structure((_fixture_landmarks(1) + 0.5) * scale - 0.5, 32, 32)
    assert torch.equal(sample["structures"][0, 1:], expected[1:])
    assert not torch.equal(expected[1:], rounded[1:])  # rounding in the parser would have shown


def test_loader_caps_and_edges_mode(tmp_path):
    _write_fixture(tmp_path)
    spec = FaceForensicsSpec()
    cfg = _config(structure="face_edges", root=str(tmp_path), max_test=1, max_train=1, options={"test_frames": 2})
    test = spec.test_set(tmp_path, cfg)
    assert len(test) == 1 and test[0]["structures"].shape == (2, 1, 32, 32)
    assert len(spec.train_set(tmp_path, cfg, seed=0)) == 2  # clipA only: 4 - 3 + 1 windows
    assert len(spec.reference_images(tmp_path, cfg, "test")) == 2


def test_loader_configuration_errors(tmp_path):
    _write_fixture(tmp_path)
    with pytest.raises(ConfigError, match="dataset.structure"):
        FaceForensicsSpec().test_set(tmp_path, _config(structure="heatmaps"))
    with pytest.raises(ConfigError, match=r"dataset.options: unknown key\(s\) crop"):
        FaceForensicsSpec().test_set(tmp_path, _config(options={"crop": True}))
    with pytest.raises(ConfigError, match="dataset.root"):
        FaceForensicsSpec().prepare(_config(), tmp_path)
    with pytest.raises(ConfigError, match="dataset.root"):
        FaceForensicsSpec().prepare(_config(root=str(tmp_path / "missing")), tmp_path)


def test_check_reports_every_problem_with_file_and_line(tmp_path):
    _write_fixture(tmp_path)
    keypoints = tmp_path / "train_keypoints" / "clipB"
    short = keypoints / "0.txt"
    short.write_text("".join(short.read_text().splitlines(keepends=True)[:67]))
    bad_value = keypoints / "1.txt"
    lines = bad_value.read_text().splitlines(keepends=True)
    lines[4] = "12,abc\n"
    bad_value.write_text("".join(lines))
    truncated = tmp_path / "train_data" / "clipB" / "2.png"
    truncated.write_bytes(truncated.read_bytes()[:120])
    (keypoints / "3.txt").unlink()
    (keypoints / "99.txt").write_text((keypoints / "4.txt").read_text())
    orphan_video = tmp_path / "test_data" / "clipC"
    orphan_video.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(orphan_video / "0.png")

    problems = {(p.where, p.message) for p in FaceForensicsSpec().check(tmp_path, _config())}
    wheres = {where for where, _ in problems}
    assert any(w == str(short) and "67 landmark lines" in m for w, m in problems)
    assert any(w == f"{bad_value}:5" and "'12,abc'" in m for w, m in problems)
    assert any(w == str(truncated) and "truncated" in m for w, m in problems)
    assert any(w == str(truncated.with_name("3.png")) and "3.txt" in m for w, m in problems)
    assert str(keypoints / "99.txt") in wheres
    assert any(w == str(tmp_path / "test_keypoints" / "clipC") and "no landmark folder" in m for w, m in problems)
    assert len(problems) == 6


def test_check_reports_missing_folders(tmp_path):
    (tmp_path / "train_data").mkdir()
    problems = [str(p) for p in FaceForensicsSpec().check(tmp_path, _config())]
    assert any("train_keypoints/ or train_keypoint/" in p for p in problems)
    assert any(str(tmp_path / "test_data") in p and "missing" in p for p in problems)
    assert any("contains no video folders" in p for p in problems)
    assert FaceForensicsSpec().check(tmp_path / "nowhere", _config())[0].message == "dataset directory does not exist"


def test_specs_are_registered():
    assert isinstance(DATASETS.get("synthetic_faces"), SyntheticFacesSpec)
    assert DATASETS.get("faceforensics").kind == "face_animation"
    assert DATASETS.get("synthetic_faces").synthetic and not DATASETS.get("faceforensics").synthetic
