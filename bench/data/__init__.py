"""Datasets: synthetic generators and loaders for the published formats (registered in DATASETS)."""

from bench.data import face_video, pose, shapenet  # noqa: F401  (register their DatasetSpecs)
