"""Turn tensors into pictures: images, flow fields, occlusion masks, structure maps, grids.

The runner writes every sample of the report through these functions, so the pictures of all
methods share one convention:

* flows use a colour wheel (hue = direction, saturation = magnitude, white = no motion), scaled
  by the largest magnitude in the field unless a fixed ``max_magnitude`` is given;
* masks are grey (white = the warped source is used, black = the decoder's own content);
* structures: Gaussian heatmaps each get a distinct colour and are max-composited on black, a
  single channel (an edge map) is grey, a one-hot view code (channels constant in space) is
  drawn as a bar of cells with the active ones filled, and GFLA's 16-channel face encoding
  (edge map, 14 distance maps, part labels) shows its part labels in dim colours under white edges.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from skimage.color import hsv2rgb

ArrayLike = np.ndarray | torch.Tensor


def _as_numpy(array: ArrayLike, name: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().float().numpy()
    if isinstance(array, np.ndarray):
        return array.astype(np.float64, copy=False)
    raise TypeError(f"{name}: expected a torch.Tensor or numpy array, got {type(array).__name__}")


def _to_uint8(unit: np.ndarray) -> np.ndarray:
    """Values in [0, 1] to uint8, rounding to the nearest level."""
    return np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)


def image_to_uint8(image: ArrayLike) -> np.ndarray:
    """A (3, H, W) or (1, H, W) image in [-1, 1] (the datasets' convention) to (H, W, 3) uint8."""
    data = _as_numpy(image, "image")
    if data.ndim != 3 or data.shape[0] not in (1, 3):
        raise ValueError(f"image: expected shape (3, H, W) or (1, H, W), got {tuple(data.shape)}")
    if data.shape[0] == 1:
        data = np.repeat(data, 3, axis=0)
    return _to_uint8((data.transpose(1, 2, 0) + 1.0) / 2.0)


def flow_to_rgb(flow: ArrayLike, max_magnitude: float | None = None) -> np.ndarray:
    """A (2, h, w) flow (channel 0 = x, pixels) to (h, w, 3) uint8 on a colour wheel.

    Hue encodes the direction (+x red, +y (down) yellow-green, -x cyan, -y violet), saturation the
    magnitude relative to ``max_magnitude`` (default: the field's own maximum), so zero flow is
    white.  Pass a fixed ``max_magnitude`` to compare the strength of several fields.
    """
    data = _as_numpy(flow, "flow")
    if data.ndim != 3 or data.shape[0] != 2:
        raise ValueError(f"flow: expected shape (2, h, w), got {tuple(data.shape)}")
    if not np.isfinite(data).all():
        raise ValueError("flow: contains NaN or infinite values")
    dx, dy = data[0], data[1]
    magnitude = np.hypot(dx, dy)
    scale = float(magnitude.max()) if max_magnitude is None else float(max_magnitude)
    if scale < 0:
        raise ValueError(f"flow: max_magnitude must be >= 0, got {max_magnitude}")
    saturation = np.clip(magnitude / scale, 0.0, 1.0) if scale > 0 else np.zeros_like(magnitude)
    hue = np.mod(np.arctan2(dy, dx) / (2 * np.pi), 1.0)
    hsv = np.stack([hue, saturation, np.ones_like(hue)], axis=-1)
    return _to_uint8(hsv2rgb(hsv))


def mask_to_rgb(mask: ArrayLike) -> np.ndarray:
    """A (1, h, w) or (h, w) occlusion mask in [0, 1] to a grey (h, w, 3) uint8 image."""
    data = _as_numpy(mask, "mask")
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != 2:
        raise ValueError(f"mask: expected shape (1, h, w) or (h, w), got {tuple(data.shape)}")
    grey = _to_uint8(np.clip(data, 0.0, 1.0))
    return np.repeat(grey[:, :, None], 3, axis=2)


def channel_colours(count: int) -> np.ndarray:
    """``count`` distinct, fully saturated colours (evenly spaced hues) as float (count, 3) in [0, 1]."""
    hues = np.arange(count) / max(count, 1)
    hsv = np.stack([hues, np.ones(count), np.ones(count)], axis=-1)
    return hsv2rgb(hsv[None])[0]


def _is_onehot_code(data: np.ndarray) -> bool:
    """True for a tiled one-hot code: every channel constant in space, values 0/1, some channel on."""
    flat = data.reshape(data.shape[0], -1)
    constant = np.all(flat == flat[:, :1])
    binary = np.all((flat == 0) | (flat == 1))
    return bool(constant and binary and flat[:, 0].any() and data.shape[0] > 1)


def _onehot_bar(code: np.ndarray, height: int, width: int) -> np.ndarray:
    """Draw a one-hot code as a bar of ``len(code)`` cells across the middle of a white image."""
    out = np.ones((height, width, 3))
    colours = channel_colours(len(code))
    edges = np.linspace(0, width, len(code) + 1).round().astype(int)
    top, bottom = height // 3, height - height // 3
    for index, (left, right) in enumerate(zip(edges[:-1], edges[1:])):
        if right - left > 2:  # keep a one-pixel gap between cells when there is room for it
            right -= 1
        out[top:bottom, left:right] = colours[index] if code[index] else 0.85
    return _to_uint8(out)


FACE16_CHANNELS = 16
FACE_PART_LABELS = 6  # the face16 label channel holds label / 6, labels 0 (background) .. 6


def _is_face16(data: np.ndarray) -> bool:
    """GFLA's face encoding: 16 channels, the last one part labels k / 6 (heatmaps are never that)."""
    if data.shape[0] != FACE16_CHANNELS:
        return False
    labels = data[-1] * FACE_PART_LABELS
    return bool(np.allclose(labels, np.rint(labels), atol=1e-4) and labels.max() > 0)


def _face16_picture(data: np.ndarray) -> np.ndarray:
    """Part labels in dim distinct colours, the edge map (channel 0) in white on top."""
    labels = np.rint(np.clip(data[-1], 0, 1) * FACE_PART_LABELS).astype(int)
    palette = np.vstack([np.zeros((1, 3)), 0.45 * channel_colours(FACE_PART_LABELS)])
    edges = np.clip(data[0], 0, 1)[:, :, None]
    return _to_uint8(np.maximum(palette[labels], edges))


def structure_to_rgb(structure: ArrayLike) -> np.ndarray:
    """A (S, H, W) structure map in [0, 1] to a (H, W, 3) uint8 picture (see the module docstring)."""
    data = _as_numpy(structure, "structure")
    if data.ndim != 3 or data.shape[0] < 1:
        raise ValueError(f"structure: expected shape (S, H, W) with S >= 1, got {tuple(data.shape)}")
    channels, height, width = data.shape
    if channels == 1:
        return mask_to_rgb(data)
    if _is_onehot_code(data):
        return _onehot_bar(data[:, 0, 0], height, width)
    if _is_face16(data):
        return _face16_picture(data)
    maps = np.clip(data, 0.0, 1.0)
    coloured = maps[:, :, :, None] * channel_colours(channels)[:, None, None, :]
    return _to_uint8(coloured.max(axis=0))


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Write an (H, W, 3) or (H, W) uint8 array as a PNG (parent folders are created)."""
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
        kind = getattr(array, "dtype", type(array).__name__)
        raise TypeError(f"save_png({path}): expected a uint8 numpy array, got {kind}")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"save_png({path}): expected shape (H, W) or (H, W, 3|4), got {array.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")
    return path


def save_gif(frames: Sequence[np.ndarray], path: str | Path, fps: float = 15.0) -> Path:
    """Write (H, W, 3) uint8 frames as a looping GIF (face animation videos in the report)."""
    if not frames:
        raise ValueError(f"save_gif({path}): no frames")
    images = [Image.fromarray(frame) for frame in frames]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    duration_ms = max(int(round(1000.0 / fps)), 20)
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return path


def make_grid(
    rows: Sequence[Sequence[np.ndarray]],
    labels: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    scale: int = 2,
    padding: int = 4,
) -> Image.Image:
    """Lay out rows of (h, w, 3) uint8 images on a white canvas, with column and row labels.

    Cells are enlarged ``scale`` times (nearest neighbour, to keep pixels visible); every cell
    takes the size of the largest image.
    """
    if not rows or not all(rows):
        raise ValueError("make_grid: expected at least one non-empty row of images")
    columns = max(len(row) for row in rows)
    if labels is not None and len(labels) != columns:
        raise ValueError(f"make_grid: {len(labels)} column labels for {columns} columns")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"make_grid: {len(row_labels)} row labels for {len(rows)} rows")
    cell_h = max(image.shape[0] for row in rows for image in row) * scale
    cell_w = max(image.shape[1] for row in rows for image in row) * scale
    font = ImageFont.load_default()
    text_h = 14 if labels else 0
    label_w = 8 + 7 * max((len(text) for text in row_labels), default=0) if row_labels else 0
    width = label_w + columns * (cell_w + padding) + padding
    height = text_h + len(rows) * (cell_h + padding) + padding
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for column, text in enumerate(labels or ()):
        draw.text((label_w + padding + column * (cell_w + padding), 1), text, fill="black", font=font)
    for index, row in enumerate(rows):
        top = text_h + padding + index * (cell_h + padding)
        if row_labels:
            draw.text((2, top + cell_h // 2 - 6), row_labels[index], fill="black", font=font)
        for column, image in enumerate(row):
            tile = Image.fromarray(image).resize(
                (image.shape[1] * scale, image.shape[0] * scale), Image.Resampling.NEAREST
            )
            canvas.paste(tile, (label_w + padding + column * (cell_w + padding), top))
    return canvas
