"""Published numbers (``bench/reported/published.yaml``): read, checked, printed as published."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.config import read_yaml
from bench.leaderboard.metric_info import metric_label, metric_sort_key

REPORTED_FILE = Path(__file__).resolve().parents[1] / "reported" / "published.yaml"


# ---------------------------------------------------------------------------------------------
# Reported numbers
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportedEntry:
    """One published result (``bench/reported/published.yaml``)."""

    method: str
    venue: str
    dataset: str
    resolution: tuple[int, int]
    protocol: str
    protocol_text: str
    metrics: dict[str, float]
    source: str
    metric_sources: dict[str, str] = field(default_factory=dict)
    notes: str = ""

    def sources(self) -> str:
        """Source keys, e.g. ``IMAG-T1; FID, LPIPS: GFLA-PAPER``."""
        overrides: dict[str, list[str]] = {}
        for metric in sorted(self.metric_sources, key=metric_sort_key):
            overrides.setdefault(self.metric_sources[metric], []).append(metric_label(metric))
        parts = [self.source] + [f"{', '.join(metrics)}: {key}" for key, metrics in overrides.items()]
        return "; ".join(parts)


def load_reported(path: str | Path = REPORTED_FILE) -> list[ReportedEntry]:
    """Read and check the published numbers; errors name the file and entry."""
    path = Path(path)
    data = read_yaml(path)
    sources, protocols = data.get("sources", {}), data.get("protocols", {})
    entries = []
    for index, raw in enumerate(data.get("entries", [])):
        where = f"{path}: entries[{index}]"
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
        missing = {"method", "venue", "dataset", "resolution", "protocol", "metrics", "source"} - set(raw)
        if missing:
            raise ValueError(f"{where}: missing key(s) {', '.join(sorted(missing))}")
        keys = [raw["source"], *raw.get("metric_sources", {}).values()]
        unknown = [key for key in keys if key not in sources]
        if unknown:
            raise ValueError(f"{where}: source key(s) {unknown} not defined under 'sources'")
        if raw["protocol"] not in protocols:
            raise ValueError(f"{where}: protocol {raw['protocol']!r} not defined under 'protocols'")
        if not all(isinstance(v, (int, float)) for v in raw["metrics"].values()):
            raise ValueError(f"{where}: every value under 'metrics' must be a number")
        entries.append(
            ReportedEntry(
                method=raw["method"],
                venue=raw["venue"],
                dataset=raw["dataset"],
                resolution=tuple(raw["resolution"]),
                protocol=raw["protocol"],
                protocol_text=protocols[raw["protocol"]],
                metrics={k: float(v) for k, v in raw["metrics"].items()},
                source=raw["source"],
                metric_sources=dict(raw.get("metric_sources", {})),
                notes=raw.get("notes", ""),
            )
        )
    return entries


def format_reported(value: float) -> str:
    """A published number as printed in its source (no added digits)."""
    return format(value, "g")

