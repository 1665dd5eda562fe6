"""Leaderboards regenerated from the append-only records file (and its per-image side files), and nothing else.

``<results_dir>/records.jsonl`` holds one JSON record per finished cell attempt; the newest
record of a cell key wins.  Tables are built per task, dataset, profile, evaluation protocol
(a hash of the record's ``protocol`` dict, generated-image count included) and training setup
(a hash of the resolved dataset, model and training config), so numbers obtained under different
protocols, or trained under different budgets or losses (``--set train.stage2_steps=...``, an
edited profile), are never ranked or averaged together.  Each table lists methods as rows and
metrics as columns (mean ± sample std over seeds, best per column in bold); failures, metrics
that could not be computed and published numbers (a separate "reported" block, never ranked) are
marked with footnotes.  Oracle and floor rows are a block of their own, never ranked, and every row
gets its paired difference to a baseline method with a bootstrap interval.  Rendering is
deterministic: rebuilding from the same records file gives the same bytes.

Modules: ``reading`` (records, newest per cell, groups), ``metric_info``, ``reported`` (published
numbers), ``paired`` (paired differences and their bootstrap), ``model`` (the table model), and one
renderer per format: ``markdown``, ``frame`` (CSV), ``latex``, ``report`` (HTML).
"""

from __future__ import annotations

from pathlib import Path

from bench.leaderboard.frame import leaderboard_frame
from bench.leaderboard.latex import render_latex
from bench.leaderboard.markdown import render_markdown
from bench.leaderboard.model import DEFAULT_BASELINE, Table, build_tables
from bench.leaderboard.reading import latest_per_cell, load_records, protocol_key, training_key
from bench.leaderboard.report import render_report
from bench.leaderboard.reported import load_reported
from bench.records import atomic_write_bytes

__all__ = [
    "DEFAULT_BASELINE",
    "Table",
    "build_tables",
    "latest_per_cell",
    "leaderboard_frame",
    "load_records",
    "load_reported",
    "protocol_key",
    "render_latex",
    "render_markdown",
    "render_report",
    "training_key",
    "write_leaderboards",
]


def write_leaderboards(
    results_dir: Path, include_reported: bool = True, baseline: str = DEFAULT_BASELINE
) -> list[Path]:
    """Regenerate leaderboard.md/.csv/.tex and report.html from ``records.jsonl`` (and the per-image
    files it names) alone; each file is replaced atomically, so readers never see a half-written one."""
    results_dir = Path(results_dir)
    records = load_records(results_dir)
    reported = load_reported() if include_reported else None
    tables = build_tables(records, reported, results_dir=results_dir, baseline=baseline)
    outputs = {
        "leaderboard.md": render_markdown(tables, records),
        "leaderboard.csv": leaderboard_frame(tables).to_csv(index=False, lineterminator="\n"),
        "leaderboard.tex": render_latex(tables, records),
        "report.html": render_report(results_dir, tables, records),
    }
    for name, text in outputs.items():
        atomic_write_bytes(results_dir / name, text.encode("utf-8"))
    return [results_dir / name for name in outputs]
