"""Tiny datasets with exactly known ground-truth transport: targets are whole-pixel shifts of the source.

``shifted_pairs`` (pose_transfer layout) and ``shifted_faces`` (face_animation layout) are registered
in DATASETS on import; a task runs on them with ``--set dataset.name=shifted_pairs`` (or
``shifted_faces``).  Target pixel (x, y) shows the source at (x + dx, y + dy): the backward flow is
the constant (dx, dy) and the visibility is 1 where that point lies inside the source.  Pixels
without a source point are mid grey.  The structure maps carry the shift as constant channels.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from bench.data.base import DatasetSpec
from bench.registry import DATASETS

MAX_SHIFT = 3


def texture(height: int, width: int, seed: int) -> torch.Tensor:
    """A smooth random colour image in [-1, 1] (3, H, W)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(2, height // 4), max(2, width // 4), generator=generator)
    return torch.nn.functional.interpolate(coarse, (height, width), mode="bilinear", align_corners=False)[0] * 2 - 1


def shifted(image: torch.Tensor, dx: int, dy: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(target, flow (2, H, W), visibility (1, H, W)) of ``image`` seen shifted by (dx, dy)."""
    _, height, width = image.shape
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    sx, sy = xs + dx, ys + dy
    inside = (sx >= 0) & (sx < width) & (sy >= 0) & (sy < height)
    target = torch.zeros_like(image)
    target[:, inside] = image[:, sy[inside], sx[inside]]
    flow = torch.stack([torch.full((height, width), float(dx)), torch.full((height, width), float(dy))])
    return target, flow, inside[None].float()


def shift_code(dx: int, dy: int, height: int, width: int) -> torch.Tensor:
    return torch.tensor([dx, dy], dtype=torch.float32).view(2, 1, 1).expand(2, height, width) / MAX_SHIFT


def pair_shift(index: int) -> tuple[int, int]:
    return (index % (2 * MAX_SHIFT + 1)) - MAX_SHIFT, ((index // 3) % (2 * MAX_SHIFT + 1)) - MAX_SHIFT


class ShiftedPairs(Dataset):
    def __init__(self, size: int, resolution: tuple[int, int], offset: int, truth: bool = True) -> None:
        self.size, self.resolution, self.offset, self.truth = size, resolution, offset, truth

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        height, width = self.resolution
        source = texture(height, width, self.offset + index)
        dx, dy = pair_shift(self.offset + index)
        target, flow, visibility = shifted(source, dx, dy)
        sample = {
            "source_image": source,
            "source_structure": shift_code(0, 0, height, width),
            "target_image": target,
            "target_structure": shift_code(dx, dy, height, width),
            "name": f"pair{self.offset + index}",
        }
        if self.truth:
            sample.update(flow_gt=flow, visibility_gt=visibility)
        return sample


class ShiftedVideos(Dataset):
    """Videos whose frame t is frame 0 shifted by (t * step, 0), step 1 or -1."""

    def __init__(self, size: int, length: int, resolution: tuple[int, int], offset: int) -> None:
        self.size, self.length, self.resolution, self.offset = size, length, resolution, offset

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        height, width = self.resolution
        first = texture(height, width, self.offset + index)
        step = 1 if (self.offset + index) % 2 == 0 else -1
        frames, structures, flows, visibility = [], [], [], []
        for t in range(self.length):
            frame, reference_flow, reference_visible = shifted(first, t * step, 0)
            # frame t - 1 shows that point one step further: inside it where x + step is in the image
            _, previous_flow, one_step_inside = shifted(first, step if t else 0, 0)
            previous_visible = one_step_inside * reference_visible
            frames.append(frame)
            structures.append(shift_code(t * step, 0, height, width))
            flows.append(torch.stack([previous_flow, reference_flow]))
            visibility.append(torch.stack([previous_visible, reference_visible]))
        return {
            "frames": torch.stack(frames),
            "structures": torch.stack(structures),
            "name": f"video{self.offset + index}",
            "frame_names": [f"{t:04d}" for t in range(self.length)],
            "flows_gt": torch.stack(flows),
            "visibility_gt": torch.stack(visibility),
        }


class _Spec(DatasetSpec):
    synthetic = True

    def prepare(self, cfg, data_root: Path, progress=None) -> Path:
        root = Path(data_root) / self.name
        root.mkdir(parents=True, exist_ok=True)
        (root / "README").write_text("generated on the fly by tests/shifted_data.py\n")
        return root

    def check(self, root, cfg) -> list:
        return []

    def reference_images(self, root, cfg, split):
        from bench.cell import to_uint8

        data = self.train_set(root, cfg, 0) if split == "train" else self.test_set(root, cfg)
        return [to_uint8(self._image(data[i]))[0] for i in range(len(data))]


class ShiftedPairsSpec(_Spec):
    name = "shifted_pairs"
    kind = "pose_transfer"
    truth = True

    def train_set(self, root, cfg, seed):
        return ShiftedPairs(8, tuple(cfg.dataset.resolution), 0, self.truth)

    def test_set(self, root, cfg):
        return ShiftedPairs(4, tuple(cfg.dataset.resolution), 100, self.truth)

    @staticmethod
    def _image(sample):
        return sample["target_image"][None]


class UnmatchedPairsSpec(ShiftedPairsSpec):
    """The same pairs without ground truth, as a real dataset would be."""

    name = "unmatched_pairs"
    truth = False


class ShiftedFacesSpec(_Spec):
    name = "shifted_faces"
    kind = "face_animation"

    def train_set(self, root, cfg, seed):
        return ShiftedVideos(2, cfg.train.clip_length, tuple(cfg.dataset.resolution), 0)

    def test_set(self, root, cfg):
        return ShiftedVideos(1, 4, tuple(cfg.dataset.resolution), 100)

    @staticmethod
    def _image(sample):
        return sample["frames"][:1]


for _spec in (ShiftedPairsSpec(), UnmatchedPairsSpec(), ShiftedFacesSpec()):
    if _spec.name not in DATASETS:
        DATASETS.add(_spec.name, _spec)
