"""Ground-truth correspondence of the synthetic persons: exact small cases, the files, the loader."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.config import TaskConfig
from bench.data import persons
from bench.data.person_correspondence import BACKGROUND, correspondence, ground_truth_paths
from bench.data.pose import transport_ground_truth
from bench.ops.flow_warp import flow_warp
from bench.registry import DATASETS

SIZE = (64, 64)
SMALL = dict(resolution=SIZE, identities_train=2, identities_test=2, poses_per_identity=3, pairs_per_identity=4)


class Placement:
    """Stands in for the generator's RNG in :func:`persons.place`: unit factor, then y and x slack shares."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)

    def uniform(self, low: float, high: float) -> float:
        return self.values.pop(0)


def _person(seed: int = 3) -> tuple[persons.Identity, persons.Pose, persons.Background]:
    rng = np.random.default_rng(seed)
    identity, background = persons.sample_identity(rng), persons.sample_background(rng)
    return identity, persons.fitting_pose(rng, identity, *SIZE), background


def _slack(identity: persons.Identity, pose: persons.Pose, factor: float) -> np.ndarray:
    """The placement slack (x, y) pixels of ``place`` for the unit factor ``factor``."""
    sk = persons.build_skeleton(identity, pose)
    low, high = persons._extent(sk)
    unit = min(persons._scales(sk, *SIZE)) * factor
    return np.array([SIZE[1] - 1, SIZE[0] - 1]) - (high - low) * unit


def _warp(image: Image.Image, flow: np.ndarray) -> np.ndarray:
    source = torch.from_numpy(np.asarray(image, dtype=np.float64)).permute(2, 0, 1)[None]
    return flow_warp(source, torch.from_numpy(flow.astype(np.float64))[None])[0].permute(1, 2, 0).numpy()


def test_a_drawing_against_itself_is_the_identity_everywhere():
    identity, pose, background = _person()
    _, _, recording = persons.render_person(identity, pose, background, *SIZE, Placement(0.95, 0.7, 0.5))
    flow, visible = correspondence(recording, recording, *SIZE)
    assert np.abs(flow).max() < 1e-9
    assert visible.all()  # outlines through pixel centres (integer keypoints) never decide by rounding


def test_a_pure_translation_moves_every_body_pixel_by_it_and_reproduces_the_target():
    identity, pose, background = _person()
    shift = np.array([3.0, 2.0])
    slack = _slack(identity, pose, 0.95)
    source_image, _, source = persons.render_person(identity, pose, background, *SIZE, Placement(0.95, 0.7, 0.5))
    target_image, _, target = persons.render_person(
        identity, pose, background, *SIZE, Placement(0.95, 0.7 + shift[1] / slack[1], 0.5 + shift[0] / slack[0])
    )
    flow, visible = correspondence(source, target, *SIZE)
    body = target.grid(*SIZE) != BACKGROUND
    assert body.sum() > 300
    np.testing.assert_allclose(flow[:, body], -shift[:, None] * np.ones((1, body.sum())), atol=1e-6)
    assert visible[body].all()  # the same figure, moved: nothing of it is hidden
    # The backdrop stays; it is visible exactly where the source's figure leaves it uncovered.
    assert (flow[:, ~body] == 0).all()
    np.testing.assert_array_equal(visible[~body], source.grid(*SIZE)[~body] == BACKGROUND)
    # The drawing moves by whole pixels, so the warp copies it exactly away from the backdrop (the
    # 2x LANCZOS kernel reaches 3 pixels, where the static backdrop blends in differently).
    far = body.copy()
    for axis, step in ((0, 1), (0, -1), (1, 1), (1, -1)):
        for distance in (1, 2, 3):
            far &= np.roll(body, step * distance, axis=axis)
    assert far.sum() > 20
    error = np.abs(_warp(source_image, flow) - np.asarray(target_image, dtype=np.float64))
    assert error[far].max() < 1e-6


