"""Tiny GFLA configurations and synthetic data shared by test_models, test_losses and test_training."""

from __future__ import annotations

import io

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from bench.config import TaskConfig

SIZE = 32
STRUCTURE_CHANNELS = 2


def tiny_config(kind: str = "pose_transfer") -> TaskConfig:
    """A CPU-sized GFLA config: 32x32 images, attention at layers 3 (4x4, k3) and 2 (8x8, k3)."""
    cfg = TaskConfig(kind=kind)
    cfg.dataset.resolution = [SIZE, SIZE]
    model = cfg.model
    model.ngf, model.img_f, model.num_blocks = 8, 32, 2
    model.flow_ngf, model.flow_img_f, model.flow_layers = 8, 16, 4
    model.kernel_sizes = {2: 3, 3: 3}
    model.ndf, model.d_img_f, model.d_layers = 8, 16, 3
    model.methods = {"gfla": {"attention_hidden": 16}}
    train = cfg.train
    train.batch_size, train.lr = 2, 1e-3
    train.stage1_steps, train.stage2_steps = 3, 3
    train.chunk_length = 2
    train.video_gan_frames = 2  # the video D on one frame difference, so a 2-frame chunk can use it
    return cfg


def texture(generator: torch.Generator) -> torch.Tensor:
    """A smooth random RGB texture in [-1, 1]: (3, SIZE, SIZE)."""
    coarse = torch.randn(1, 3, SIZE // 4, SIZE // 4, generator=generator)
    return torch.tanh(F.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear", align_corners=False))[0]


def blobs(points: list[tuple[float, float]], sigma: float = 3.0) -> torch.Tensor:
    """One Gaussian heatmap channel per (x, y) point: (len(points), SIZE, SIZE) in [0, 1]."""
    ys, xs = torch.meshgrid(torch.arange(SIZE, dtype=torch.float32), torch.arange(SIZE, dtype=torch.float32),
                            indexing="ij")
    return torch.stack([torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2)) for x, y in points])


class ShiftedTextures(Dataset):
    """Pair samples: the target is the source texture rolled by a known (dx, dy); structures mark it."""

    def __init__(self, count: int = 4, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.samples = []
        for index in range(count):
            image = texture(generator)
            dx, dy = index % 3 - 1, index // 3 % 3 - 1
            points = [(10.0, 12.0), (20.0, 18.0)]
            moved = [(x + 2 * dx, y + 2 * dy) for x, y in points]
            self.samples.append({
                "source_image": image,
                "source_structure": blobs(points),
                "target_image": torch.roll(image, shifts=(2 * dy, 2 * dx), dims=(1, 2)),
                "target_structure": blobs(moved),
                "name": f"s{index}_2_t{index}",
            })

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        return self.samples[index]


class DriftingClips(Dataset):
    """Video samples: a texture drifting one pixel per frame, structures marking the drift."""

    def __init__(self, count: int = 2, frames: int = 3, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.samples = []
        for index in range(count):
            image = texture(generator)
            points = [(10.0, 12.0), (20.0, 18.0)]
            self.samples.append({
                "frames": torch.stack([torch.roll(image, shifts=t, dims=2) for t in range(frames)]),
                "structures": torch.stack([blobs([(x + t, y) for x, y in points]) for t in range(frames)]),
                "name": f"video{index}",
            })

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        return self.samples[index]


def collect(trainer, **kwargs) -> list[tuple[int, int, dict[str, float]]]:
    """Run ``trainer`` and return its (stage, step, loss terms) log."""
    log: list[tuple[int, int, dict[str, float]]] = []
    trainer.run(lambda stage, step, values: log.append((stage, step, values)), **kwargs)
    return log


def roundtrip(state: dict) -> dict:
    """Through bytes, as a checkpoint file would (no shared tensors with the live trainer)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)
