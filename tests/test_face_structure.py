"""The 16-channel face structure encoding (bench/data/face_structure.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.data.face_structure import (
    PART_EDGES,
    face_structure,
    part_edge_masks,
    part_label_map,
    with_upper_face,
)
from bench.data.faces import face_template

SIZE = 64


def _landmarks(mouth_open: float = 0.0) -> np.ndarray:
    """Integer landmarks of the template face, centred in a SIZE x SIZE image."""
    shape = face_template()
    shape[[55, 56, 57, 58, 59, 65, 66, 67], 1] += mouth_open
    return np.rint(shape[:, :2] * 22 + [SIZE / 2, SIZE / 2 - 6]).astype(np.int64)


def _taxicab_distance(edge: np.ndarray) -> np.ndarray:
    """Brute-force L1 distance of every pixel to the nearest True pixel of ``edge``."""
    rows, cols = np.nonzero(edge)
    grid_r, grid_c = np.mgrid[: edge.shape[0], : edge.shape[1]]
    return np.min(np.abs(grid_r[..., None] - rows) + np.abs(grid_c[..., None] - cols), axis=-1)


def test_shapes_and_range():
    landmarks = _landmarks()
    full = face_structure(landmarks, SIZE, SIZE, mode="face16")
    edges = face_structure(landmarks, SIZE, SIZE, mode="edges")
    assert full.shape == (16, SIZE, SIZE) and full.dtype == torch.float32
    assert edges.shape == (1, SIZE, SIZE)
    assert float(full.min()) >= 0.0 and float(full.max()) <= 1.0
    assert torch.equal(edges[0], full[0]), "the edges mode is channel 0 of face16"
    assert len(PART_EDGES) == 14


def test_edge_map_passes_through_every_part_landmark():
    landmarks = _landmarks(mouth_open=0.15)
    edge_map = face_structure(landmarks, SIZE, SIZE)[0].numpy()
    points = np.rint(with_upper_face(landmarks)).astype(int)
    on_edges = sorted({i for chain in PART_EDGES for i in chain})
    assert 27 not in on_edges and 30 not in on_edges  # the bridge is drawn 28 -> 31 and 35 -> 28, as vid2vid
    for index in on_edges:
        x, y = points[index]
        assert edge_map[y, x] == 1.0, f"landmark {index} at ({x}, {y}) is not on the edge map"
    assert set(np.unique(edge_map)) == {0.0, 1.0}


def test_edges_are_8_connected_curves():
    masks = part_edge_masks(with_upper_face(_landmarks()).astype(float), SIZE, SIZE)
    from scipy.ndimage import label

    for channel, mask in enumerate(masks):
        _, components = label(mask, structure=np.ones((3, 3)))
        assert components == 1, f"part edge {channel} is broken into {components} pieces"


def test_upper_face_points_mirror_the_jaw_at_two_thirds():
    landmarks = _landmarks()
    points = with_upper_face(landmarks)
    assert points.shape == (83, 2)
    baseline = (landmarks[0, 1] + landmarks[16, 1]) / 2
    for k, jaw_index in enumerate(range(1, 16)):
        assert points[68 + k, 0] == landmarks[jaw_index, 0]
        assert points[68 + k, 1] == pytest.approx(baseline - (landmarks[jaw_index, 1] - baseline) * 2 / 3)


def test_distance_maps_match_a_brute_force_taxicab_distance():
    landmarks = _landmarks(mouth_open=0.15)
    structure = face_structure(landmarks, SIZE, SIZE).numpy()
    masks = part_edge_masks(with_upper_face(landmarks), SIZE, SIZE)
    for channel, mask in enumerate(masks):
        expected = np.minimum(_taxicab_distance(mask) // 3, 255) / 255
        np.testing.assert_allclose(structure[1 + channel], expected, atol=1e-7)
        assert np.all(structure[1 + channel][mask] == 0)


def test_distance_channels_follow_the_part_order():
    landmarks = _landmarks()
    structure = face_structure(landmarks, SIZE, SIZE).numpy()
    right_brow, outer_upper_lip = structure[1 + 1], structure[1 + 10]
    for index in range(17, 22):
        x, y = landmarks[index]
        assert right_brow[y, x] == 0 and outer_upper_lip[y, x] > 0


def test_part_labels_at_polygon_interiors():
    landmarks = _landmarks(mouth_open=0.2)
    labels = np.rint(face_structure(landmarks, SIZE, SIZE)[15].numpy() * 6).astype(int)
    assert np.array_equal(labels, part_label_map(with_upper_face(landmarks), SIZE, SIZE))

    def label_at(point: np.ndarray) -> int:
        x, y = np.rint(point).astype(int)
        return labels[y, x]

    assert labels[0, 0] == 0
    assert label_at((landmarks[3] + landmarks[31]) / 2) == 1  # cheek
    assert label_at(landmarks[[28, 31, 32, 33, 34, 35]].mean(axis=0)) == 3
    assert label_at(landmarks[36:42].mean(axis=0)) == 4
    assert label_at(landmarks[42:48].mean(axis=0)) == 4
    assert label_at(landmarks[[62, 66]].mean(axis=0)) == 6
    assert label_at((landmarks[51] + landmarks[62]) / 2) == 5  # upper lip
    assert label_at(landmarks[19]) == 2, "a flat brow polygon still labels its line"
    closed = _landmarks()
    closed_labels = part_label_map(with_upper_face(closed), SIZE, SIZE)
    assert closed_labels[closed[62, 1], closed[62, 0]] == 6, "a closed inner mouth still labels its line"


def test_canny_edges_only_outside_the_face_parts():
    landmarks = _landmarks()
    frame = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    frame[2:14, 2:14] = 255  # a bright square in the background
    frame[28:36, 24:40] = 255  # and one over the face
    without = face_structure(landmarks, SIZE, SIZE)[0].numpy()
    with_frame = face_structure(landmarks, SIZE, SIZE, frame=frame)[0].numpy()
    added = (with_frame == 1) & (without == 0)
    labels = part_label_map(with_upper_face(landmarks), SIZE, SIZE)
    assert added[:16, :16].sum() >= 20, "the background square's outline is in the edge map"
    assert not added[labels > 0].any(), "no Canny edges inside the face-part region"
    assert np.array_equal(
        face_structure(landmarks, SIZE, SIZE, frame=frame)[1:], face_structure(landmarks, SIZE, SIZE)[1:]
    )


def test_landmarks_outside_the_image_are_clipped():
    landmarks = _landmarks() + [SIZE // 2, 0]  # the right half of the face leaves the image
    structure = face_structure(landmarks, SIZE, SIZE)
    assert structure.shape == (16, SIZE, SIZE)
    assert float(structure.min()) >= 0 and float(structure.max()) <= 1


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        face_structure(np.zeros((67, 2)), SIZE, SIZE)
    with pytest.raises(ValueError, match="unknown face structure mode"):
        face_structure(_landmarks(), SIZE, SIZE, mode="heatmaps")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="frame has shape"):
        face_structure(_landmarks(), SIZE, SIZE, frame=np.zeros((32, 32, 3), dtype=np.uint8))
