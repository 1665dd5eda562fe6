"""Executors that run benchmark cells (registered in EXECUTORS)."""

from bench.executors import local, slurm  # noqa: F401  (registers "local" and "slurm")
