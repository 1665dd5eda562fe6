"""What every dataset provides to the runner: preparation, checking, train and test sets.

Samples are dicts of tensors.  Images are float (3, H, W) in [-1, 1] (``ToTensor`` then
``Normalize(0.5, 0.5)`` as GFLA); structures are float (S, H, W) maps in [0, 1] (one-hot view codes
are tiled to (21, H, W)).

* pair tasks (``pose_transfer``, ``view_synthesis``), one sample per (source, target) pair::

      {"source_image", "source_structure", "target_image", "target_structure", "name"}

  ``name`` is the output file stem, ``<source stem>_2_<target stem>`` as GFLA names them.
* video tasks (``face_animation``), one sample per clip (training) or per whole video (test)::

      {"frames": (T, 3, H, W), "structures": (T, S, H, W), "name": video id,
       "frame_names": list of T frame stems}

Ground-truth transport (only where the dataset directory holds it: our generated datasets; real
datasets have none and their samples simply lack these keys):

* pair tasks: ``"flow_gt"`` float32 (2, H, W), the backward flow target -> source in pixels of the
  loaded image (target pixel (x, y) shows the surface point at (x + flow[0], y + flow[1]) of the
  source; channel 0 = x, the convention of the warpers' plans), and ``"visibility_gt"`` float32
  (1, H, W), 1 where that surface point is visible in the source, 0 where it is not or where the
  target pixel has no exact correspondence (those pixels are not scored);
* video tasks: ``"flows_gt"`` float32 (T, 2, 2, H, W) and ``"visibility_gt"`` (T, 2, 1, H, W), for each
  frame t its two sources in the model's order: [:, 0] previous (frame t - 1; frame 0 itself for
  t = 0) -> frame t, [:, 1] reference (frame 0) -> frame t.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from bench.config import ConfigError, TaskConfig

Progress = Callable[[str, int, int], None]  # (description, done, total) -> None


def reject_unknown_keys(given: Mapping, known: Iterable[str], section: str, owner: str) -> None:
    """Fail naming every key of ``section`` (e.g. ``dataset.synthetic``) that ``owner`` does not read."""
    known = sorted(known)
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(
            f"{section}: unknown key(s) {', '.join(unknown)} for {owner}; valid keys: {', '.join(known) or '(none)'}"
        )


@dataclass(frozen=True)
class Problem:
    """One problem found in a dataset directory; ``where`` names the file and line or key."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class DatasetError(ValueError):
    """A dataset directory failed its check; carries every problem found."""

    def __init__(self, root: Path, problems: list[Problem]) -> None:
        self.root = root
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"dataset at {root} has {len(problems)} problem(s):\n{lines}")


class DatasetSpec(ABC):
    """A dataset format (and, for synthetic data, its generator) registered in DATASETS."""

    name: str = ""
    kind: str = ""  # pose_transfer, face_animation, view_synthesis
    synthetic: bool = False

    @abstractmethod
    def prepare(self, cfg: TaskConfig, data_root: Path, progress: Progress | None = None) -> Path:
        """Return the dataset directory, generating it first when synthetic and not cached."""

    @abstractmethod
    def check(self, root: Path, cfg: TaskConfig) -> list[Problem]:
        """Every problem in ``root`` at once (missing files, malformed rows, bad images ...)."""

    @abstractmethod
    def train_set(self, root: Path, cfg: TaskConfig, seed: int) -> Dataset:
        """Training samples (pairs, or clips for video tasks)."""

    @abstractmethod
    def test_set(self, root: Path, cfg: TaskConfig) -> Dataset:
        """Test samples in a fixed order (pairs, or whole videos for video tasks)."""

    @abstractmethod
    def reference_images(self, root: Path, cfg: TaskConfig, split: str) -> Dataset:
        """The real images of ``split`` (train or test) as uint8 (3, H, W) tensors at the
        configured resolution, in a fixed order: the FID reference set."""

    def validate(self, root: Path, cfg: TaskConfig) -> None:
        """Raise DatasetError listing every problem, or return when the directory is sound."""
        problems = self.check(root, cfg)
        if problems:
            raise DatasetError(root, problems)