def test_an_arm_moving_behind_the_torso_is_hidden_there():
    identity, pose, background = _person(5)
    # Side view facing right: the right arm is near, the left (far) arm is drawn behind the torso.
    side = dataclasses.replace(pose, view="side_right", lean=0.0, arm_swing=(0.0, 0.0), elbow=(0.0, 0.0))
    reaching = dataclasses.replace(side, arm_swing=(0.0, 80.0))  # the far arm reaches forward
    placement = (0.95, 0.5, 0.7)
    _, _, hanging_rec = persons.render_person(identity, side, background, *SIZE, Placement(*placement))
    _, _, reaching_rec = persons.render_person(identity, reaching, background, *SIZE, Placement(*placement))
    sk = persons.build_skeleton(identity, side)
    layout = persons.place(sk, Placement(*placement), *SIZE)
    torso = persons.torso_quads(identity, sk, layout.keypoints, layout.unit).top
    # Target: the reaching far arm, in view; source: the same arm hanging behind the torso.  Its
    # pixels whose source point lies inside the source's torso are hidden there.
    flow, visible = correspondence(hanging_rec, reaching_rec, *SIZE)
    top = reaching_rec.grid(*SIZE)
    keys = np.array([part.key[:2] == ("arm", "L") for _, part in reaching_rec.shapes] + [False])
    far_arm = keys[top]
    ys, xs = np.nonzero(far_arm)
    points = np.stack([xs + flow[0, ys, xs], ys + flow[1, ys, xs]], axis=1)
    inside_torso = np.array([persons._point_in_quad(p, torso) for p in points])
    assert inside_torso.sum() > 10
    assert not visible[ys, xs][inside_torso].any()
    # The near arm keeps its angles and is drawn over everything in both: all of it is visible.
    near = np.array([part.key[:2] == ("arm", "R") for _, part in reaching_rec.shapes] + [False])[top]
    assert near.sum() > 10 and visible[near].all()


def test_transport_scales_the_flow_on_resize_and_follows_a_shift():
    flow = np.stack([np.full((8, 8), 3.0), np.full((8, 8), -2.0)]).astype(np.float32)
    visibility = (np.arange(64).reshape(8, 8) % 3 == 0).astype(np.uint8)
    double = np.diag([2.0, 2.0, 1.0])
    flow_gt, visibility_gt = transport_ground_truth(flow, visibility, (16, 16), double, double)
    assert flow_gt.shape == (2, 16, 16) and visibility_gt.shape == (1, 16, 16)
    np.testing.assert_allclose(flow_gt[0], 6.0)
    np.testing.assert_allclose(flow_gt[1], -4.0)
    np.testing.assert_array_equal(visibility_gt[0].numpy(), np.kron(visibility, np.ones((2, 2))))
    # The loaded target shifted one pixel right of the written one: its column 0 has no preimage.
    shift = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    flow_gt, visibility_gt = transport_ground_truth(flow, visibility, (8, 8), np.eye(3), shift)
    np.testing.assert_allclose(flow_gt[0, :, 1:], 2.0)
    np.testing.assert_allclose(flow_gt[1, :, 1:], -2.0)
    assert (flow_gt[:, :, 0] == 0).all() and (visibility_gt[0, :, 0] == 0).all()
    np.testing.assert_array_equal(visibility_gt[0, :, 1:].numpy(), visibility[:, :-1])


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[persons.PersonsParams, Path]:
    params = persons.PersonsParams(**SMALL)
    root = persons.ensure_dataset(params, tmp_path_factory.mktemp("persons"))
    return params, root


def _config(resolution: tuple[int, int] = SIZE) -> TaskConfig:
    cfg = TaskConfig()
    cfg.dataset.resolution = list(resolution)
    cfg.dataset.heatmap_sigma = 1.5
    return cfg


def test_the_loader_serves_the_stored_ground_truth_of_each_pair(written):
    params, root = written
    spec = DATASETS.get("synthetic_persons")
    assert spec.check(root, _config()) == []
    samples = spec.test_set(root, _config())
    assert len(samples) == params.identities_test * params.pairs_per_identity
    for k in (0, len(samples) - 1):
        sample = samples[k]
        assert sample["flow_gt"].dtype == torch.float32 and sample["flow_gt"].shape == (2, *SIZE)
        assert sample["visibility_gt"].shape == (1, *SIZE)
        # Row k is the pair of the k-th CSV row: recompute it from the re-rendered drawings.
        (index, source_pose), (_, target_pose) = (
            map(int, re.match(r"te(\d+)-p(\d+)-", name).groups()) for name in sample["name"].split("_2_")
        )
        session = persons.sample_session(params, "test", index)
        source, target = (
            persons.render_example(params, "test", index, p, session)[3] for p in (source_pose, target_pose)
        )
        flow, visible = correspondence(source, target, *SIZE)
        np.testing.assert_array_equal(sample["flow_gt"].numpy(), flow)
        np.testing.assert_array_equal(sample["visibility_gt"][0].numpy(), visible.astype(np.float32))
    # At twice the written size the flow doubles (nearest-sampled, values scaled).
    large = spec.test_set(root, _config((128, 128)))[0]
    np.testing.assert_allclose(
        large["flow_gt"][:, ::2, ::2].numpy(), 2 * samples[0]["flow_gt"].numpy(), rtol=1e-6, atol=1e-5
    )


