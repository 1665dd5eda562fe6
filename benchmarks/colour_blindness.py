"""What the original's InstanceNorm on the raw image costs before any training (issue #22).

GFLA's encoders start with InstanceNorm on the raw image, so a generator sees each frame only up to
a per-channel affine map (``bench/models/blocks.py``).  Unless a model infers each image's channel
means and spreads from its content, the best it can do is paint them at the training set's average.
This script measures that price on a task's data: every test image is normalised per channel and
re-coloured with the mean per-channel mean and standard deviation of the training images; its L1
(images in [0, 1]) to the original is the error left to a model that knows everything about the image
except its colour statistics.  Compare it with the L1 of the trained rows (``oracle_flow``) and of the
floors: when it is of their size, the colours decide the table, not the transport.

Run:  PYTHONPATH=. python benchmarks/colour_blindness.py [--task pose_synthetic] [--profile quick]
      [--set dataset.synthetic.backdrop=session] [--images 600]
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.data import Dataset

from task_data import add_task_arguments, prepare_task


def spread_indices(length: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``range(length)`` (all of them when there are fewer), so
    that a video dataset's pick covers every video rather than the first few."""
    if length <= count:
        return list(range(length))
    return torch.linspace(0, length - 1, count).round().long().tolist()


def load_spread(images: Dataset, count: int) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1]: ``count`` images spread over the dataset."""
    return torch.stack([images[i].float() / 255 for i in spread_indices(len(images), count)])


def channel_statistics(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(means, stds), each (N, 3): the per-image, per-channel statistics of (N, 3, H, W) images."""
    return images.mean(dim=(2, 3)), images.std(dim=(2, 3))


def recoloured_l1(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> float:
    """Mean L1 between each image and itself re-coloured with the channel statistics (mean, std)."""
    own_mean, own_std = channel_statistics(images)
    normalised = (images - own_mean[..., None, None]) / own_std.clamp_min(1e-5)[..., None, None]
    recoloured = (normalised * std[:, None, None] + mean[:, None, None]).clamp(0, 1)
    return float((recoloured - images).abs().mean(dim=(1, 2, 3)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_task_arguments(parser)
    parser.add_argument("--images", type=int, default=600, help="images per split (spread over the split)")
    args = parser.parse_args()
    cfg, spec, root = prepare_task(args)
    train_means, train_stds = channel_statistics(load_spread(spec.reference_images(root, cfg, "train"), args.images))
    test = load_spread(spec.reference_images(root, cfg, "test"), args.images)
    l1 = recoloured_l1(test, train_means.mean(0), train_stds.mean(0))
    spread = train_means.std(0)
    print(f"task {args.task}, profile {args.profile}, overrides {args.set or 'none'}; data {root}")
    print(f"train images {len(train_means)}: per-channel mean {train_means.mean(0).numpy().round(3)}, "
          f"its spread across images (std) {spread.numpy().round(3)}")
    print(f"test images {len(test)}: L1 of the colour-blind re-colouring {l1:.4f}")


if __name__ == "__main__":
    main()
