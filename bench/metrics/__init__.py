"""Evaluation metrics; importing this package registers every built-in metric in ``METRICS``."""

from bench.metrics import fid, kid, lpips_metric, pixel, ssim, transport  # noqa: F401  (registration)
