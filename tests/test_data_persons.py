"""The synthetic person generator: determinism, the written format, keypoints on the body, caching."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.config import ConfigError, TaskConfig
from bench.data import persons
from bench.data.heatmaps import MISSING
from bench.data.pose import read_annotation, read_pairs

SMALL = dict(resolution=(64, 48), identities_train=3, identities_test=2, poses_per_identity=3, pairs_per_identity=2)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _render(params: persons.PersonsParams, split: str, index: int, pose_index: int):
    """Re-render one image as write_dataset does; returns (image, keypoints, pose, background)."""
    session = persons.sample_session(params, split, index)
    image, keypoints, pose, _ = persons.render_example(params, split, index, pose_index, session)
    return image, keypoints, pose, session[1]


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[persons.PersonsParams, Path]:
    params = persons.PersonsParams(**SMALL)
    out = tmp_path_factory.mktemp("persons")
    persons.write_dataset(params, out)
    return params, out


def test_same_seed_same_bytes_other_seed_other_images(written, tmp_path):
    params, out = written
    again = tmp_path / "again"
    again.mkdir()
    persons.write_dataset(params, again)
    assert _files(again) == _files(out)

    other = tmp_path / "other"
    other.mkdir()
    persons.write_dataset(persons.PersonsParams(**{**SMALL, "seed": 1}), other)
    first, second = _files(out), _files(other)
    assert first.keys() != second.keys() or first != second
    images = [(a, b) for a, b in zip(sorted(out.rglob("*.png")), sorted(other.rglob("*.png")))]
    assert all(np.asarray(Image.open(a)).tobytes() != np.asarray(Image.open(b)).tobytes() for a, b in images)


def test_written_csv_parses_back_to_the_drawn_keypoints_and_images(written):
    params, out = written
    for split, count in (("train", params.identities_train), ("test", params.identities_test)):
        keypoints, problems = read_annotation(out / f"fashion-annotation-{split}.csv", params.resolution)
        assert problems == []
        assert len(keypoints) == count * params.poses_per_identity
        for index in range(count):
            for pose_index in range(params.poses_per_identity):
                image, drawn, pose, _ = _render(params, split, index, pose_index)
                name = f"{split[:2]}{index:05d}-p{pose_index}-{pose.view.replace('_', '')}.png"
                np.testing.assert_array_equal(keypoints[name], drawn)
                on_disk = Image.open(out / split / name)
                assert on_disk.size == (params.resolution[1], params.resolution[0])
                np.testing.assert_array_equal(np.asarray(on_disk), np.asarray(image))


def _corner_colours(out: Path) -> dict[str, set[bytes]]:
    """The corner pixel (always backdrop) of every training image, grouped by identity."""
    corners: dict[str, set[bytes]] = {}
    for path in sorted((out / "train").glob("*.png")):
        corners.setdefault(path.name.split("-")[0], set()).add(np.asarray(Image.open(path))[0, 0].tobytes())
    return corners


def test_studio_backdrop_is_one_near_white_backdrop_for_the_whole_set(written):
    """The default, as DeepFashion's in-shop photos: every image has the same light corner."""
    params, out = written
    assert params.backdrop == "studio"
    corners = _corner_colours(out)
    assert len(corners) == params.identities_train
    (colour,) = set().union(*corners.values())
    assert min(np.frombuffer(colour, dtype=np.uint8)) >= 225


def test_session_backdrop_is_one_per_identity_and_leaves_the_identities_unchanged(written, tmp_path):
    """``backdrop: session``: one photo session per person, its backdrop drawn per identity; the
    person drawn in front of it is the one the studio set has (same keypoints)."""
    params, _ = written
    session = persons.PersonsParams(**{**SMALL, "backdrop": "session"})
    persons.write_dataset(session, tmp_path)
    corners = _corner_colours(tmp_path)
    assert all(len(colours) == 1 for colours in corners.values())
    assert len(set().union(*corners.values())) > 1  # and it differs between identities
    for index in range(params.identities_train):
        assert np.array_equal(_render(params, "train", index, 0)[1], _render(session, "train", index, 0)[1])
    assert session.digest() != params.digest()
    with pytest.raises(ConfigError, match="dataset.synthetic.backdrop: expected one of studio, session"):
        persons.PersonsParams(backdrop="random")


def test_pairs_join_two_poses_of_one_identity_and_splits_are_disjoint(written):
    params, out = written
    names = {}
    for split in ("train", "test"):
        pairs, problems = read_pairs(out / f"fashion-pairs-{split}.csv")
        assert problems == []
        count = params.identities_train if split == "train" else params.identities_test
        assert len(pairs) == count * params.pairs_per_identity
        assert len(set(pairs)) == len(pairs)
        for pair in pairs:
            assert pair.source != pair.target
            assert pair.source.split("-")[0] == pair.target.split("-")[0]
            assert (out / split / pair.source).is_file() and (out / split / pair.target).is_file()
        names[split] = {p.name.split("-")[0] for p in (out / split).iterdir()}
    assert not names["train"] & names["test"]
    train0 = persons.sample_identity(persons.stream(params, "train", 0, 0))
    test0 = persons.sample_identity(persons.stream(params, "test", 0, 0))
    assert train0 != test0


