"""The three phases of one benchmark cell: data, training (with checkpoints), evaluation.

Generated test images are written to ``<work_dir>/cells/<key>/outputs`` in the protocol's file
format and read back before the metrics are computed, so every number can be recomputed from the
saved files; the transport metrics (``epe``, ``occlusion``), which need the warper's plans and the
ground truth, are scored per image while generating (``bench.metrics.transport.TransportStats``,
handed to the metrics in ``EvalContext.transport``).  Samples for the report (source, structure,
output, ground truth, flows, masks) go to ``<results_dir>/samples/<key>/``.

Under torchrun (see :mod:`bench.distributed`) rank 0 prepares the data first, every rank trains on
its shard of each batch and generates its shard of the test set, and rank 0 alone writes the
checkpoints, gathers the generated images, saves them and computes the metrics.  An out-of-memory
error is re-raised as :class:`OutOfMemoryError` naming the batch size in use and how to lower it.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Subset

from bench import distributed
from bench.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bench.config import VIDEO_KINDS, TaskConfig
from bench.metrics.base import EvalContext, MetricResult
from bench.records import PerImageValues
from bench.registry import DATASETS


class CellFailure(Exception):
    """An error inside a cell, tagged with the phase it happened in."""

    def __init__(self, phase: str, error: BaseException) -> None:
        super().__init__(f"{phase}: {type(error).__name__}: {error}")
        self.phase = phase
        self.error = error


class OutOfMemoryError(RuntimeError):
    """The device ran out of memory; the message names the batch-size setting in use and how to lower it."""


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
    )


def out_of_memory(error: BaseException, setting: str, batch_size: int) -> OutOfMemoryError:
    """An OutOfMemoryError for ``error`` that says which batch size to lower and how."""
    per_rank = f", {batch_size // distributed.world_size()} per rank" if distributed.world_size() > 1 else ""
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # give the memory back to the cells that follow
    return OutOfMemoryError(
        f"out of memory with {setting}={batch_size}{per_rank}; lower it, e.g. "
        f"--set {setting}={max(1, batch_size // 2)} ({first_line})"
    )


@contextmanager
def phase(name: str, batch_setting: tuple[str, int] | None = None) -> Iterator[None]:
    """Tag any error raised inside with the phase name (KeyboardInterrupt passes through).

    ``batch_setting`` (config key, value) turns an out-of-memory error into :class:`OutOfMemoryError`.
    """
    try:
        yield
    except CellFailure:
        raise
    except Exception as exc:
        if batch_setting is not None and is_out_of_memory(exc):
            raise CellFailure(name, out_of_memory(exc, *batch_setting)) from exc
        raise CellFailure(name, exc) from exc


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def dataset_fingerprint(root: Path) -> str:
    """A content hash of a dataset directory: relative paths and the sha256 of each file's bytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        with open(path, "rb") as handle:
            content = hashlib.file_digest(handle, "sha256").hexdigest()
        digest.update(f"{path.relative_to(root)}\0{content}\n".encode())
    return digest.hexdigest()[:16]


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images -> uint8 (N, 3, H, W), as GFLA's tensor2im ((x + 1) / 2 * 255)."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def execute_cell(
    cfg: TaskConfig,
    method: str,
    seed: int,
    key: str,
    options: Any,
    device: torch.device,
    progress: Any = None,
) -> dict[str, Any]:
    """Run the data, train and eval phases; return the record fields they produce."""
    timings: dict[str, float] = {}
    cell_dir = Path(options.work_dir) / "cells" / key
    seed_everything(seed)

    tick = time.perf_counter()
    with phase("data"):
        spec, root, fingerprint = prepare_data(cfg, options, progress)
        train_set = spec.train_set(root, cfg, seed)
        test_set = spec.test_set(root, cfg)
    timings["data_s"] = round(time.perf_counter() - tick, 3)

    tick = time.perf_counter()
    with phase("train", ("train.batch_size", cfg.train.batch_size)):
        trainer, resumed_from = train(cfg, method, seed, train_set, device, cell_dir, progress,
                                      force=options.force, curve_set=test_set)
    timings["train_s"] = round(time.perf_counter() - tick, 3)
    if trainer.curve is not None:
        timings["curve_s"] = round(trainer.curve.seconds, 3)  # part of train_s, this process only

    tick = time.perf_counter()
    with phase("eval", ("eval.batch_size", cfg.eval.batch_size)):
        evaluation = evaluate_cell(cfg, trainer, spec, root, test_set, key, options, device, progress)
    timings["eval_s"] = round(time.perf_counter() - tick, 3)
    if evaluation is None:  # not rank 0: rank 0 computed the metrics and writes the record
        return {"timings": timings}

    return {
        "protocol": cell_protocol(cfg, evaluation, trainer.vgg.describe(), fingerprint),
        "metrics": {name: result.to_dict() for name, result in evaluation["metrics"].items()},
        "per_image": per_image_values(evaluation),
        "timings": timings,
        "artifacts": evaluation["artifacts"],
        "training": {"resumed_from": resumed_from},
        "curves": None if trainer.curve is None else trainer.curve.to_record(),
    }


