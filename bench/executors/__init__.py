"""Executors that run benchmark cells (registered in EXECUTORS)."""
