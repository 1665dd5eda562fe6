"""Datasets: synthetic generators and loaders for the published formats (registered in DATASETS)."""