def per_image_values(evaluation: dict[str, Any]) -> PerImageValues:
    """The per-image values of an evaluation's metrics, for the record's side file."""
    return PerImageValues(
        {name: r.per_image for name, r in evaluation["metrics"].items() if r.per_image is not None},
        evaluation["image_names"],
        evaluation["image_groups"],
    )


def prepare_data(cfg: TaskConfig, options: Any, progress: Any = None) -> tuple[Any, Path, str]:
    """The task's dataset spec, its prepared and validated directory and that directory's fingerprint."""
    spec = DATASETS.get(cfg.dataset.name)
    if spec.kind != cfg.kind:
        raise ValueError(f"dataset {cfg.dataset.name!r} is a {spec.kind} dataset but task kind is {cfg.kind!r}")
    with distributed.main_first():  # the other ranks then find rank 0's prepared data
        root = spec.prepare(cfg, Path(options.data_root), progress)
    spec.validate(root, cfg)
    return spec, root, dataset_fingerprint(root)


def cell_protocol(cfg: TaskConfig, evaluation: dict[str, Any], perceptual_backbone: dict[str, str],
                  fingerprint: str) -> dict[str, Any]:
    """The evaluation protocol of a record: what its numbers can be compared under."""
    return {
        "resolution": list(cfg.dataset.resolution),
        "resize_filter": cfg.eval.resize_filter,
        "output_format": cfg.eval.output_format,
        "fid_reference": cfg.eval.fid_reference,
        "fid_reference_size": evaluation["reference_size"],
        "fid_inception": cfg.eval.fid_inception,
        "lpips_net": cfg.eval.lpips_net,
        "lpips_version": cfg.eval.lpips_version,
        "ssim_variant": cfg.eval.ssim_variant,
        "perceptual_backbone": "{network}:{weights}".format(**perceptual_backbone),
        "num_generated": evaluation["num_generated"],
        "checkpoint_selection": cfg.eval.checkpoint_selection,
        "dataset": cfg.dataset.name,
        "dataset_hash": fingerprint,
    }


