"""Draw datasets/samples/persons.png: synthetic person pairs as the pose-transfer loader serves them.

Run from the repository root:  python datasets/samples/persons_sheet.py
Uses the quick profile of tasks/pose_synthetic.yaml (64x64, heatmap sigma 1.5) and its test split.
Each pair shows: source image with its keypoints, target image with its keypoints, and the target's
18 heatmaps summed with one colour per joint (the structure the networks receive).  Tiles are
enlarged 3x with nearest-neighbour so the real pixels stay visible; skeletons are drawn over the
enlarged tiles (missing joints are simply not drawn).
"""

from __future__ import annotations

import colorsys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from bench.config import load_task_config
from bench.data.heatmaps import COCO18_LIMBS, MISSING, NUM_KEYPOINTS
from bench.registry import DATASETS

PAIRS = 8
PER_ROW = 2
ZOOM = 3
GAP = 8
JOINT_COLOURS = [tuple(round(c * 255) for c in colorsys.hsv_to_rgb(k / NUM_KEYPOINTS, 0.9, 1.0)) for k in range(18)]


def image_tile(image: torch.Tensor, keypoints: torch.Tensor) -> Image.Image:
    pixels = ((image.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    tile = Image.fromarray(pixels)
    tile = tile.resize((tile.width * ZOOM, tile.height * ZOOM), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(tile)
    points = [None if y == MISSING else ((x + 0.5) * ZOOM, (y + 0.5) * ZOOM) for y, x in keypoints.tolist()]
    for a, b in COCO18_LIMBS:
        if points[a] is not None and points[b] is not None:
            draw.line([points[a], points[b]], fill=(255, 255, 255), width=1)
    for k, point in enumerate(points):
        if point is not None:
            x, y = point
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=JOINT_COLOURS[k], outline=(0, 0, 0))
    return tile


def heatmap_tile(maps: torch.Tensor) -> Image.Image:
    colours = torch.tensor(JOINT_COLOURS, dtype=torch.float32)  # (18, 3)
    rgb = torch.einsum("khw,kc->hwc", maps, colours).clamp(0, 255).round().byte().numpy()
    tile = Image.fromarray(rgb)
    return tile.resize((tile.width * ZOOM, tile.height * ZOOM), Image.Resampling.NEAREST)


def main() -> None:
    cfg = load_task_config(Path("tasks/pose_synthetic.yaml"), "quick")
    cfg.dataset.synthetic = {**cfg.dataset.synthetic, "identities_train": 1}  # test identities do not depend on it
    spec = DATASETS.get(cfg.dataset.name)
    with tempfile.TemporaryDirectory() as data_root:
        root = spec.prepare(cfg, Path(data_root))
        test = spec.test_set(root, cfg)
        # One pair per identity (pairs are listed identity by identity).
        per_identity = len(test) // cfg.dataset.synthetic["identities_test"]
        samples = [test[i * per_identity] for i in range(PAIRS)]
    height, width = (v * ZOOM for v in cfg.dataset.resolution)
    pair_width = 3 * width + 2 * 2
    sheet = Image.new("RGB", (PER_ROW * pair_width + (PER_ROW + 1) * GAP, (PAIRS // PER_ROW) * (height + GAP) + GAP),
                      "white")
    for i, sample in enumerate(samples):
        x = GAP + (i % PER_ROW) * (pair_width + GAP)
        y = GAP + (i // PER_ROW) * (height + GAP)
        sheet.paste(image_tile(sample["source_image"], sample["source_keypoints"]), (x, y))
        sheet.paste(image_tile(sample["target_image"], sample["target_keypoints"]), (x + width + 2, y))
        sheet.paste(heatmap_tile(sample["target_structure"]), (x + 2 * width + 4, y))
    out = Path(__file__).with_name("persons.png")
    sheet.save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