def test_visible_keypoints_lie_on_the_drawn_body():
    params = persons.PersonsParams(
        resolution=(128, 64), identities_train=12, poses_per_identity=4, closeup_fraction=0.3
    )
    height, width = params.resolution
    checked = 0
    views = set()
    cut_off = 0  # front views framed so close that the ankles leave the frame
    for index in range(params.identities_train):
        for pose_index in range(params.poses_per_identity):
            image, keypoints, pose, background = _render(params, "train", index, pose_index)
            views.add(pose.view)
            pixels = np.asarray(image).astype(int)
            empty = np.asarray(persons.render_background(background, height, width)).astype(int)
            visible = keypoints[(keypoints != MISSING).all(axis=1)]
            assert ((visible >= 0) & (visible < [height, width])).all()
            for y, x in visible:
                assert np.abs(pixels[y, x] - empty[y, x]).sum() > 12, (index, pose_index, pose.view, y, x)
                checked += 1
            cut_off += pose.view == "front" and (keypoints[[persons.R_ANKLE, persons.L_ANKLE]] == MISSING).all()
    assert views == set(persons.VIEWS)
    assert checked > 500 and cut_off >= 2


def test_views_hide_the_joints_openpose_would_miss():
    params = persons.PersonsParams(resolution=(128, 64), identities_train=30, poses_per_identity=4)
    seen = {"back": 0, "side": 0, "front": 0}
    for index in range(params.identities_train):
        for pose_index in range(params.poses_per_identity):
            _, keypoints, pose, _ = _render(params, "train", index, pose_index)
            missing = (keypoints == MISSING).all(axis=1)
            if pose.view == "back":
                assert missing[[persons.NOSE, persons.R_EYE, persons.L_EYE]].all()
                assert not missing[[persons.NECK, persons.R_HIP, persons.L_HIP]].any()
                seen["back"] += 1
            elif pose.view == "front":
                assert not missing.any()
                seen["front"] += 1
            else:
                far = "L" if pose.view == "side_right" else "R"  # facing right shows the right side
                near = "R" if far == "L" else "L"
                assert missing[list(persons.FACE[far])].all()
                assert not missing[[persons.NOSE, *persons.FACE[near], *persons.ARM[near], *persons.LEG[near]]].any()
                seen["side"] += 1
    assert min(seen.values()) > 5


def test_figures_stay_inside_the_frame_in_natural_poses():
    params = persons.PersonsParams(resolution=(64, 64))
    rng = np.random.default_rng(5)
    for _ in range(200):
        identity = persons.sample_identity(rng)
        pose = persons.fitting_pose(rng, identity, 64, 64)
        sk = persons.build_skeleton(identity, pose)
        layout = persons.place(sk, rng, *params.resolution)
        assert ((layout.keypoints >= 0) & (layout.keypoints < 64)).all()
        joints = sk.joints
        # Knees stay below the hips and ankles below the knees: no legs kicked up.
        for hip, knee, ankle in persons.LEG.values():
            assert joints[knee, 1] > joints[hip, 1] + 0.5 and joints[ankle, 1] > joints[knee, 1] + 0.5
        # Wrists never reach over the top of the head.
        for _, _, wrist in persons.ARM.values():
            assert joints[wrist, 1] > sk.head_centre[1] - 0.5


def test_params_from_config_defaults_and_errors(tmp_path):
    cfg = TaskConfig()
    cfg.dataset.resolution = [32, 24]
    cfg.dataset.synthetic = {"identities_train": 5}
    params = persons.PersonsParams.from_config(cfg)
    assert params.resolution == (32, 24) and params.identities_train == 5
    cfg.dataset.synthetic = {"identites_train": 5}
    with pytest.raises(ConfigError, match="dataset.synthetic: unknown key.*identites_train"):
        persons.PersonsParams.from_config(cfg)
    every = persons.PersonsParams(**{**SMALL, "pairs_per_identity": None, "identities_test": 1})
    persons.write_dataset(every, tmp_path)  # None: every ordered pair of an identity's poses
    pairs, _ = read_pairs(tmp_path / "fashion-pairs-test.csv")
    names = sorted(p.name for p in (tmp_path / "test").iterdir())
    assert sorted((p.source, p.target) for p in pairs) == [(a, b) for a in names for b in names if a != b]
    with pytest.raises(ConfigError, match="dataset.synthetic.pairs_per_identity"):
        persons.PersonsParams(poses_per_identity=2, pairs_per_identity=3)
    with pytest.raises(ConfigError, match="dataset.synthetic.resolution"):
        persons.PersonsParams(resolution=(64,))
    assert persons.PersonsParams(seed=1).digest() != persons.PersonsParams(seed=2).digest()


def test_ensure_dataset_caches_and_never_reuses_a_half_written_directory(tmp_path):
    params = persons.PersonsParams(**{**SMALL, "identities_train": 1, "identities_test": 1})
    calls: list[tuple[str, int, int]] = []
    root = persons.ensure_dataset(params, tmp_path, lambda *a: calls.append(a))
    assert root == tmp_path / "synthetic" / f"persons-{params.digest()}"
    total = 2 * params.poses_per_identity
    assert calls[-1][1:] == (total, total) and len(calls) == total
    assert json.loads((root / "params.json").read_text())["seed"] == params.seed
    assert not [p for p in root.parent.iterdir() if ".tmp-" in p.name]

    calls.clear()
    assert persons.ensure_dataset(params, tmp_path, lambda *a: calls.append(a)) == root
    assert calls == []  # cached

    (root / "params.json").unlink()  # as if interrupted before the end: regenerated, not reused
    (root / "train" / "junk.png").write_bytes(b"not an image")
    assert persons.ensure_dataset(params, tmp_path, lambda *a: calls.append(a)) == root
    assert len(calls) == total and not (root / "train" / "junk.png").exists()
    assert (root / "params.json").is_file()