# ---------------------------------------------------------------------------------------------
# Training with checkpoints
# ---------------------------------------------------------------------------------------------
def train(cfg: TaskConfig, method: str, seed: int, train_set, device, cell_dir: Path, progress, force: bool = False,
          curve_set=None):
    """Build the trainer, resume from the cell's checkpoint if there is one, train to the end.

    ``curve_set`` (the test split) feeds the learning curve (:mod:`bench.curves`).
    Returns the trainer and where it resumed (``{"stage", "step"}`` of the checkpoint, or None).
    """
    from bench.training import Trainer

    sample = train_set[0]
    structure_key = "structures" if cfg.kind in VIDEO_KINDS else "source_structure"
    structure_channels = sample[structure_key].shape[-3]
    num_sources = 2 if cfg.kind in VIDEO_KINDS else 1
    trainer = Trainer(cfg, method, train_set, device, seed, num_sources=num_sources,
                      structure_channels=structure_channels, curve_set=curve_set)
    checkpoint_path = cell_dir / "checkpoint.pt"
    if force and distributed.is_main():  # --force retrains from scratch
        checkpoint_path.unlink(missing_ok=True)
    distributed.barrier()  # no rank may load a checkpoint that rank 0 is deleting
    resumed_from = None
    if checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path, map_location=device)
        try:
            trainer.load_state_dict(state)
        except (RuntimeError, ValueError, KeyError) as exc:  # e.g. written by a version with other shapes
            raise CheckpointError(
                f"{checkpoint_path}: does not fit this cell's model ({exc}); --force retrains the cell"
            ) from exc
        resumed_from = {"stage": state["stage"], "step": state["step"]}
    if distributed.any_rank(torch.tensor([distributed.broadcast_from_main(resumed_from) != resumed_from])).item():
        raise RuntimeError(
            f"the ranks found different checkpoints at {checkpoint_path} (rank {distributed.rank()}: "
            f"{resumed_from}); every node must see the same --work-dir"
        )
    total = (cfg.train.stage1_steps if trainer.two_stage else 0) + cfg.train.stage2_steps
    every = max(1, cfg.train.checkpoint_every)

    def on_step(stage: int, step: int, losses: dict[str, float]) -> None:
        done = (cfg.train.stage1_steps if (stage == 2 and trainer.two_stage) else 0) + step
        if progress is not None:
            progress(f"train {method}", done, total)
        stage_end = step == (cfg.train.stage1_steps if stage == 1 else cfg.train.stage2_steps)
        if (step % every == 0 or stage_end) and distributed.is_main():
            save_checkpoint(trainer.state_dict(), checkpoint_path)

    trainer.run(on_step=on_step)
    return trainer, resumed_from


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------
def _save_image(array: np.ndarray, path: Path, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=95) if fmt in ("jpg", "jpeg") else Image.fromarray(array).save(path)


def _write_outputs(images: torch.Tensor, names: list[str], out_dir: Path, fmt: str) -> torch.Tensor:
    """Save uint8 images and read them back (what the metrics see is what is on disk)."""
    back = []
    for image, name in zip(images, names):
        path = out_dir / f"{name}.{fmt}"
        _save_image(image.permute(1, 2, 0).numpy(), path, fmt)
        back.append(torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1))
    return torch.stack(back)


def _reference_subset(reference, size: int | None):
    if size is None or size >= len(reference):
        return reference
    indices = np.linspace(0, len(reference) - 1, num=size).round().astype(int).tolist()
    return Subset(reference, indices)


def evaluated_indices(cfg: TaskConfig, test_set) -> list[int]:
    """The test items a cell generates and scores: all videos; pairs up to ``eval.num_images``."""
    limit = len(test_set)
    if cfg.kind not in VIDEO_KINDS and cfg.eval.num_images is not None:
        limit = min(cfg.eval.num_images, limit)
    return list(range(limit))


