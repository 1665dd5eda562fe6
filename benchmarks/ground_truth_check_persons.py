"""Check of the synthetic persons' ground truth: the source warped by the true flow reproduces the target.

For every test pair of a generated persons dataset, the written source image is warped bilinearly
by the stored flow (``bench.ops.flow_warp``) and compared with the written target on the pixels
the stored visibility marks visible.  Prints the mean absolute error (0-255 levels) and PSNR there,
overall and split by what explains the remainder:

* ``backdrop``: flow 0 on the shared backdrop (error only where the figure's antialiased rim or
  LANCZOS ringing reaches it);
* ``figure, same shade`` / ``figure, other shade``: body pixels whose part is drawn with the same
  colour factor in both images, or not (a side view's far limbs are drawn at 0.75, ears at 0.9 or
  0.92);
* ``interior`` / ``part edges``: same-shade body pixels whose 3x3 neighbourhood in the target is one
  part, or not (edges are blends of two parts in the image, never exact).

Run:  PYTHONPATH=. python benchmarks/ground_truth_check_persons.py [--identities N] [--data-root DIR]
(default: the quick profile's parameters of tasks/pose_synthetic.yaml, generated if not cached).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.data import persons
from bench.data.person_correspondence import BACKGROUND, ground_truth_paths
from bench.data.pose import read_pairs
from bench.ops.flow_warp import flow_warp

NAME = re.compile(r"^[a-z]{2}(\d{5})-p(\d+)-")


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


def _classes(params: persons.PersonsParams, split: str, source: str, target: str, flow: np.ndarray) -> dict:
    """Masks (H, W) of the pixel classes of one pair, from the re-rendered drawings' recordings."""
    (index, source_pose), (_, target_pose) = (map(int, NAME.match(name).groups()) for name in (source, target))
    session = persons.sample_session(params, split, index)
    recordings = [persons.render_example(params, split, index, k, session)[3] for k in (source_pose, target_pose)]
    height, width = params.resolution
    target_top = recordings[1].grid(height, width)
    ys, xs = np.mgrid[0:height, 0:width]
    points = np.stack([(xs + flow[0]).ravel(), (ys + flow[1]).ravel()], axis=1)
    source_top = recordings[0].topmost(points).reshape(height, width)
    shades = [np.array([part.shade for _, part in r.shapes] + [1.0]) for r in recordings]  # [-1]: backdrop
    same_shade = shades[1][target_top] == shades[0][source_top]
    padded = np.pad(target_top, 1, mode="edge")
    uniform = np.ones_like(same_shade)
    for dy in range(3):
        for dx in range(3):
            uniform &= padded[dy : dy + height, dx : dx + width] == target_top
    figure = target_top != BACKGROUND
    return {
        "backdrop": ~figure,
        "figure, same shade": figure & same_shade,
        "figure, other shade": figure & ~same_shade,
        "interior (same shade)": figure & same_shade & uniform,
        "part edges (same shade)": figure & same_shade & ~uniform,
    }


def check_persons(root: Path, split: str = "test") -> dict[str, dict[str, float]]:
    """MAE (0-255) and PSNR of the GT-warped source against the target on visible pixels, per class
    (see the module docstring), over every pair of ``split`` in the generated dataset at ``root``."""
    params_json = json.loads((root / persons.PARAMS_FILE).read_text())
    params_json.pop("generator_version")
    params = persons.PersonsParams(**params_json)
    pairs, problems = read_pairs(root / f"{persons.FILE_PREFIX}-pairs-{split}.csv")
    if problems:
        raise ValueError("; ".join(map(str, problems)))
    flow_path, visibility_path = ground_truth_paths(root, persons.FILE_PREFIX, split)
    flows, visibilities = np.load(flow_path, mmap_mode="r"), np.load(visibility_path, mmap_mode="r")
    errors: dict[str, list[np.ndarray]] = {}
    visible_share = []
    for row, pair in enumerate(pairs):
        flow, visible = np.asarray(flows[row]), np.asarray(visibilities[row]) > 0
        source = torch.from_numpy(_pixels(root / split / pair.source)).permute(2, 0, 1)[None]
        warped = flow_warp(source, torch.from_numpy(flow.astype(np.float64))[None])[0].permute(1, 2, 0).numpy()
        error = np.abs(warped - _pixels(root / split / pair.target)).mean(axis=2)
        visible_share.append(visible.mean())
        classes = {"all visible": np.ones_like(visible), **_classes(params, split, pair.source, pair.target, flow)}
        for name, mask in classes.items():
            errors.setdefault(name, []).append(error[mask & visible])
    out = {}
    for name, parts in errors.items():
        values = np.concatenate(parts)
        mse = float((values**2).mean()) if len(values) else float("nan")
        out[name] = {
            "pixels": int(len(values)),
            "mae": float(values.mean()) if len(values) else float("nan"),
            "psnr": float(10 * np.log10(255**2 / mse)) if mse > 0 else float("inf"),
        }
    out["all visible"]["visible_share"] = float(np.mean(visible_share))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--identities", type=int, default=20, help="test identities (quick profile: 20)")
    parser.add_argument("--data-root", type=Path, default=None, help="cache root (default: a temporary one)")
    args = parser.parse_args()
    params = persons.PersonsParams((64, 64), identities_train=1, identities_test=args.identities, ground_truth="test")
    with tempfile.TemporaryDirectory() as scratch:
        root = persons.ensure_dataset(params, args.data_root or Path(scratch))
        results = check_persons(root)
    print(f"visible share of target pixels: {results['all visible']['visible_share']:.3f}")
    print(f"{'pixels':<26} {'count':>8} {'MAE (0-255)':>12} {'PSNR dB':>8}")
    for name, row in results.items():
        print(f"{name:<26} {row['pixels']:>8} {row['mae']:>12.2f} {row['psnr']:>8.2f}")


if __name__ == "__main__":
    main()
