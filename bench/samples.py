"""Report samples of one cell: PNGs of source, structure, output, ground truth, flows and masks.

Where the data has ground-truth transport, a sample also shows the ground-truth flow and
visibility (``flow_gt``, ``visibility_gt``), and the warper's flows are drawn upsampled to the image
in image pixels with the ground truth's largest magnitude as the colour scale, so a flow and the
truth read on one key.  Files go to ``<results_dir>/samples/<cell key>/``; the record lists them relative to the results
directory, which is what the HTML report embeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.ops import upsample_flow
from bench.visualize import flow_to_rgb, image_to_uint8, mask_to_rgb, save_gif, save_png, structure_to_rgb

REFERENCE_SOURCE = 1  # video plans hold the sources (previous frame, reference frame)


def _relative(path: Path, results_dir: Path) -> str:
    return Path(path).resolve().relative_to(Path(results_dir).resolve()).as_posix()


def _per_scale(plan: dict[str, Any], key: str, index: int, source: int) -> list[torch.Tensor]:
    """Source ``source``'s map of sample ``index`` at every scale, for plan key flows or masks."""
    return [per_source[source][index] for per_source in plan.get(key) or []]


def _plan_pngs(
    plan: dict[str, Any],
    index: int,
    source: int,
    stem: Path,
    results_dir: Path,
    truth: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Flow and mask PNGs of one sample at every scale (empty lists for warpers without them), and
    with ``truth`` (the sample's (2, H, W) flow and (1, H, W) visibility) the ground truth's PNGs."""
    entry: dict[str, Any] = {}
    magnitude = None
    if truth is not None:
        flow_gt, visibility = truth
        lengths = torch.linalg.vector_norm(flow_gt.float(), dim=0)
        visible = visibility[0] >= 0.5
        magnitude = float((lengths[visible] if visible.any() else lengths).max()) or None  # 0: no motion
        entry["flow_gt"] = _relative(save_png(flow_to_rgb(flow_gt, magnitude), f"{stem}_flow_gt.png"), results_dir)
        entry["visibility_gt"] = _relative(save_png(mask_to_rgb(visibility), f"{stem}_visibility_gt.png"),
                                           results_dir)

    def drawn(flow: torch.Tensor) -> np.ndarray:
        if truth is None:
            return flow_to_rgb(flow)
        return flow_to_rgb(upsample_flow(flow[None].float(), tuple(truth[0].shape[-2:]))[0], magnitude)

    return entry | {
        "flows": [
            _relative(save_png(drawn(flow), f"{stem}_flow_s{scale}.png"), results_dir)
            for scale, flow in enumerate(_per_scale(plan, "flows", index, source))
        ],
        "masks": [
            _relative(save_png(mask_to_rgb(mask), f"{stem}_mask_s{scale}.png"), results_dir)
            for scale, mask in enumerate(_per_scale(plan, "masks", index, source))
        ],
    }


def write_pair_samples(
    batches: list[tuple[dict[str, Any], torch.Tensor, dict[str, Any]]],
    count: int,
    samples_dir: Path,
    results_dir: Path,
) -> dict[str, Any]:
    """Write up to ``count`` samples from (batch, generated images, plan) triples."""
    samples: list[dict[str, Any]] = []
    for batch, images, plan in batches:
        for index in range(len(images)):
            if len(samples) >= count:
                break
            stem = samples_dir / f"{len(samples)}"
            entry = {
                name: _relative(save_png(array, f"{stem}_{name}.png"), results_dir)
                for name, array in (
                    ("source", image_to_uint8(batch["source_image"][index])),
                    ("structure", structure_to_rgb(batch["target_structure"][index])),
                    ("output", image_to_uint8(images[index])),
                    ("target", image_to_uint8(batch["target_image"][index])),
                )
            }
            truth = (batch["flow_gt"][index], batch["visibility_gt"][index]) if "flow_gt" in batch else None
            samples.append(entry | _plan_pngs(plan, index, 0, stem, results_dir, truth))
    return {"samples": samples}


def write_video_samples(
    videos: list[tuple[dict[str, Any], torch.Tensor, dict[str, Any]]],
    samples_dir: Path,
    results_dir: Path,
    fps: float = 15.0,
) -> dict[str, Any]:
    """A GIF per video (ground truth | structure | generated, side by side) and a still sample of
    the last frame, with its flows and masks from the reference frame (the still's source); the
    record points at the first GIF (the report embeds it)."""
    gifs, samples = [], []
    for number, (video, generated, plan) in enumerate(videos):
        frames = [
            np.concatenate(
                [image_to_uint8(real), structure_to_rgb(structure), image_to_uint8(fake)], axis=1
            )
            for real, structure, fake in zip(video["frames"], video["structures"], generated)
        ]
        gifs.append(_relative(save_gif(frames, samples_dir / f"video_{number}.gif", fps=fps), results_dir))
        last = len(generated) - 1
        stem = samples_dir / f"{number}"
        truth = None
        if "flows_gt" in video:
            truth = (video["flows_gt"][last, REFERENCE_SOURCE], video["visibility_gt"][last, REFERENCE_SOURCE])
        samples.append({
            name: _relative(save_png(array, f"{stem}_{name}.png"), results_dir)
            for name, array in (
                ("source", image_to_uint8(video["frames"][0])),
                ("structure", structure_to_rgb(video["structures"][last])),
                ("output", image_to_uint8(generated[last])),
                ("target", image_to_uint8(video["frames"][last])),
            )
        } | _plan_pngs(plan, 0, REFERENCE_SOURCE, stem, results_dir, truth))
    return {"samples": samples, "video": gifs[0]} if gifs else {"samples": samples}
