"""Executors that run benchmark cells (registered in EXECUTORS)."""

from bench.executors import local  # noqa: F401  (registers "local")
