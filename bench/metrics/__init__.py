"""Evaluation metrics (registered in METRICS)."""
