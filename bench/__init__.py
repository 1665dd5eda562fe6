"""warpbench: a benchmark suite for deep image spatial transformation."""

__version__ = "0.1.0"
