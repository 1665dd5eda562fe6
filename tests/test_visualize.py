"""Pictures of flows, masks, structures and images: colour-wheel invariants, layouts, PNG round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2hsv

from bench.visualize import (
    flow_to_rgb,
    image_to_uint8,
    make_grid,
    mask_to_rgb,
    save_gif,
    save_png,
    structure_to_rgb,
)


def _uniform_flow(dx: float, dy: float, size: int = 4) -> np.ndarray:
    flow = np.zeros((2, size, size))
    flow[0], flow[1] = dx, dy
    return flow


def test_zero_flow_is_white():
    out = flow_to_rgb(torch.zeros(2, 5, 7))
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    assert (out == 255).all()


@pytest.mark.parametrize("angle", np.linspace(0, 2 * np.pi, 8, endpoint=False))
def test_direction_sets_the_hue(angle):
    rgb = flow_to_rgb(_uniform_flow(np.cos(angle), np.sin(angle)))
    hue, saturation, value = rgb2hsv(rgb)[0, 0]
    assert hue == pytest.approx(angle / (2 * np.pi), abs=0.01)
    assert saturation == pytest.approx(1.0, abs=0.01) and value == pytest.approx(1.0, abs=0.01)


def test_opposite_directions_have_opposite_hues_and_magnitude_sets_saturation():
    flow = np.zeros((2, 1, 4))
    flow[0] = [3.0, -3.0, 1.5, 0.0]
    rgb = flow_to_rgb(flow)
    hsv = rgb2hsv(rgb)[0]
    assert abs(hsv[0, 0] - hsv[1, 0]) == pytest.approx(0.5, abs=0.01)
    assert hsv[0, 1] == pytest.approx(1.0, abs=0.01)  # the largest magnitude saturates
    assert hsv[2, 1] == pytest.approx(0.5, abs=0.01)  # half the magnitude: half the saturation
    assert (rgb[0, 3] == 255).all()
    fixed = rgb2hsv(flow_to_rgb(flow, max_magnitude=6.0))[0]
    assert fixed[0, 1] == pytest.approx(0.5, abs=0.01)  # a fixed scale makes fields comparable


def test_flow_rejects_bad_input():
    with pytest.raises(ValueError, match=r"expected shape \(2, h, w\)"):
        flow_to_rgb(np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match="NaN"):
        flow_to_rgb(np.full((2, 2, 2), np.nan))


def test_image_to_uint8_maps_minus_one_to_black_and_one_to_white():
    image = torch.stack([torch.full((2, 3), -1.0), torch.zeros(2, 3), torch.ones(2, 3)])
    out = image_to_uint8(image)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [0, 128, 255]
    with pytest.raises(ValueError, match=r"expected shape \(3, H, W\)"):
        image_to_uint8(torch.zeros(2, 4, 4))


def test_mask_is_grey_in_proportion():
    out = mask_to_rgb(torch.tensor([[[0.0, 0.5, 1.0]]]))
    assert out.tolist() == [[[0, 0, 0], [128, 128, 128], [255, 255, 255]]]


def test_heatmaps_get_distinct_colours_and_are_max_composited():
    heat = np.zeros((3, 4, 4))
    heat[0, 0, 0] = 1.0
    heat[1, 3, 3] = 1.0
    heat[2, 0, 0] = 0.5
    out = structure_to_rgb(heat)
    assert tuple(out[3, 3]) == (0, 255, 0)  # 3 channels: red, green, blue
    assert tuple(out[0, 0]) == (255, 0, 128)  # component-wise max of red x 1 and blue x 0.5
    assert (out[1, 1] == 0).all()  # background is black


def test_single_channel_edges_are_grey():
    edges = np.zeros((1, 3, 3))
    edges[0, 1] = 1.0
    out = structure_to_rgb(edges)
    assert (out[1] == 255).all() and (out[0] == 0).all()


def test_onehot_view_code_is_drawn_as_a_bar_with_the_active_cell_coloured():
    code = np.zeros((21, 12, 84))  # 4 px per cell
    code[5] = 1.0
    out = structure_to_rgb(code)
    middle = out[6]
    active = middle[5 * 4 : 5 * 4 + 3]
    inactive = middle[0:3]
    assert (active == active[0]).all() and len(set(active[0].tolist())) > 1  # one saturated colour
    assert (inactive == 217).all()  # light grey cells
    assert (out[0] == 255).all()  # white above the bar


def test_save_png_round_trip_and_type_check(tmp_path):
    array = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    path = save_png(array, tmp_path / "a" / "b.png")
    assert np.array_equal(np.asarray(Image.open(path)), array)
    with pytest.raises(TypeError, match="uint8"):
        save_png(array.astype(np.float32), tmp_path / "c.png")


def test_save_gif_writes_every_frame(tmp_path):
    frames = [np.full((4, 4, 3), value, dtype=np.uint8) for value in (0, 128, 255)]
    with Image.open(save_gif(frames, tmp_path / "v.gif")) as gif:
        assert gif.n_frames == 3


def test_make_grid_places_scaled_images():
    red = np.zeros((4, 6, 3), dtype=np.uint8)
    red[..., 0] = 255
    grid = make_grid([[red, red], [red, red]], labels=["a", "b"], row_labels=["x", "y"], scale=2, padding=4)
    label_width = 8 + 7 * 1
    assert grid.size == (label_width + 2 * (12 + 4) + 4, 14 + 2 * (8 + 4) + 4)
    left, top = label_width + 4, 14 + 4
    assert grid.getpixel((left, top)) == (255, 0, 0) and grid.getpixel((left + 11, top + 7)) == (255, 0, 0)
    assert grid.getpixel((left + 12, top)) == (255, 255, 255)  # padding between cells
    with pytest.raises(ValueError, match="column labels"):
        make_grid([[red]], labels=["a", "b"])


def test_face16_shows_part_labels_under_white_edges():
    face = np.ones((16, 6, 6))  # distance maps are 1 far from every edge: they must not wash out the picture
    face[0] = 0.0
    face[0, 2, :] = 1.0  # an edge row
    face[15] = 0.0
    face[15, 3:, :] = 1 / 6  # label 1 (face) in the lower half
    out = structure_to_rgb(face)
    assert (out[0] == 0).all()  # background label, no edge: black
    assert (out[2] == 255).all()  # edges white
    face_colour = out[4, 0]
    assert 0 < face_colour.max() < 128  # a dim colour for the face part
    assert (out[4] == face_colour).all()
