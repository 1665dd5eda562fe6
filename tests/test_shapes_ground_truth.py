"""Ground-truth correspondence of the synthetic shapes: exact small cases, the warp check, the loader."""

from __future__ import annotations

import math

import numpy as np
import torch
import trimesh

from bench.config import DatasetConfig, TaskConfig
from bench.data import shapes
from bench.data.shapes import (
    BUILDERS,
    ShapeModel,
    ShapesParams,
    grid_camera,
    project,
    render_views,
    view_correspondence,
    write_dataset,
)
from bench.ops.flow_warp import flow_warp
from bench.registry import DATASETS

RES = 64


def plain_model(*boxes: tuple[tuple[float, float, float], tuple[float, float, float]]) -> ShapeModel:
    """Plain grey boxes given as (extents, centre), unscaled."""
    meshes = [trimesh.creation.box(extents=e, transform=trimesh.transformations.translation_matrix(c))
              for e, c in boxes]
    mesh = trimesh.util.concatenate(meshes)
    face_part = np.repeat(np.arange(len(meshes)), [len(m.faces) for m in meshes])
    return ShapeModel(mesh, face_part, [shapes._plain((0.5, 0.5, 0.5))] * len(meshes))


def correspondence(model: ShapeModel, target: tuple[float, float], source: tuple[float, float]):
    _, depths = render_views(model, [target, source], RES)
    return view_correspondence(depths[0], depths[1], target, source)


def test_a_point_projects_where_the_pinhole_formula_puts_it():
    half = math.tan(math.radians(20.0))
    # front camera (azimuth 0, elevation 0) at (0, 0, 3) looking down -z: x right, y up
    cols, rows = project(np.array([[0.0, 0.0, 0.0], [0.3, -0.2, 0.0], [0.3, 0.0, 1.0]]), 0.0, 0.0, RES)
    np.testing.assert_allclose(cols, [31.5, (0.3 / 3 / half + 1) * 32 - 0.5, (0.3 / 2 / half + 1) * 32 - 0.5])
    np.testing.assert_allclose(rows, [31.5, (1 + 0.2 / 3 / half) * 32 - 0.5, 31.5])
    # from azimuth 90 the camera sits on +x: the object's +z (front) is to the camera's left
    cols, _ = project(np.array([[0.0, 0.0, 0.5]]), 90.0, 0.0, RES)
    np.testing.assert_allclose(cols, [(-0.5 / 3 / half + 1) * 32 - 0.5])


def test_identical_views_give_zero_flow_and_full_visibility_on_the_object_only():
    model = BUILDERS["chair"](np.random.default_rng(0))
    flow, visibility = correspondence(model, (40.0, 10.0), (40.0, 10.0))
    _, depths = render_views(model, [(40.0, 10.0)], RES)
    assert flow.shape == (2, RES, RES) and visibility.shape == (1, RES, RES) and flow.dtype == np.float32
    np.testing.assert_allclose(flow, 0.0, atol=1e-3)
    np.testing.assert_array_equal(visibility[0] == 1, depths[0] > 0)


def test_rotating_a_flat_panel_moves_each_pixel_where_the_closed_form_says():
    """A panel in the plane z = 0 seen from the front, then from azimuth theta: the point (X, Y, 0)
    lies at camera coordinates (X cos theta, Y, X sin theta - 3) of the turned camera."""
    model = plain_model(((1.2, 1.2, 0.02), (0.0, 0.0, -0.01)))
    theta = math.radians(20.0)
    flow, visibility = correspondence(model, (0.0, 0.0), (20.0, 0.0))
    half = math.tan(math.radians(20.0))
    rows, cols = np.nonzero(visibility[0])
    assert len(rows) > 1000
    u = ((cols + 0.5) / RES * 2 - 1) * half
    v = -((rows + 0.5) / RES * 2 - 1) * half
    x, y = 3 * u, 3 * v  # hit points on the panel (ray from (0, 0, 3) along (u, v, -1))
    depth = 3 - x * math.sin(theta)
    np.testing.assert_allclose(flow[0, rows, cols], (x * math.cos(theta) / depth / half + 1) * RES / 2 - 0.5 - cols,
                               atol=1e-3)
    np.testing.assert_allclose(flow[1, rows, cols], (1 - y / depth / half) * RES / 2 - 0.5 - rows, atol=1e-3)


