"""Report samples of one cell: PNGs of source, structure, output, ground truth, flows and masks.

Files go to ``<results_dir>/samples/<cell key>/``; the record lists them relative to the results
directory, which is what the HTML report embeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.visualize import flow_to_rgb, image_to_uint8, mask_to_rgb, save_gif, save_png, structure_to_rgb

REFERENCE_SOURCE = 1  # video plans hold the sources (previous frame, reference frame)


def _relative(path: Path, results_dir: Path) -> str:
    return Path(path).resolve().relative_to(Path(results_dir).resolve()).as_posix()


def _per_scale(plan: dict[str, Any], key: str, index: int, source: int) -> list[torch.Tensor]:
    """Source ``source``'s map of sample ``index`` at every scale, for plan key flows or masks."""
    return [per_source[source][index] for per_source in plan.get(key) or []]


def _plan_pngs(plan: dict[str, Any], index: int, source: int, stem: Path, results_dir: Path) -> dict[str, list[str]]:
    """Flow and mask PNGs of one sample at every scale (empty lists for warpers without them)."""
    return {
        "flows": [
            _relative(save_png(flow_to_rgb(flow), f"{stem}_flow_s{scale}.png"), results_dir)
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
            samples.append(entry | _plan_pngs(plan, index, 0, stem, results_dir))
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
        samples.append({
            name: _relative(save_png(array, f"{stem}_{name}.png"), results_dir)
            for name, array in (
                ("source", image_to_uint8(video["frames"][0])),
                ("structure", structure_to_rgb(video["structures"][last])),
                ("output", image_to_uint8(generated[last])),
                ("target", image_to_uint8(video["frames"][last])),
            )
        } | _plan_pngs(plan, 0, REFERENCE_SOURCE, stem, results_dir))
    return {"samples": samples, "video": gifs[0]} if gifs else {"samples": samples}
