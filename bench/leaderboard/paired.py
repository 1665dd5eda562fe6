"""Paired differences between two sets of cells run on the same test images, with bootstrap intervals.

Two cells are paired when they share task, data, protocol and seed: same test images, same training
batches and backbone weights, so ``a - b`` per image removes most of the image-to-image variance.
The mean difference gets a 95% interval from a seeded bootstrap:

* one seed: ``scipy.stats.bootstrap`` (BCa) over the test images;
* several seeds: a two-level (hierarchical) percentile bootstrap: draw the seeds with replacement,
  then, independently for each drawn seed, its test images with replacement.

Where the per-image values carry groups (the frames of one test video are correlated, so a video is
the independent unit), the differences are first averaged per group and the groups are resampled
in place of the images.

Neither resamples the training run itself with one seed; the table notes say so.  Distribution
metrics (FID, KID) have one value per set: their difference gets no interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from bench.leaderboard.metric_info import is_distribution_metric
from bench.records import PerImageError, PerImageValues, read_per_image

CONFIDENCE = 0.95
RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
NO_PER_IMAGE = "no per-image values recorded (a record older than per-image storage)"
SPREAD_CAVEAT = (
    "With one seed the interval covers the choice of test images only, not training randomness: a "
    "difference smaller than the seed-to-seed spread (the ± of several seeds) or the machine-to-machine "
    "spread (README, reproducibility) is not a finding, marked or not."
)
SET_LEVEL_NOTE = (
    "set-level metrics: Δ is the difference of the set values (mean over seeds), with no interval. KID's ± "
    "is its std over random subsets of the same images, the estimator's own noise, not test-set or training "
    "spread; FID has no spread at all. Neither supports a significance claim from one seed."
)
_ROUNDING = 1e-12  # relative spread below which differences count as one constant
_CHUNK = 500  # hierarchical replicates drawn at once (bounds memory)


@dataclass(frozen=True)
class Interval:
    """A mean difference and its confidence interval."""

    mean: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        """True when the interval excludes zero."""
        return self.low > 0 or self.high < 0


def image_bootstrap(differences: np.ndarray, seed: int = BOOTSTRAP_SEED, resamples: int = RESAMPLES) -> Interval:
    """Mean of one seed's per-image differences with scipy's BCa interval (resampling the images)."""
    values = np.asarray(differences, dtype=np.float64)
    if values.size < 2:
        raise ValueError(f"a bootstrap over images needs at least 2 paired images, got {values.size}")
    mean = float(values.mean())
    if np.ptp(values) <= _ROUNDING * (1.0 + abs(mean)):  # a constant difference, up to rounding: every
        return Interval(mean, mean, mean)  # resample has its mean (and BCa is undefined)
    result = stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=resamples,
        confidence_level=CONFIDENCE,
        method="BCa",
        vectorized=True,
        random_state=np.random.default_rng(seed),
    )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"scipy's BCa interval is undefined for these {values.size} differences")
    return Interval(mean, low, high)


def hierarchical_bootstrap(
    per_seed: Sequence[np.ndarray], seed: int = BOOTSTRAP_SEED, resamples: int = RESAMPLES
) -> Interval:
    """Mean over seeds of the per-seed mean difference; percentile interval of a two-level resample
    (seeds with replacement, then each drawn seed's images with replacement, drawn independently)."""
    groups = [np.asarray(values, dtype=np.float64) for values in per_seed]
    if len(groups) < 2:
        raise ValueError(f"a hierarchical bootstrap needs at least 2 seeds, got {len(groups)}")
    if min(len(values) for values in groups) < 1:
        raise ValueError("a seed without paired images cannot be resampled")
    rng = np.random.default_rng(seed)
    count = len(groups)
    replicates = np.empty(resamples)
    for start in range(0, resamples, _CHUNK):
        size = min(_CHUNK, resamples - start)
        picks = rng.integers(0, count, size=(size, count))  # drawn seeds per replicate
        totals = np.zeros(size)
        for index, values in enumerate(groups):
            rows = np.nonzero(picks == index)[0]  # one entry per draw of this seed
            if rows.size:
                draws = rng.integers(0, len(values), size=(rows.size, len(values)))
                np.add.at(totals, rows, values[draws].mean(axis=1))
        replicates[start : start + size] = totals / count
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    mean = float(np.mean([values.mean() for values in groups]))
    return Interval(mean, float(low), float(high))


def paired_interval(per_seed: Sequence[np.ndarray]) -> Interval:
    """The bootstrap that fits the number of seeds (see the module docstring)."""
    return image_bootstrap(per_seed[0]) if len(per_seed) == 1 else hierarchical_bootstrap(per_seed)


def resampling_text(seed_counts: set[int], video: bool = False) -> str:
    """What the intervals of a table resampled, for its note (``video``: the units are whole test videos)."""
    parts = []
    if 1 in seed_counts:
        parts.append(
            f"one seed: scipy.stats.bootstrap (BCa, {RESAMPLES} resamples, seed {BOOTSTRAP_SEED}) over the "
            "paired test images"
        )
    if any(count > 1 for count in seed_counts):
        parts.append(
            f"several seeds: hierarchical percentile bootstrap ({RESAMPLES} resamples, seed {BOOTSTRAP_SEED}): "
            "seeds drawn with replacement, then the paired test images within each drawn seed"
        )
    text = "; ".join(parts)
    if video:
        text += (" (on this video task the unit resampled is the test video: its frames are correlated, so each "
                 "video's per-frame differences are averaged first)")
    return text


class PerImageReader:
    """Per-image values of records of one results directory, read once; errors kept per record."""

    def __init__(self, results_dir: Path | None) -> None:
        self.results_dir = Path(results_dir) if results_dir is not None else None
        self._cache: dict[str, PerImageValues | None] = {}
        self.errors: dict[str, str] = {}

    def get(self, record: dict) -> PerImageValues | None:
        key = record.get("record_id") or record["cell"]["key"]
        if key not in self._cache:
            values = None
            if self.results_dir is not None:
                try:
                    values = read_per_image(self.results_dir, record)
                except PerImageError as exc:
                    self.errors[key] = str(exc)
            self._cache[key] = values
        return self._cache[key]

    def error(self, record: dict) -> str | None:
        return self.errors.get(record.get("record_id") or record["cell"]["key"])


@dataclass(frozen=True)
class Difference:
    """``a - b`` of one metric over paired cells: an interval, a set-level difference, or why neither."""

    interval: Interval | None = None
    set_difference: float | None = None  # distribution metrics: mean over seeds of a's value - b's
    seeds: tuple[int, ...] = ()
    seed_differences: tuple[float, ...] = ()  # per seed: mean per-image (or set) difference
    image_count: int | None = None  # paired images per seed (equal for every seed)
    reason: str = ""  # why there is no statistic

    @property
    def mean(self) -> float | None:
        return self.interval.mean if self.interval is not None else self.set_difference


def _value(record: dict, metric: str) -> float | None:
    value = (record.get("metrics") or {}).get(metric, {}).get("value")
    return float(value) if isinstance(value, (int, float)) and np.isfinite(value) else None


def set_difference(pairs: Sequence[tuple[int, dict, dict]], metric: str) -> Difference:
    """Distribution metric: the per-seed difference of the set values, averaged; no interval."""
    seeds, deltas = [], []
    for seed, a, b in pairs:
        va, vb = _value(a, metric), _value(b, metric)
        if va is not None and vb is not None:
            seeds.append(seed)
            deltas.append(va - vb)
    if not deltas:
        return Difference(reason=f"no seed with a {metric} value in both")
    return Difference(set_difference=float(np.mean(deltas)), seeds=tuple(seeds), seed_differences=tuple(deltas))


def image_difference(
    pairs: Sequence[tuple[int, dict, dict]], metric: str, reader_a: PerImageReader, reader_b: PerImageReader
) -> Difference:
    """Paired metric: per seed the per-image differences a - b, then the fitting bootstrap."""
    seeds, per_seed, reasons = [], [], []
    for seed, a, b in pairs:
        values = []
        for record, reader in ((a, reader_a), (b, reader_b)):
            stored = reader.get(record)
            values.append(None if stored is None else stored.values.get(metric))
            if stored is None:
                reasons.append(reader.error(record) or NO_PER_IMAGE)
            elif values[-1] is None:  # e.g. epe of a warper without flow: say whose values are missing
                reasons.append(f"{record['cell']['method']} has no per-image {metric} values")
        if values[0] is None or values[1] is None:
            continue
        names = [reader.get(r).names for r, reader in ((a, reader_a), (b, reader_b))]
        if len(values[0]) != len(values[1]) or (all(names) and names[0] != names[1]):
            reasons.append(f"seed {seed}: the two cells were evaluated on different images")
            continue
        groups = [reader.get(r).groups for r, reader in ((a, reader_a), (b, reader_b))]
        if groups[0] != groups[1]:
            reasons.append(f"seed {seed}: the two cells grouped their images differently")
            continue
        seeds.append(seed)
        per_seed.append(unit_differences(values[0] - values[1], groups[0]))
    if not per_seed:
        return Difference(reason=reasons[0] if reasons else f"no per-image {metric} values")
    counts = {len(values) for values in per_seed}
    if min(counts) < 2:
        return Difference(seeds=tuple(seeds), reason=f"paired units per seed {sorted(counts)} (need >= 2)")
    try:
        interval = paired_interval(per_seed)
    except ValueError as exc:  # an interval that cannot be computed is n/a with its reason, never a crash
        return Difference(seeds=tuple(seeds), reason=str(exc))
    return Difference(
        interval=interval,
        seeds=tuple(seeds),
        seed_differences=tuple(float(values.mean()) for values in per_seed),
        image_count=counts.pop() if len(counts) == 1 else None,
    )


def unit_differences(differences: np.ndarray, groups: Sequence[str]) -> np.ndarray:
    """The differences a bootstrap resamples: per image, or the mean per group (in order of first
    appearance) where images are grouped.  Images whose value is undefined (NaN) in either cell, such
    as the occlusion AUROC of an image without occluded pixels, are left out; so is a group left empty."""
    defined = np.isfinite(differences)
    if not groups:
        return differences[defined]
    _, first, inverse = np.unique(np.asarray(groups), return_index=True, return_inverse=True)
    counts = np.bincount(inverse[defined], minlength=len(first))
    sums = np.bincount(inverse[defined], weights=differences[defined], minlength=len(first))
    order = np.argsort(first)
    return (sums[order] / np.where(counts[order] > 0, counts[order], 1))[counts[order] > 0]


def metric_difference(
    pairs: Sequence[tuple[int, dict, dict]], metric: str, reader_a: PerImageReader, reader_b: PerImageReader
) -> Difference:
    """``a - b`` of one metric over seed pairs: set-level for distribution metrics, else per image."""
    if not pairs:
        return Difference(reason="no seed with a successful record of both")
    if is_distribution_metric(metric):
        return set_difference(pairs, metric)
    return image_difference(pairs, metric, reader_a, reader_b)


def pair_by_seed(a: Sequence[dict], b: Sequence[dict]) -> list[tuple[int, dict, dict]]:
    """(seed, a's record, b's record) for the seeds both have a successful record of."""
    by_seed = {r["cell"]["seed"]: r for r in b if r["status"] == "ok"}
    return [(r["cell"]["seed"], r, by_seed[r["cell"]["seed"]]) for r in a if r["status"] == "ok"
            and r["cell"]["seed"] in by_seed]