def test_a_panel_hidden_behind_a_block_in_the_source_is_not_visible():
    """A small block 0.5 in front of a panel: seen from azimuth 30 (camera towards +x) it hides
    the panel just left of it (smaller x), which the front view sees."""
    model = plain_model(((1.2, 1.2, 0.02), (0.0, 0.0, -0.01)), ((0.2, 0.2, 0.2), (0.1, 0.0, 0.4)))
    flow, visibility = correspondence(model, (0.0, 0.0), (30.0, 0.0))

    def pixel(x: float, y: float) -> tuple[int, int]:  # front-view pixel of the panel point (x, y, 0)
        col, row = project(np.array([[x, y, 0.0]]), 0.0, 0.0, RES)
        return int(round(row[0])), int(round(col[0]))

    hidden, beside, above = pixel(-0.2, 0.0), pixel(0.45, 0.0), pixel(-0.2, 0.35)
    assert visibility[0][hidden] == 0 and visibility[0][beside] == 1 and visibility[0][above] == 1
    assert flow[0][hidden] != 0  # the flow is defined (the projection) even where it is hidden
    assert visibility[0, 0, 0] == 0 and (flow[:, 0, 0] == 0).all()  # background


def test_warping_the_unshaded_source_by_the_ground_truth_reproduces_the_target():
    """Without view-dependent shading, what remains is resampling the aliased textures bilinearly."""
    model = BUILDERS["car"](np.random.default_rng(3))
    views = [grid_camera(4, 0), grid_camera(8, 0)]
    images, depths = render_views(model, views, RES, lit=False)
    flow, visibility = view_correspondence(depths[1], depths[0], views[1], views[0])
    source = torch.from_numpy(images[0]).permute(2, 0, 1)[None].float() / 255
    target = torch.from_numpy(images[1]).permute(2, 0, 1).float() / 255
    warped = flow_warp(source, torch.from_numpy(flow)[None])[0]
    visible = torch.from_numpy(visibility).bool().expand(3, -1, -1)
    assert visible[0].sum() > 400
    error = (warped - target).abs()[visible]
    assert error.mean() < 0.05 and error.median() < 0.02  # the textures repeat every 2-10 px
    # and the flow is no identity: the target differs from the unwarped source there
    assert (source[0] - target).abs()[visible].mean() > 3 * error.mean()


def test_the_loader_delivers_ground_truth_resized_with_scaled_values(tmp_path):
    params = ShapesParams(category="chair", resolution=32, models_train=1, models_test=1, seed=1)
    write_dataset(params, tmp_path)
    spec = DATASETS.get("synthetic_shapes")

    def config(size: int) -> TaskConfig:
        return TaskConfig(kind="view_synthesis", dataset=DatasetConfig(
            name="synthetic_shapes", resolution=[size, size], structure="view_onehot",
            synthetic={"category": "chair", "resolution": [32, 32], "models_train": 1, "models_test": 1, "seed": 1}))

    native, doubled = spec.test_set(tmp_path, config(32))[3], spec.test_set(tmp_path, config(64))[3]
    assert native["flow_gt"].shape == (2, 32, 32) and native["visibility_gt"].shape == (1, 32, 32)
    assert native["flow_gt"].dtype == torch.float32 and native["visibility_gt"].sum() > 30
    assert spec.train_set(tmp_path, config(32), seed=0)[100]["flow_gt"].shape == (2, 32, 32)
    assert doubled["flow_gt"].shape == (2, 64, 64)
    # a pixel visible at 64 px well inside the object: twice the flow of its 32 px parent
    inner = (doubled["visibility_gt"][0] == 1) & (native["visibility_gt"][0].repeat_interleave(2, 0)
                                                  .repeat_interleave(2, 1) == 1)
    rows, cols = torch.nonzero(inner, as_tuple=True)
    assert len(rows) > 20
    parent = native["flow_gt"][:, rows // 2, cols // 2]
    assert (doubled["flow_gt"][:, rows, cols] - 2 * parent).abs().median() < 0.3
    assert doubled["visibility_gt"].sum() <= 4 * native["visibility_gt"].sum()


def test_real_m2nv_files_without_depth_give_samples_without_ground_truth(tmp_path):
    from tests.test_data_shapenet import SPEC, config, write_fixture

    sample = SPEC.test_set(write_fixture(tmp_path), config())[0]
    assert "flow_gt" not in sample and "visibility_gt" not in sample
