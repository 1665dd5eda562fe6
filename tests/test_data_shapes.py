"""Procedural chairs/cars: determinism, format round trip, camera geometry, caching, failure modes."""

from __future__ import annotations

import hashlib
import json
import math

import h5py
import numpy as np
import pytest
import trimesh

from bench.config import ConfigError, DatasetConfig, TaskConfig
from bench.data import shapes
from bench.data.m2nv_layout import AZIMUTH_BINS, ELEVATIONS, GRID, parse_view_id
from bench.data.shapes import (
    BUILDERS,
    HALF_FOV_TAN,
    ShapeModel,
    ShapesParams,
    cast_rays,
    ensure_dataset,
    grid_camera,
    model_name,
    model_rng,
    random_texture,
    render_views,
    view_rays,
    write_dataset,
)

TINY = ShapesParams(category="chair", resolution=16, models_train=2, models_test=1, seed=3)


def silhouette(image: np.ndarray) -> np.ndarray:
    return (image != shapes.BACKGROUND).any(axis=-1)


def mismatch(a: np.ndarray, b: np.ndarray) -> int:
    """Number of pixels where two masks disagree."""
    return int((a != b).sum())


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path):
    write_dataset(TINY, tmp_path / "a")
    write_dataset(TINY, tmp_path / "b")
    for name in ("data_chair.hdf5", "id_chair_train.txt", "id_chair_test.txt", "name_chair_test.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    other = ShapesParams(**{**TINY.__dict__, "seed": 4})
    write_dataset(other, tmp_path / "c")
    with h5py.File(tmp_path / "a" / "data_chair.hdf5") as a, h5py.File(tmp_path / "c" / "data_chair.hdf5") as c:
        first_a, first_c = sorted(a)[0], sorted(c)[0]
        assert first_a != first_c  # model ids depend on the seed
        assert not np.array_equal(a[first_a]["image"][()], c[first_c]["image"][()])


def test_files_follow_the_m2nv_layout_and_poses_match_the_rendering_camera(tmp_path):
    write_dataset(TINY, tmp_path)
    train_ids = (tmp_path / "id_chair_train.txt").read_text().split()
    test_ids = (tmp_path / "id_chair_test.txt").read_text().split()
    names = (tmp_path / "name_chair_test.txt").read_text().split()
    assert len(train_ids) == 2 * 54 and len(test_ids) == 54
    assert names == [model_name(TINY, "test", 0)]
    assert {parse_view_id(v)[1:] for v in test_ids} == {(a, e) for a in AZIMUTH_BINS for e in ELEVATIONS}
    model = BUILDERS["chair"](model_rng(TINY, "train", 1))
    name = model_name(TINY, "train", 1)
    with h5py.File(tmp_path / "data_chair.hdf5") as h5:
        assert len(h5) == 3 * 54
        for azimuth, elevation in [(0, 0), (14, 10), (34, 20)]:
            group = h5[f"{name}_{azimuth}_{elevation}"]
            assert group["image"].dtype == np.uint8 and group["image"].shape == (16, 16, 3)
            assert group["pose"][()].tolist() == [azimuth, elevation]
            images, depths = render_views(model, [(azimuth * 10.0, float(elevation))], 16)
            np.testing.assert_array_equal(group["image"][()], images[0])
            np.testing.assert_array_equal(group["depth"][()], depths[0])
            assert group["depth"].dtype == np.float32 and ((depths[0] > 0) == silhouette(images[0])).all()


@pytest.mark.parametrize("index", range(4))
def test_symmetric_chair_views_at_plus_and_minus_azimuth_are_mirror_images(index):
    model = BUILDERS["chair"](np.random.default_rng(index))
    for azimuth, elevation in [(40, 0), (100, 10), (160, 20)]:
        left, right = render_views(model, [(azimuth, elevation), (-azimuth, elevation)], 48)[0]
        assert silhouette(left).sum() > 100
        assert mismatch(silhouette(left), silhouette(right)[:, ::-1]) <= 2  # float32 ties at edges


def test_orbiting_camera_equals_rotating_the_object():
    model = BUILDERS["car"](np.random.default_rng(7))
    for azimuth in (60.0, 200.0):
        turned = model.mesh.copy()
        turned.apply_transform(trimesh.transformations.rotation_matrix(np.radians(-azimuth), [0, 1, 0]))
        turned_model = ShapeModel(turned, model.face_part, model.textures)
        orbit = render_views(model, [(azimuth, 10.0)], 48)[0][0]
        fixed = render_views(turned_model, [(0.0, 10.0)], 48)[0][0]
        assert mismatch(silhouette(orbit), silhouette(fixed)) <= 2
        assert mismatch(silhouette(orbit), silhouette(render_views(model, [(0.0, 10.0)], 48)[0][0])) > 50


def test_views_carry_texture_detail_and_white_background():
    for category in ("chair", "car"):
        image = render_views(BUILDERS[category](np.random.default_rng(1)), [(40.0, 20.0)], 64)[0][0]
        assert (image[0, 0] == 255).all() and (image[-1, -1] == 255).all()
        foreground = image[silhouette(image)]
        assert len(np.unique(foreground, axis=0)) > 20  # patterns and shading, not flat parts


@pytest.mark.parametrize("kind", shapes.TEXTURE_KINDS)
def test_every_texture_kind_shows_both_of_its_colours(kind):
    texture = random_texture(np.random.default_rng(0), (kind,))
    colors = texture.colors(np.random.default_rng(1).uniform(-1, 1, size=(4000, 3)))
    distance_to_base = np.abs(colors - texture.base).max(axis=1)
    distance_to_accent = np.abs(colors - texture.accent).max(axis=1)
    assert (distance_to_base < 0.05).mean() > 0.1 and (distance_to_accent < 0.05).mean() > 0.05


def test_objects_fit_the_unit_sphere_and_views_are_not_cropped():
    for category, builder in BUILDERS.items():
        for seed in range(5):
            model = builder(np.random.default_rng(seed))
            assert np.linalg.norm(model.mesh.vertices, axis=1).max() == pytest.approx(1.0)
            assert len(model.face_part) == len(model.mesh.faces)
            for image in render_views(model, [(a * 10.0, 20.0) for a in range(0, 36, 6)], 32)[0]:
                mask = silhouette(image)
                border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
                assert not border.any(), category


def test_ensure_dataset_caches_by_parameters_and_reports_progress(tmp_path):
    calls = []
    first = ensure_dataset(TINY, tmp_path, lambda *args: calls.append(args))
    assert first.parent == tmp_path / "synthetic" and first.name == f"shapes-{TINY.digest()}"
    assert json.loads((first / "params.json").read_text())["seed"] == 3
    assert calls[-1] == ("rendering chair models", 3, 3) and [c[1] for c in calls] == [1, 2, 3]
    stamp = (first / "data_chair.hdf5").stat().st_mtime_ns
    calls.clear()
    assert ensure_dataset(TINY, tmp_path, lambda *args: calls.append(args)) == first
    assert calls == [] and (first / "data_chair.hdf5").stat().st_mtime_ns == stamp
    second = ensure_dataset(ShapesParams(**{**TINY.__dict__, "models_test": 2}), tmp_path)
    assert second != first and len((second / "name_chair_test.txt").read_text().split()) == 2
    assert not [p for p in (tmp_path / "synthetic").iterdir() if ".tmp-" in p.name]


def test_an_interrupted_generation_leaves_no_dataset_behind(tmp_path):
    def interrupt(description, done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ensure_dataset(TINY, tmp_path, interrupt)
    assert not [p for p in (tmp_path / "synthetic").iterdir() if not p.name.endswith(".lock")]
    assert (ensure_dataset(TINY, tmp_path) / "params.json").is_file()


def test_params_from_config_defaults_and_errors():
    cfg = TaskConfig(dataset=DatasetConfig(resolution=[48, 48], synthetic={"category": "car"}))
    assert ShapesParams.from_config(cfg) == ShapesParams(category="car", resolution=48)
    cfg.dataset.synthetic = {"category": "car", "resolution": [32, 32], "seed": 2}
    assert ShapesParams.from_config(cfg).resolution == 32
    for bad, key in [
        ({"category": "table"}, "dataset.synthetic.category"),
        ({"resolution": [32, 48]}, "dataset.synthetic.resolution"),
        ({"models_train": 0}, "dataset.synthetic.models_train"),
        ({"modles_test": 3}, "modles_test"),
    ]:
        cfg.dataset.synthetic = bad
        with pytest.raises(ConfigError, match=key):
            ShapesParams.from_config(cfg)


def test_float64_caster_agrees_with_embree_an_independent_float32_ray_caster():
    pytest.importorskip("embreex")
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    for category in ("chair", "car"):
        model = BUILDERS[category](np.random.default_rng(11))
        views = [(0.0, 0.0), (130.0, 10.0), (280.0, 20.0)]
        origins, directions, _ = view_rays(tuple(views), 32)
        faces, distances = cast_rays(model, views, 32)
        reference = RayMeshIntersector(model.mesh).intersects_first(origins, directions)
        assert (faces >= 0).sum() > 300
        assert int((faces != reference).sum()) <= 3  # float32 embree vs float64 at shared edges
        hit = faces >= 0
        location = origins[hit] + distances[hit, None] * directions[hit]
        on_plane = np.einsum("ij,ij->i", location - model.mesh.vertices[model.mesh.faces[faces[hit], 0]],
                             model.mesh.face_normals[faces[hit]])
        assert np.abs(on_plane).max() < 1e-9  # the ray length lands on the hit face's plane


def test_vertices_lie_on_the_snapping_grid_so_blas_rounding_cannot_reach_the_renders():
    model = BUILDERS["chair"](np.random.default_rng(2))
    scaled = model.mesh.vertices * shapes.VERTEX_GRID
    np.testing.assert_array_equal(scaled, np.round(scaled))


def test_camera_trigonometry_is_far_from_its_rounding_boundaries():
    """The cameras round libm's sin/cos/tan to 12 decimals so that a last-bit difference between
    CPUs cannot change them: that holds if no value lies within a few ulps of a rounding boundary."""
    angles = [math.radians(a * 10.0) for a, _ in GRID] + [math.radians(e) for e in ELEVATIONS]
    values = [f(x) for x in angles for f in (math.sin, math.cos)] + [math.tan(math.radians(shapes.FOV_DEGREES) / 2)]
    for value in values:
        boundary_distance = abs(abs(value * 1e12) % 1.0 - 0.5) / 1e12
        assert boundary_distance > 64 * math.ulp(value), value
    assert HALF_FOV_TAN == round(math.tan(math.radians(20.0)), 12)


# Digest of the images and depth maps of TINY's three models (54 views each, 16 px).  It pins the
# data bit for bit: a change in the drawing, the ray caster or the camera changes it (then bump
# GENERATOR_VERSION and update the digest), and so would a CPU whose arithmetic gives other data.
TINY_DIGEST = "365994a89c29e25a"


def test_a_small_generated_set_has_the_pinned_digest():
    digest = hashlib.sha256()
    for split, count in (("train", TINY.models_train), ("test", TINY.models_test)):
        for index in range(count):
            images, depths = render_views(BUILDERS["chair"](model_rng(TINY, split, index)),
                                          [grid_camera(a, e) for a, e in GRID], TINY.resolution)
            digest.update(images.tobytes())
            digest.update(depths.tobytes())
    assert digest.hexdigest()[:16] == TINY_DIGEST


def test_the_protocol_fingerprint_of_a_dataset_hashes_file_contents(tmp_path):
    from bench.cell import dataset_fingerprint

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "data.bin").write_bytes(b"\x00\x01\x02")
    assert dataset_fingerprint(tmp_path / "a") == dataset_fingerprint(tmp_path / "b")
    (tmp_path / "b" / "data.bin").write_bytes(b"\x00\x01\x03")  # same size, one byte changed
    assert dataset_fingerprint(tmp_path / "a") != dataset_fingerprint(tmp_path / "b")
