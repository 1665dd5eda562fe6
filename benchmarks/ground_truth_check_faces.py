"""Check of the synthetic faces' ground-truth correspondence (issue #20): warping each source frame by the
ground-truth flow (bilinear, ``bench.ops.flow_warp``) must reproduce the target frame on the visible pixels.

For both sources of the face task (previous frame, reference = first frame) it prints the mean absolute
error and the PSNR (0-255 scale, over the visible pixels and the three channels), the visible fraction,
and ``lighting``: the part of the error the generator's lighting explains.  The skin is shaded by a
gradient fixed in the image, so a face point that moves changes colour; ``lighting`` is the mean over
the same visible pixels of |skin gradient at the target pixel - at its source position| on the face
layer (0 elsewhere), the error a perfect warp would still make on bare skin.  The rest is antialiasing
at layer edges and thin strokes (glasses, brows) resampled bilinearly.

Run:  OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/ground_truth_check_faces.py [--videos-train 60]
It generates the quick profile's dataset (tasks/face_synthetic.yaml: 64 px, 60 + 6 videos of 40 frames),
prints the generation time, and checks the first 25 frames of each test video (the quick test set).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.config import TaskConfig
from bench.data.face_correspondence import VideoCorrespondence
from bench.data.face_video import SyntheticFacesSpec
from bench.data.faces import FaceGeneratorParams, video_renderer
from bench.ops.flow_warp import flow_warp

SOURCES = ("previous", "reference")


def _config(params: FaceGeneratorParams, test_frames: int | None) -> TaskConfig:
    cfg = TaskConfig(kind="face_animation")
    cfg.dataset.name = "synthetic_faces"
    cfg.dataset.structure = "face_edges"
    cfg.dataset.resolution = list(params.resolution)
    cfg.dataset.synthetic = {k: v for k, v in params.to_dict().items() if k not in ("generator", "version")}
    cfg.dataset.options = {"canny": False, "test_frames": test_frames}
    return cfg


def check_faces(root: Path, test_frames: int | None = None) -> dict[str, dict[str, float]]:
    """Per source (previous, reference): MAE, PSNR, visible fraction and lighting share of the test set
    of the synthetic face dataset at ``root``, read through the loader at the written resolution."""
    params = json.loads((Path(root) / "params.json").read_text())
    params = FaceGeneratorParams(
        tuple(params["resolution"]), *(params[k] for k in ("videos_train", "videos_test", "frames_per_video", "seed"))
    )
    test = SyntheticFacesSpec().test_set(root, _config(params, test_frames))
    totals = {source: np.zeros(5) for source in SOURCES}  # |e| sum, e^2 sum, visible values, pixels, lighting sum
    for index, video in enumerate(test.videos):
        sample = test[index]
        frames = (sample["frames"].double() + 1) * 127.5  # the PNGs' values exactly
        correspondence = VideoCorrespondence.load(video.correspondence)
        face = correspondence.layer_names.index("face") + 1
        renderer, _ = video_renderer(params, "test", int(video.name))
        skin = torch.from_numpy(
            np.asarray(renderer.skin.resize(params.resolution[::-1], Image.LANCZOS)).astype(np.float64)
        )
        skin = skin.permute(2, 0, 1)[None]
        count = frames.shape[0]
        for k, source in enumerate(SOURCES):
            picks = [max(t - 1, 0) for t in range(count)] if source == "previous" else [0] * count
            flows = sample["flows_gt"][:, k].double()
            visible = sample["visibility_gt"][:, k].bool().expand(-1, 3, -1, -1)
            warped = flow_warp(frames[picks], flows)
            error = (warped - frames)[visible]
            on_face = torch.from_numpy(correspondence.labels[:count] == face)[:, None].expand(-1, 3, -1, -1)
            lighting = (flow_warp(skin.expand(count, -1, -1, -1), flows) - skin).abs()[visible & on_face]
            totals[source] += [error.abs().sum(), (error**2).sum(), visible.sum(), visible.numel(), lighting.sum()]
    report = {}
    for source, (absolute, squared, values, pixels, lighting) in totals.items():
        mse = squared / max(values, 1)
        report[source] = {
            "mae": absolute / max(values, 1),
            "psnr": float(10 * np.log10(255**2 / mse)) if mse > 0 else float("inf"),
            "visible": values / pixels,
            "lighting": lighting / max(values, 1),
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos-train", type=int, default=60)
    parser.add_argument("--videos-test", type=int, default=6)
    parser.add_argument("--frames", type=int, default=40, help="frames per video")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--test-frames", type=int, default=25, help="frames checked per test video")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = FaceGeneratorParams((args.resolution,) * 2, args.videos_train, args.videos_test, args.frames, 0)
    with tempfile.TemporaryDirectory() as out:
        tick = time.perf_counter()
        root = SyntheticFacesSpec().prepare(_config(params, args.test_frames), Path(out))
        print(
            f"generation: {time.perf_counter() - tick:.1f} s ({params.videos_train} + {params.videos_test} videos "
            f"x {params.frames_per_video} frames at {args.resolution} px)"
        )
        tick = time.perf_counter()
        report = check_faces(root, args.test_frames)
        print(f"check: {time.perf_counter() - tick:.1f} s")
    print(f"{'source':>10} {'MAE':>6} {'PSNR':>6} {'visible':>8} {'lighting':>9}")
    for source, row in report.items():
        print(f"{source:>10} {row['mae']:>6.2f} {row['psnr']:>6.1f} {row['visible']:>8.3f} {row['lighting']:>9.2f}")


if __name__ == "__main__":
    main()
