"""A small fake results directory for the leaderboard and report tests: records and tiny PNGs.

Records are appended through the real results store (``bench.records.RecordStore``) so they
have exactly the shape and serialisation the runner writes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from bench.records import RecordStore
from bench.visualize import flow_to_rgb, mask_to_rgb, save_gif, save_png

PROTOCOL = {
    "resolution": [16, 16],
    "resize_filter": "none",
    "output_format": "png",
    "fid_reference": "train",
    "fid_reference_size": 80,
    "fid_inception": "pt_inception",
    "lpips_net": "alex",
    "lpips_version": "0.1",
    "ssim_variant": "gaussian",
    "perceptual_backbone": "random",
    "num_generated": 20,
    "checkpoint_selection": "last",
    "dataset": "synthetic_persons",
    "dataset_hash": "d1e2f3",
}


def metric(value: float | None, count: int = 20, unavailable: str | None = None) -> dict[str, Any]:
    return {"value": value, "std": None, "unavailable": unavailable, "count": count, "protocol": {}}


def cell_key(task: str, dataset: str, method: str, seed: int, profile: str, salt: str = "") -> str:
    return hashlib.sha256(f"{task}/{dataset}/{method}/{seed}/{profile}/{salt}".encode()).hexdigest()[:16]


def record(
    method: str = "gfla",
    seed: int = 0,
    metrics: dict[str, dict] | None = None,
    *,
    task: str = "pose_synthetic",
    dataset: str = "synthetic_persons",
    profile: str = "quick",
    status: str = "ok",
    protocol: dict | None = None,
    created: str = "2026-11-25T10:00:00+00:00",
    error: dict | None = None,
    artifacts: dict | None = None,
    salt: str = "",
    config: dict | None = None,
) -> dict[str, Any]:
    """One record in the runner's shape."""
    return {
        "schema": 1,
        "record_id": f"{method}-{seed}-{created}",
        "created": created,
        "cell": {
            "task": task,
            "task_kind": "pose_transfer",
            "dataset": dataset,
            "method": method,
            "seed": seed,
            "profile": profile,
            "key": cell_key(task, dataset, method, seed, profile, salt),
        },
        "status": status,
        "error": error,
        "config": {"kind": "pose_transfer", "eval": {"metrics": sorted((metrics or {}).keys())}, **(config or {})},
        "protocol": dict(PROTOCOL if protocol is None else protocol, dataset=dataset),
        "metrics": metrics or {},
        "timings": {"total_s": 1.0},
        "environment": {
            "python": "3.11.7",
            "libraries": {"torch": "2.14.1", "lpips": "0.1.4"},
            "device": "cpu",
            "host": f"node{seed}",
            "slurm_job_id": None,
        },
        "artifacts": artifacts or {},
    }


def training_config(steps: int, root: str = "/data") -> dict[str, Any]:
    """A config section with a training setup: stage-2 steps, a data root, per-method options."""
    return {
        "dataset": {"name": "synthetic_persons", "root": root},
        "model": {"ngf": 32, "methods": {"nonlocal_attn": {"heads": 2}}},
        "train": {"stage2_steps": steps, "lr": 0.001, "checkpoint_every": steps // 2, "device": "cpu"},
    }


def trained_record(method: str, seed: int, metrics: dict[str, dict], steps: int, root: str = "/data",
                   **kwargs: Any) -> dict[str, Any]:
    """A record trained for ``steps`` stage-2 steps: 140 is the profile's own, others an override."""
    made = record(method, seed, metrics, config=training_config(steps, root), salt=str(steps), **kwargs)
    made["cell"]["overrides"] = [] if steps == 140 else [f"train.stage2_steps={steps}", "eval.batch_size=4"]
    return made


def failure(method: str, seed: int, **kwargs: Any) -> dict[str, Any]:
    error = {
        "type": "RuntimeError",
        "message": "CUDA out of memory | tried 2 GiB",
        "phase": "train",
        "traceback": "Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory",
    }
    return record(method, seed, status="failed", error=error, **kwargs)


def write_samples(results_dir: Path, key: str, count: int = 2, scales: int = 2, video: bool = False) -> dict:
    """Tiny sample PNGs (and optionally a GIF) for one cell; returns its ``artifacts`` dict."""
    rng = np.random.default_rng(int(key[:8], 16))
    folder = Path("samples") / key
    samples = []
    for index in range(count):
        paths = {}
        for role in ("source", "structure", "output", "target"):
            paths[role] = str(folder / f"{index}_{role}.png")
            save_png(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), results_dir / paths[role])
        paths["flows"], paths["masks"] = [], []
        for scale in range(scales):
            flow, mask = str(folder / f"{index}_flow_s{scale}.png"), str(folder / f"{index}_mask_s{scale}.png")
            save_png(flow_to_rgb(rng.normal(size=(2, 8, 8))), results_dir / flow)
            save_png(mask_to_rgb(rng.random((8, 8))), results_dir / mask)
            paths["flows"].append(flow)
            paths["masks"].append(mask)
        samples.append(paths)
    artifacts: dict[str, Any] = {"samples": samples}
    if video:
        artifacts["video"] = str(folder / "video_0.gif")
        frames = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
        save_gif(frames, results_dir / artifacts["video"])
    return artifacts


def write_records(results_dir: Path, records: list[dict]) -> Path:
    store = RecordStore(results_dir)
    for item in records:
        store.append(item)
    return store.path