def evaluate_cell(cfg, trainer, spec, root, test_set, key, options, device, progress) -> dict[str, Any] | None:
    """Generate the test outputs, save them, compute the metrics and the report samples.

    Each rank generates its shard of the test set; rank 0 gathers the uint8 images, writes them and
    computes the metrics on the full set.  The other ranks return None.
    """
    from bench.metrics.transport import TransportStats
    from bench.samples import write_pair_samples, write_video_samples
    from bench.training import video_ground_truth
    from bench.warp import TransportTruth

    out_dir = Path(options.work_dir) / "cells" / key / "outputs"
    samples_dir = Path(options.results_dir) / "samples" / key
    indices = distributed.shard(evaluated_indices(cfg, test_set))
    generated: list[tuple[torch.Tensor, torch.Tensor, list[str]]] = []  # (fake, real, names), uint8
    transport = TransportStats()  # per-image flow and mask scores, taken while the plans exist
    if cfg.kind in VIDEO_KINDS:
        videos = []
        for done, index in enumerate(indices, start=1):
            video = test_set[index]
            images, plan = trainer.generate_video(
                video["frames"], video["structures"], ground_truth=video_ground_truth(video),
                on_plan=lambda t, plan, video=video: transport.add(plan, TransportTruth.of_frame(video, t), 1),
            )
            names = [f"{video['name']}_{stem}" for stem in video["frame_names"]]
            generated.append((to_uint8(images), to_uint8(video["frames"]), names))
            if len(videos) < 2:
                videos.append((video, images, plan))
            if progress is not None:
                progress("generate", done, len(indices))
    else:
        loader = DataLoader(Subset(test_set, indices), batch_size=cfg.eval.batch_size, shuffle=False)
        done, sample_batches = 0, []
        for batch in loader:
            images, plan = trainer.generate_with_plan(batch)
            transport.add(plan, TransportTruth.of_pairs(batch), len(images))
            generated.append((to_uint8(images), to_uint8(batch["target_image"]), list(batch["name"])))
            if sum(len(b["name"]) for b, _, _ in sample_batches) < cfg.eval.report_samples:
                sample_batches.append((batch, images, plan))
            done += len(images)
            if progress is not None:
                progress("generate", done, len(indices))
    shards = distributed.gather_to_main(generated)
    transport_shards = distributed.gather_to_main(transport)
    if shards is None:
        return None
    if cfg.kind in VIDEO_KINDS:
        artifacts = write_video_samples(videos, samples_dir, options.results_dir)
    else:
        artifacts = write_pair_samples(sample_batches, cfg.eval.report_samples, samples_dir, options.results_dir)
    parts = [part for rank_parts in shards for part in rank_parts]
    transport = TransportStats.merged(transport_shards)
    return {**score_outputs(cfg, spec, root, parts, out_dir, options, device, transport), "artifacts": artifacts}


def score_outputs(cfg: TaskConfig, spec, root: Path, parts: list[tuple[torch.Tensor, torch.Tensor, list[str]]],
                  out_dir: Path, options, device, transport=None) -> dict[str, Any]:
    """Write the uint8 (fake, real, names) outputs, read them back and compute the task's metrics."""
    from bench.metrics.evaluate import evaluate

    fmt = cfg.eval.output_format
    fakes = [_write_outputs(fake, names, out_dir, fmt) for fake, _, names in parts]
    reals = [real for _, real, _ in parts]
    fake = torch.cat(fakes) if fakes else torch.zeros(0, 3, *cfg.dataset.resolution, dtype=torch.uint8)
    real = torch.cat(reals) if reals else fake.clone()

    reference = _reference_subset(spec.reference_images(root, cfg, cfg.eval.fid_reference),
                                  cfg.eval.fid_reference_size)
    from bench.config import to_dict

    ctx = EvalContext(
        reference=reference,
        reference_name=f"{cfg.dataset.name}/{cfg.eval.fid_reference}",
        cache_dir=Path(options.data_root) / "cache",
        device=device,
        batch_size=cfg.eval.batch_size,
        options={**to_dict(cfg.eval), "weights_dir": str(options.weights_dir) if options.weights_dir else None},
        transport=transport,
    )
    metrics: dict[str, MetricResult] = evaluate(fake, real, list(cfg.eval.metrics), ctx)
    return {
        "metrics": metrics,
        "num_generated": int(fake.shape[0]),
        "image_names": tuple(name for _, _, names in parts for name in names),
        # the frames of one video are not independent: a bootstrap resamples whole videos
        "image_groups": tuple(f"video {i}" for i, (_, _, names) in enumerate(parts) for _ in names)
        if cfg.kind in VIDEO_KINDS else (),
        "reference_size": len(reference),
    }
