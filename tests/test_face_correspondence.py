"""Ground-truth correspondence of the synthetic faces (bench/data/face_correspondence.py, written by
faces.py, delivered by face_video.py)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from scipy.ndimage import maximum_filter, minimum_filter

from bench.config import TaskConfig
from bench.data.face_correspondence import (
    BACKDROP,
    NO_CORRESPONDENCE,
    VideoCorrespondence,
    correspondence_path,
    rasterize,
)
from bench.data.face_landmarks import INNER_LIPS, LEFT_EYE, RIGHT_EYE, write_landmarks
from bench.data.face_video import FaceForensicsSpec, SyntheticFacesSpec
from bench.data.faces import (
    MESH_LAYERS,
    FaceGeneratorParams,
    FaceRenderer,
    sample_identity,
    sample_motion,
    video_correspondence,
    video_rng,
    write_dataset,
)
from bench.ops.flow_warp import flow_warp

SYNTHETIC = {"resolution": [48, 48], "videos_train": 1, "videos_test": 1, "frames_per_video": 8, "seed": 1}


def _config(resolution=(48, 48), **dataset) -> TaskConfig:
    cfg = TaskConfig(kind="face_animation")
    cfg.dataset.name = "synthetic_faces"
    cfg.dataset.structure = "face_edges"
    cfg.dataset.resolution = list(resolution)
    cfg.dataset.synthetic = dict(SYNTHETIC)
    cfg.dataset.options = {"canny": False}
    for key, value in dataset.items():
        setattr(cfg.dataset, key, value)
    cfg.train.clip_length = 4
    return cfg


def _same(state):
    return state


def _video(video: int, change, first_change=_same, size: int = 64):
    """Renderer, two frames (``first_change`` and ``change`` of a video's first state), their landmarks
    and their correspondence; the skin flat, so that a colour does not depend on where a face point is."""
    rng = video_rng(0, "test", video)
    identity = sample_identity(rng)
    first = sample_motion(rng, 1, (size, size))[0]
    renderer = FaceRenderer(identity, (size, size), first)
    renderer.skin = Image.new("RGB", renderer.canvas_size, identity.skin)
    drawn = [renderer.render_layers(state) for state in (first_change(first), change(first))]
    return renderer, [d[0] for d in drawn], [d[1] for d in drawn], video_correspondence(renderer, [d[2] for d in drawn])


def _head_layers(correspondence: VideoCorrespondence, frame: int) -> np.ndarray:
    """Pixels of the frame on a head layer that moves rigidly with the head (not the neck, whose lower
    edge stays on the shoulders)."""
    neck = MESH_LAYERS.index("neck") + 1
    labels = correspondence.labels[frame]
    return (labels != BACKDROP) & (labels != NO_CORRESPONDENCE) & (labels != neck)


@pytest.mark.parametrize("video", range(4))
def test_pure_head_translation_has_the_exact_flow(video):
    _, frames, _, correspondence = _video(
        video, lambda s: dataclasses.replace(s, centre=(s.centre[0] + 3, s.centre[1] + 2))
    )
    flow, visible = correspondence.pair(1, 0)
    head = _head_layers(correspondence, 1)
    assert head.sum() > 500
    np.testing.assert_allclose(flow[:, head], np.array([[-3.0], [-2.0]]) * np.ones((1, head.sum())), atol=1e-9)
    backdrop = correspondence.labels[1] == BACKDROP
    assert np.all(flow[:, backdrop] == 0)
    # The backdrop is visible exactly where the source shows the backdrop too.
    assert np.array_equal(visible[backdrop], correspondence.labels[0][backdrop] == BACKDROP)
    # Head pixels are visible where their point shows the same layer in the source; then the warp is exact
    # (integer shift, flat skin) away from the edges where the neck and the backdrop blend in.
    head[:2], head[:, :3] = False, False  # points that come from outside the source
    ys, xs = np.nonzero(head)
    same = correspondence.labels[0][ys - 2, xs - 3] == correspondence.labels[1][head]
    # ... and neither frame folds the layer there (where the glasses' arms overlap their rims' boxes).
    grid = np.arange(64.0)
    for layer in np.unique(correspondence.labels[1][head]):
        on = correspondence.labels[1][head] == layer
        vertices, triangles = correspondence.vertices[layer - 1], correspondence.triangles[layer - 1]
        target_folds = rasterize(vertices[1], triangles, grid, grid).folds[ys[on], xs[on]]
        source_folds = rasterize(vertices[0], triangles, grid, grid).folds[ys[on] - 2, xs[on] - 3]
        same[on] &= ~target_folds & ~source_folds
    assert np.array_equal(visible[head], same)
    warped = flow_warp(torch.from_numpy(frames[0].copy()).permute(2, 0, 1)[None].double(), torch.from_numpy(flow)[None])
    error = np.abs(warped[0].permute(1, 2, 0).numpy() - frames[1]).max(axis=-1)
    # Away from layer edges by the reach of the 2x LANCZOS downsampling (3 pixels), the warp is exact.
    labels = correspondence.labels[1]
    interior = visible & head & (maximum_filter(labels, 7) == minimum_filter(labels, 7))
    assert interior.sum() > 80 and error[interior].max() <= 1e-9


def test_a_frame_is_its_own_source_with_zero_flow():
    _, _, _, correspondence = _video(0, lambda s: s)
    flow, visible = correspondence.pair(0, 0)
    assert np.abs(flow).max() < 1e-9
    defined = correspondence.labels[0] != NO_CORRESPONDENCE
    assert visible[defined].mean() > 0.99 and not visible[~defined].any()


def _inside(polygon: np.ndarray, size: int) -> np.ndarray:
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).polygon([tuple(p) for p in polygon.tolist()], fill=1)
    return np.asarray(mask).astype(bool)


def test_blink_and_opening_mouth_have_no_visibility():
    def eyes_open_mouth_shut(state):
        return dataclasses.replace(state, blink=0.0, mouth_open=0.0)

    def eyes_shut_mouth_open(state):
        return dataclasses.replace(state, blink=1.0, mouth_open=1.0)

    _, _, landmarks, correspondence = _video(1, eyes_shut_mouth_open, eyes_open_mouth_shut)
    # Target: eyes closed, mouth wide open; source: eyes open, mouth closed.
    _, visible = correspondence.pair(1, 0)
    mouth = _inside(landmarks[1][list(INNER_LIPS)], 64)
    assert mouth.sum() > 20 and not visible[mouth].any(), "the opened mouth shows nothing of the source"
    for eye in (RIGHT_EYE, LEFT_EYE):
        source_eye = _inside(landmarks[0][list(eye)], 64)  # where the source's eye is open
        assert source_eye.sum() > 5 and not visible[source_eye].any(), "the closed lid is not in the source"
    assert visible.mean() > 0.8, "the rest of the frame stays visible"
    # And the other way: the open eyes of a target whose source blinks.
    _, visible = correspondence.pair(0, 1)
    for eye in (RIGHT_EYE, LEFT_EYE):
        target_eye = _inside(landmarks[0][list(eye)], 64)
        assert target_eye.sum() > 5 and not visible[target_eye].any()
    assert visible.mean() > 0.8


def test_rasterize_covers_a_square_once_with_exact_weights():
    vertices = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0]])
    # Counter-clockwise in x right, y down means a positive signed area; the second one is back-facing.
    triangles = np.array([[0, 2, 1], [0, 3, 2]])
    grid = np.arange(8, dtype=np.float64)
    raster = rasterize(vertices, triangles[[0, 1]][:, [0, 2, 1]], grid, grid)  # both front-facing
    covered = raster.triangle >= 0
    # Inside, and up to 1.5 pixels outside by the nearest triangle's extrapolated map.
    assert covered[:6, :6].all() and not covered[6:].any() and not covered[:, 6:].any()
    assert not raster.folds.any(), "a shared edge is not a fold"
    points = np.einsum("hwk,hwkc->hwc", raster.weights, vertices[triangles[:, [0, 2, 1]]][raster.triangle])
    np.testing.assert_allclose(points[covered], np.stack(np.meshgrid(grid, grid), -1)[covered], atol=1e-12)
    back = rasterize(vertices, triangles[:1], grid, grid)
    assert not (back.triangle >= 0).any(), "back-facing triangles are not drawn"
    folded = rasterize(vertices, np.array([[0, 1, 2], [0, 1, 2]]), grid, grid)
    assert folded.folds[1, 3] and not folded.folds[0, 0]


def test_generated_ground_truth_reproduces_the_frames(tmp_path):
    root = SyntheticFacesSpec().prepare(_config(), tmp_path)
    sample = SyntheticFacesSpec().test_set(root, _config())[0]
    frames = (sample["frames"].double() + 1) * 127.5
    flows, visibility = sample["flows_gt"].double(), sample["visibility_gt"].bool()
    assert flows.shape == (8, 2, 2, 48, 48) and visibility.shape == (8, 2, 1, 48, 48)
    assert flows[0].abs().max() < 1e-4, "frame 0 is its own previous frame and the reference"
    for k, picks in ((0, [0, *range(7)]), (1, [0] * 8)):
        warped = flow_warp(frames[picks], flows[:, k])
        mask = visibility[:, k].expand(-1, 3, -1, -1)
        assert 0.75 < mask.float().mean() < 1
        error = (warped - frames).abs()
        assert error[mask].mean() < 3, "the warp reproduces the target where the truth says it is visible"
        assert error[mask].mean() < 0.25 * error[~mask].mean()


def test_training_clips_use_their_first_frame_as_the_reference(tmp_path):
    cfg = _config()
    root = SyntheticFacesSpec().prepare(cfg, tmp_path)
    train = SyntheticFacesSpec().train_set(root, cfg, seed=0)
    video, start = train.clip(3)
    assert start == 3
    clip = train[3]
    correspondence = VideoCorrespondence.load(video.correspondence)
    for t in range(4):
        for k, source in enumerate((start + max(t - 1, 0), start)):
            flow, visible = correspondence.pair(start + t, source)
            assert torch.equal(clip["flows_gt"][t, k], torch.from_numpy(flow.astype(np.float32)))
            assert torch.equal(clip["visibility_gt"][t, k, 0], torch.from_numpy(visible.astype(np.float32)))


def test_ground_truth_is_resized_with_the_frames():
    _, _, _, correspondence = _video(2, lambda s: dataclasses.replace(s, centre=(s.centre[0] - 2, s.centre[1] + 1)))
    flow, visible = correspondence.pair(1, 0, size=(96, 128))  # written 64 x 64
    ys, xs = np.nonzero(visible)
    written = correspondence.labels[1][
        np.rint((ys + 0.5) * 64 / 96 - 0.5).astype(int), np.rint((xs + 0.5) * 64 / 128 - 0.5).astype(int)
    ]
    head = (written != BACKDROP) & (written != MESH_LAYERS.index("neck") + 1)
    assert head.sum() > 1000
    np.testing.assert_allclose(flow[0, ys[head], xs[head]], 2 * 128 / 64, atol=1e-9)
    np.testing.assert_allclose(flow[1, ys[head], xs[head]], -1 * 96 / 64, atol=1e-9)


def test_real_datasets_have_no_ground_truth_and_bad_files_are_named(tmp_path):
    for phase in ("train", "test"):
        for t in range(4):
            (tmp_path / f"{phase}_data" / "v").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(tmp_path / f"{phase}_data" / "v" / f"{t}.png")
            (tmp_path / f"{phase}_keypoints" / "v").mkdir(parents=True, exist_ok=True)
            write_landmarks(tmp_path / f"{phase}_keypoints" / "v" / f"{t}.txt", np.full((68, 2), 16))
    cfg = _config(resolution=(32, 32), name="faceforensics", root=str(tmp_path))
    sample = FaceForensicsSpec().test_set(tmp_path, cfg)[0]
    assert "flows_gt" not in sample and "visibility_gt" not in sample
    broken = correspondence_path(tmp_path, "test", "v")
    broken.parent.mkdir()
    np.savez(broken, labels=np.zeros((4, 32, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match=f"{broken}: missing array 'layer_names'"):
        FaceForensicsSpec().test_set(tmp_path, cfg)[0]
    assert any(p.where == str(broken) for p in FaceForensicsSpec().check(tmp_path, cfg))


def test_correspondence_files_round_trip_byte_identically(tmp_path: Path):
    _, _, _, correspondence = _video(3, lambda s: dataclasses.replace(s, yaw=s.yaw + 0.2))
    correspondence.save(tmp_path / "a.npz")
    correspondence.save(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    loaded = VideoCorrespondence.load(tmp_path / "a.npz")
    assert loaded.layer_names == MESH_LAYERS and np.array_equal(loaded.labels, correspondence.labels)
    for a, b in zip(loaded.vertices, correspondence.vertices):
        assert np.array_equal(a, b)
    assert [np.array_equal(a, b) for a, b in zip(loaded.pair(1, 0), correspondence.pair(1, 0))] == [True, True]


# The frames and ground truth of a tiny set, pinned: the same bytes on every machine (same library
# versions).  Regenerate the value only with a generator version bump.
PINNED_DIGEST = "f04c515ef0e7b8ddaaff16c14524a3e8829c84fff27610df5cf3fcd92d16c51f"


def test_frames_and_ground_truth_match_the_pinned_digest(tmp_path):
    write_dataset(FaceGeneratorParams((32, 32), 1, 1, 4, 5), tmp_path)
    digest = hashlib.sha256()
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file() and path.suffix in (".png", ".npz"):
            digest.update(str(path.relative_to(tmp_path)).encode())
            digest.update(path.read_bytes())
    assert digest.hexdigest() == PINNED_DIGEST