def test_the_ground_truth_warps_the_source_onto_the_target(written):
    _, root = written
    samples = DATASETS.get("synthetic_persons").test_set(root, _config())
    errors = []
    for sample in samples:
        source = (sample["source_image"][None].double() + 1) * 127.5
        warped = flow_warp(source, sample["flow_gt"][None].double())[0]
        error = ((warped - (sample["target_image"].double() + 1) * 127.5).abs().mean(0))
        errors.append(error[sample["visibility_gt"][0] > 0])
        # The identity flow of the source against itself would be far worse on the figure.
    mae = torch.cat(errors).mean().item()
    assert mae < 6.0  # antialiased edges of 3-pixel limbs dominate at 64x64 (see datasets/README.md)


def test_check_names_a_malformed_or_half_missing_ground_truth(written, tmp_path):
    _, root = written
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in root.rglob("*"):
        if path.is_file():
            (copy / path.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
            (copy / path.relative_to(root)).write_bytes(path.read_bytes())
    flow_path, visibility_path = ground_truth_paths(copy, "fashion", "test")
    np.save(flow_path, np.zeros((3, 2, *SIZE), dtype=np.float32))
    visibility_path.unlink()
    spec = DATASETS.get("synthetic_persons")
    problems = [str(p) for p in spec.check(copy, _config())]
    assert any("fashion-visibility-test.npy" in p and "missing" in p for p in problems), problems
    np.save(visibility_path, np.zeros((3, *SIZE), dtype=np.uint8))
    problems = [str(p) for p in spec.check(copy, _config())]
    assert any("fashion-flow-test.npy" in p and "expected float32 (8, 2, 64, 64)" in p for p in problems), problems


def test_real_datasets_without_ground_truth_serve_samples_without_it(written, tmp_path):
    _, root = written
    for split in ("train", "test"):
        for path in ground_truth_paths(root, "fashion", split):
            (tmp_path / path.name).write_bytes(path.read_bytes())
            path.unlink()
    try:
        sample = DATASETS.get("synthetic_persons").test_set(root, _config())[0]
        assert "flow_gt" not in sample and "visibility_gt" not in sample
    finally:
        for split in ("train", "test"):
            for path in ground_truth_paths(root, "fashion", split):
                path.write_bytes((tmp_path / path.name).read_bytes())


def test_ground_truth_splits_follow_the_parameter(tmp_path):
    params = persons.PersonsParams(**{**SMALL, "ground_truth": "test"})
    persons.write_dataset(params, tmp_path)
    assert all(p.is_file() for p in ground_truth_paths(tmp_path, "fashion", "test"))
    assert not any(p.exists() for p in ground_truth_paths(tmp_path, "fashion", "train"))
    with pytest.raises(ValueError, match="dataset.synthetic.ground_truth"):
        persons.PersonsParams(**{**SMALL, "ground_truth": "some"})


# sha256 over (relative path, sha256 of the content) of every file of the SMALL dataset (decoded
# pixels for the PNGs, whose bytes depend on the zlib build; bytes for the CSVs and the ground truth):
# the data must come out identical on every machine (the arithmetic is elementwise IEEE double).
# ``session`` is the digest the data had before the studio backdrop became the default: that option
# still writes exactly those files.
SMALL_DIGESTS = {
    "studio": "9ea00a2bc8c70982375de09b39f0d405fb0e67e2d7ce690b75c78dbc09a649ce",
    "session": "627029257b1b6b9bf70cf5d23aff8ec7dd23976f02035aabeee8aaeba3a19b03",
}


def _content(path: Path) -> bytes:
    return np.asarray(Image.open(path)).tobytes() if path.suffix == ".png" else path.read_bytes()


@pytest.mark.parametrize("backdrop", sorted(SMALL_DIGESTS))
def test_the_written_dataset_is_pinned(backdrop, tmp_path):
    params = persons.PersonsParams(**{**SMALL, "backdrop": backdrop})
    root = persons.ensure_dataset(params, tmp_path)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != persons.PARAMS_FILE)
    listing = [(str(p.relative_to(root)), hashlib.sha256(_content(p)).hexdigest()) for p in files]
    assert hashlib.sha256(json.dumps(listing).encode()).hexdigest() == SMALL_DIGESTS[backdrop]
