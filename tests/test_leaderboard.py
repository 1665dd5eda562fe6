"""Leaderboards from records.jsonl: rebuild determinism, aggregation, ranking, protocol separation,
failures, unavailable metrics, reported rows and malformed records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.leaderboard import (
    build_tables,
    latest_per_cell,
    leaderboard_frame,
    load_records,
    load_reported,
    protocol_key,
    render_latex,
    render_markdown,
    training_key,
    write_leaderboards,
)
from bench.leaderboard.compare import compare_methods, compare_record_sets
from bench.leaderboard.paired import hierarchical_bootstrap, image_bootstrap
from bench.records import PerImageValues, RecordsError, RecordStore
from bench.registry import METRICS
from fake_results import (
    PROTOCOL,
    failure,
    metric,
    record,
    trained_record,
    training_config,
    write_records,
    write_samples,
)

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = ("leaderboard.md", "leaderboard.csv", "leaderboard.tex", "report.html")


def _table_row(markdown: str, method: str) -> list[str]:
    """The cells of the first Markdown table row whose method cell starts with ``method``."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0].split(" [")[0] == method:
            return cells
    raise AssertionError(f"no row for {method!r} in:\n{markdown}")


def _scores(method: str, seed: int, ssim: float, lpips: float, fid: float, **kwargs) -> dict:
    return record(method, seed, {"ssim": metric(ssim), "lpips": metric(lpips), "fid": metric(fid)}, **kwargs)


@pytest.mark.slow  # a second interpreter (another hash seed) rebuilds: ~4 s on an idle 2-core machine
def test_rebuild_from_records_is_byte_identical_across_processes(tmp_path):
    records = [
        _scores("gfla", 0, 0.71, 0.20, 40.0),
        _scores("gfla", 1, 0.73, 0.22, 42.0),
        _scores("none", 0, 0.60, 0.30, 55.0),
        failure("plain_flow", 0),
        _scores("gfla", 0, 0.61, 0.2, 45.0, dataset="deepfashion"),
    ]
    records[0]["artifacts"] = write_samples(tmp_path, records[0]["cell"]["key"])
    write_records(tmp_path, records)
    rng = np.random.default_rng(0)  # and a table with per-image values: seeded bootstraps, one and two seeds
    base = [rng.uniform(0.5, 0.8, 30) for _ in range(2)]
    _write_paired(tmp_path, [
        *(_paired_record(m, s, base[s] + shift + rng.normal(0, 0.01, 30), task="face_synthetic")
          for m, shift in (("none", 0.0), ("gfla", 0.01)) for s in (0, 1)),
        _paired_record("plain_flow", 0, base[0] - 0.01, task="face_synthetic"),
    ])
    first = write_leaderboards(tmp_path)
    assert "+0.01" in (tmp_path / "leaderboard.md").read_text()
    assert [p.name for p in first] == list(OUTPUTS)
    written = {name: (tmp_path / name).read_bytes() for name in OUTPUTS}
    for name in OUTPUTS:
        (tmp_path / name).unlink()
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONHASHSEED="12345", OMP_NUM_THREADS="1")
    code = "import sys; from bench.leaderboard import write_leaderboards; write_leaderboards(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, env=env, cwd=REPO)
    for name in OUTPUTS:
        assert (tmp_path / name).read_bytes() == written[name], f"{name} differs after a rebuild"


def test_newest_record_per_cell_wins(tmp_path):
    old_failure = failure("gfla", 0, created="2026-11-25T09:00:00+00:00")
    success = _scores("gfla", 0, 0.7, 0.2, 40.0, created="2026-11-25T10:00:00+00:00")
    rerun = _scores("gfla", 0, 0.8, 0.1, 30.0, created="2026-11-25T11:00:00+00:00")
    write_records(tmp_path, [old_failure, rerun, success])  # file order differs from time order
    latest = latest_per_cell(load_records(tmp_path))
    assert len(latest) == 1 and latest[0]["metrics"]["ssim"]["value"] == 0.8
    (table,) = build_tables(load_records(tmp_path))
    assert table.rows[0].failed_seeds == () and table.rows[0].entries["ssim"].mean == 0.8


def test_mean_and_std_over_seeds_match_numpy():
    ssim = [0.7012, 0.7355, 0.6891]
    fid = [41.2, 39.7, 44.05]
    records = [_scores("gfla", seed, s, 0.2, f) for seed, (s, f) in enumerate(zip(ssim, fid))]
    (table,) = build_tables(records)
    entry = table.rows[0].entries["ssim"]
    assert entry.mean == pytest.approx(np.mean(ssim), abs=1e-12)
    assert entry.std == pytest.approx(np.std(ssim, ddof=1), abs=1e-12)
    assert entry.seeds == (0, 1, 2)
    row = _table_row(render_markdown([table], records), "gfla")
    assert row[1] == "3"
    assert f"{np.mean(ssim):.4f} ± {np.std(ssim, ddof=1):.4f}" in row[2]
    assert f"{np.mean(fid):.3f} ± {np.std(fid, ddof=1):.3f}" in row[4]


def test_best_per_column_is_bold_respecting_direction():
    records = [
        _scores("gfla", 0, ssim=0.80, lpips=0.30, fid=20.0),
        _scores("none", 0, ssim=0.60, lpips=0.10, fid=50.0),
        _scores("plain_flow", 0, ssim=0.70, lpips=0.20, fid=30.0),
    ]
    tables = build_tables(records)
    markdown = render_markdown(tables, records)
    header = next(line for line in markdown.splitlines() if line.startswith("| Method"))
    assert "SSIM ↑" in header and "LPIPS ↓" in header and "FID ↓ (20 img)" in header
    gfla, none, flow = (_table_row(markdown, m) for m in ("gfla", "none", "plain_flow"))
    assert gfla[2] == "**0.8000**" and none[2] == "0.6000"  # SSIM: higher is better
    assert none[3] == "**0.1000**" and gfla[3] == "0.3000"  # LPIPS: lower is better
    assert gfla[4] == "**20.000**" and flow[4] == "30.000"  # FID: lower is better
    latex = render_latex(tables, records)
    assert r"\textbf{0.8000}" in latex and r"\textbf{0.1000}" in latex and r"\textbf{20.000}" in latex
    assert r"\textbf{0.6000}" not in latex


def test_direction_comes_from_the_metric_registry(monkeypatch):
    class LowerIsBetter:
        higher_is_better = False
        kind = "paired"

    monkeypatch.setitem(METRICS._items, "test_error_rate", LowerIsBetter)
    records = [
        record("a", 0, {"test_error_rate": metric(0.5)}),
        record("b", 0, {"test_error_rate": metric(0.2)}),
        record("c", 0, {"unregistered_score": metric(0.9)}),
    ]
    (table,) = build_tables(records)
    columns = {c.metric: c for c in table.columns}
    assert columns["test_error_rate"].label == "test_error_rate ↓"
    assert [r.entries["test_error_rate"].best for r in table.rows] == [False, True, False]
    assert columns["unregistered_score"].higher_is_better is None
    assert not any(r.entries["unregistered_score"].best for r in table.rows)  # unknown direction: no ranking


def test_two_protocols_give_two_tables_never_ranked_together():
    gaussian = _scores("gfla", 0, 0.70, 0.2, 40.0)
    win51 = _scores("none", 0, 0.90, 0.1, 20.0, protocol=dict(PROTOCOL, ssim_variant="win51"))
    tables = build_tables([gaussian, win51])
    assert len(tables) == 2
    assert {t.protocol_key for t in tables} == {protocol_key(gaussian["protocol"]), protocol_key(win51["protocol"])}
    for table in tables:
        assert len(table.rows) == 1 and table.rows[0].entries["ssim"].best
    markdown = render_markdown(tables, [gaussian, win51])
    assert "SSIM gaussian" in markdown and "SSIM win51" in markdown


def test_different_fid_image_counts_go_to_separate_tables():
    many = record("gfla", 0, {"fid": metric(30.0, count=200)}, protocol=dict(PROTOCOL, num_generated=200))
    few = record("none", 0, {"fid": metric(60.0, count=50)}, protocol=dict(PROTOCOL, num_generated=50))
    tables = build_tables([many, few])
    assert len(tables) == 2
    labels = sorted(t.columns[0].label for t in tables)
    assert labels == ["FID ↓ (200 img)", "FID ↓ (50 img)"]
    assert sorted(dict(t.protocol_items())["generated images"] for t in tables) == ["200", "50"]


def _trained(method: str, seed: int, ssim: float, steps: int, root: str = "/data", **kwargs) -> dict:
    return trained_record(method, seed, {"ssim": metric(ssim)}, steps=steps, root=root, **kwargs)


def test_cells_trained_differently_are_never_averaged_or_ranked_together():
    records = [
        _trained("gfla", 0, 0.60, steps=140),
        _trained("gfla", 1, 0.62, steps=140, root="/elsewhere/data"),  # a file location: same setup
        _trained("nonlocal_attn", 0, 0.61, steps=140),
        _trained("gfla", 0, 0.75, steps=1400, created="2026-11-26T10:00:00+00:00"),  # newer, longer
        failure("gfla", 2, config=training_config(1400)),  # joins the 1400-step table only
    ]
    tables = build_tables(records)
    assert len(tables) == 2
    short, long = sorted(tables, key=lambda t: len(t.rows), reverse=True)  # 2 methods at 140 steps, 1 at 1400
    assert [(r.method, r.ok_seeds) for r in short.rows] == [("gfla", (0, 1)), ("nonlocal_attn", (0,))]
    assert short.rows[0].entries["ssim"].mean == pytest.approx(0.61)  # not mixed with the 1400-step run
    assert [(r.method, r.ok_seeds, r.failed_seeds) for r in long.rows] == [("gfla", (0,), (2,))]
    assert short.training_differences == ("train.stage2_steps=140",)
    assert long.training_differences == ("train.stage2_steps=1400",)
    assert short.training_key != long.training_key
    markdown = render_markdown(tables, records)
    assert f"training {long.training_key}" in markdown
    differs = "Trained differently from the other `quick` tables of this task and protocol:"
    assert f"{differs} `train.stage2_steps=1400`" in markdown
    assert "Profile overrides: `train.stage2_steps=1400`." in markdown  # eval.* overrides are not training
    assert short.overrides == ()
    assert set(leaderboard_frame(tables).training_key) == {short.training_key, long.training_key}


def test_one_training_setup_keeps_the_plain_title():
    (table,) = build_tables([_trained("gfla", 0, 0.6, steps=140), _trained("none", 0, 0.5, steps=140)])
    assert table.training_differences == () and "training" not in table.title


def test_a_key_an_older_record_lacks_counts_with_its_default():
    older = _trained("gfla", 0, 0.6, steps=140)  # its train config has no lr_decay: constant lr
    constant, decayed = _trained("none", 0, 0.5, steps=140), _trained("plain_flow", 0, 0.5, steps=140)
    constant["config"]["train"]["lr_decay"], decayed["config"]["train"]["lr_decay"] = 0.0, 0.5
    assert training_key(older) == training_key(constant) != training_key(decayed)
    tables = build_tables([older, constant, decayed])
    assert [table.training_differences for table in tables] in (
        [("train.lr_decay=0.0",), ("train.lr_decay=0.5",)], [("train.lr_decay=0.5",), ("train.lr_decay=0.0",)])


def test_failed_cells_are_marked_with_their_error():
    records = [
        _scores("gfla", 0, 0.7, 0.2, 40.0),
        _scores("gfla", 1, 0.72, 0.2, 41.0),
        failure("gfla", 2),
        failure("plain_flow", 0),
        failure("plain_flow", 1),
    ]
    (table,) = build_tables(records)
    markdown = render_markdown([table], records)
    gfla, flow = _table_row(markdown, "gfla"), _table_row(markdown, "plain_flow")
    assert gfla[1] == "2 (+1 failed)"
    assert flow[0].startswith("plain_flow [") and flow[1] == "0 (+2 failed)"
    assert flow[2:] == ["failed"] * 3
    note = flow[0].split("[")[1].rstrip("]")
    error = "failed in train: RuntimeError: CUDA out of memory \\| tried 2 GiB"
    assert f"[{note}] plain_flow seeds 0, 1 {error}" in markdown  # one note per distinct error
    assert f"gfla seed 2 {error}" in markdown
    frame = leaderboard_frame([table])
    assert set(frame[frame.method == "plain_flow"].status) == {"failed"}


def test_unavailable_metric_shows_na_with_reason():
    reason = "weights missing: pt_inception-2015-12-05-6726825d.pth; put it in ~/.cache/torch/hub/checkpoints"
    records = [
        record("gfla", 0, {"ssim": metric(0.7), "fid": metric(None, unavailable=reason)}),
        record("none", 0, {"ssim": metric(0.6), "fid": metric(None, unavailable=reason)}),
    ]
    (table,) = build_tables(records)
    markdown = render_markdown([table], records)
    row = _table_row(markdown, "gfla")
    assert row[3].startswith("n/a [")
    number = row[3].split("[")[1].rstrip("]")
    assert _table_row(markdown, "none")[3] == row[3]  # one shared footnote for one reason
    assert f"[{number}] FID unavailable: {reason}" in markdown
    assert not table.rows[0].entries["fid"].best


def test_partially_unavailable_metric_averages_the_rest_and_says_so():
    records = [
        record("gfla", 0, {"lpips": metric(0.2)}),
        record("gfla", 1, {"lpips": metric(None, unavailable="alexnet weights missing")}),
    ]
    (table,) = build_tables(records)
    entry = table.rows[0].entries["lpips"]
    assert entry.mean == 0.2 and entry.status == "partial"
    assert any("n/a for seed 1" in text for text in table.footnotes)
    assert "LPIPS unavailable: alexnet weights missing" in table.footnotes


def test_reported_rows_are_separate_marked_and_never_ranked():
    records = [_scores("gfla", 0, 0.5, 0.4, 80.0, dataset="deepfashion"), _scores("none", 0, 0.4, 0.5, 90.0)]
    tables = build_tables(records, load_reported())
    fashion = next(t for t in tables if t.dataset == "deepfashion")
    synthetic = next(t for t in tables if t.dataset == "synthetic_persons")
    assert synthetic.reported == []
    gfla = next(e for e in fashion.reported if e.method == "GFLA" and e.resolution == (256, 176))
    assert (gfla.metrics["fid"], gfla.metrics["lpips"], gfla.metrics["ssim"]) == (10.573, 0.2341, 0.7074)
    assert fashion.rows[0].entries["fid"].best  # 80.0 is the best reproduced FID despite reported 10.573
    markdown = render_markdown(tables, records)
    assert "**Reported**" in markdown and "| GFLA (CVPR20), reported" in markdown
    reported_part = markdown.split("**Reported**")[1].split("## ")[0]
    assert "**" not in reported_part.replace("**Reported**", "")  # nothing bold among reported numbers
    assert "| 0.7074 | – | 0.2341 | 10.573 |" in reported_part  # SSIM, PSNR (not given), LPIPS, FID
    frame = leaderboard_frame(tables)
    reported = frame[frame.block == "reported"]
    assert not reported.best.any() and set(reported.dataset) == {"deepfashion"}
    assert set(frame[frame.block == "reproduced"].method) == {"gfla", "none"}


def test_published_numbers_cover_gfla_and_later_methods():
    entries = load_reported()
    by_key = {(e.method, e.dataset, e.resolution): e for e in entries}
    market = by_key[("GFLA", "market1501", (128, 64))]
    assert market.metrics == {"ssim": 0.2883, "lpips": 0.2817, "fid": 19.751}
    assert by_key[("IMAGPose", "deepfashion", (512, 352))].metrics["fid"] == 5.6298
    assert {e.dataset for e in entries} == {"deepfashion", "market1501"}
    assert all(e.source and e.protocol_text for e in entries)


def test_malformed_line_is_reported_with_file_and_line(tmp_path):
    path = write_records(tmp_path, [_scores("gfla", 0, 0.7, 0.2, 40.0)])
    with path.open("a") as handle:
        handle.write('{"schema": 1, "cell": {"task": "t"\n')
    with pytest.raises(RecordsError, match=r"records\.jsonl line 2: not valid JSON"):
        load_records(tmp_path)
    path.write_text(json.dumps({"schema": 1, "cell": {"task": "t"}, "status": "ok"}) + "\n")
    with pytest.raises(RecordsError, match=r"line 1: key 'cell.method' must be a str"):
        load_records(tmp_path)
    with pytest.raises(FileNotFoundError, match="no records file"):
        load_records(tmp_path / "empty")


def test_csv_is_tidy_and_complete(tmp_path):
    write_records(tmp_path, [_scores("gfla", 0, 0.7, 0.2, 40.0), _scores("gfla", 1, 0.8, 0.3, 50.0)])
    write_leaderboards(tmp_path, include_reported=False)
    frame = pd.read_csv(tmp_path / "leaderboard.csv")
    ssim = frame[frame.metric == "ssim"].iloc[0]
    assert ssim["mean"] == pytest.approx(0.75) and ssim["n_seeds"] == 2 and ssim["seeds"] == "0 1"
    assert ssim["std"] == pytest.approx(np.std([0.7, 0.8], ddof=1))
    assert frame[frame.metric == "fid"].iloc[0]["image_count"] == 20


def test_protocol_line_names_weight_sources_and_hides_cache_paths():
    sha = "ab" * 32
    fid = metric(30.0)
    fid["protocol"] = {
        "fid_inception": "pt_inception",
        "weights_file": "pt_inception-2015-12-05-6726825d.pth",
        "weights_origin": "user file",
        "weights_sha256": sha,
        "reference_cache": "/home/me/.cache/warpbench/ref.npz",
        "reference_cache_reused": True,
    }
    records = [record("gfla", 0, {"fid": fid})]
    (table,) = build_tables(records)
    items = dict(table.protocol_items())
    assert items["Inception weights"] == f"pt_inception-2015-12-05-6726825d.pth from user file (sha256 {sha[:12]})"
    assert items["FID reference"] == "train (80 images)" and items["generated images"] == "20"
    markdown = render_markdown([table], records)
    assert "reference_cache" not in markdown and "/home/me" not in markdown
    assert f"weights_sha256={sha[:12]}" in markdown


# ---------------------------------------------------------------------------------------------
# Paired differences, their bootstrap intervals, oracle and floor rows
# ---------------------------------------------------------------------------------------------
def _paired_record(method: str, seed: int, ssim: np.ndarray, role: str | None = None, **kwargs) -> tuple:
    """A record whose SSIM is the mean of ``ssim`` per image (stored beside it), with a set-level FID."""
    made = record(method, seed, {"ssim": metric(float(np.mean(ssim)), count=len(ssim)),
                                 "fid": metric(50.0 - 100 * float(np.mean(ssim)))}, **kwargs)
    if role is not None:
        made["role"] = role
    names = tuple(f"img{i:03d}" for i in range(len(ssim)))
    return made, PerImageValues({"ssim": ssim}, names)


def _write_paired(results_dir: Path, items: list[tuple]) -> None:
    store = RecordStore(results_dir)
    for made, per_image in items:
        store.append(made, per_image)


def _difference_row(markdown: str, method: str) -> list[str]:
    """The row of ``method`` in the paired-difference table (the second table naming it)."""
    block = markdown.split("**Paired difference to", 1)[1]
    return _table_row(block, method)


def test_identical_methods_give_an_interval_around_zero():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.5, 0.8, 300)
    exact = image_bootstrap(base - base)
    assert (exact.mean, exact.low, exact.high) == (0.0, 0.0, 0.0) and not exact.significant
    noisy = image_bootstrap(base + rng.normal(0.0, 0.01, 300) - base)  # same method, evaluation noise only
    assert noisy.low < 0 < noisy.high and not noisy.significant
    assert noisy.high - noisy.low < 4 * 0.01 * 1.96 / np.sqrt(300) * 1.5  # about 2 * 1.96 * sigma / sqrt(n)


def test_a_constant_shift_gives_an_interval_around_the_shift():
    rng = np.random.default_rng(2)
    base = rng.uniform(0.5, 0.8, 200)
    exact = image_bootstrap(base + 0.02 - base)
    assert exact.mean == pytest.approx(0.02) and exact.low == pytest.approx(0.02) == exact.high
    shifted = image_bootstrap(base + 0.02 + rng.normal(0.0, 0.01, 200) - base)
    assert shifted.low < 0.02 < shifted.high and shifted.significant
    # scipy's BCa interval, seeded: recomputing gives the same numbers
    assert image_bootstrap(base + 0.02 + rng.normal(0.0, 0.01, 200) - base) != shifted
    again = np.random.default_rng(2)
    values = again.uniform(0.5, 0.8, 200)
    assert image_bootstrap(values + 0.02 + again.normal(0.0, 0.01, 200) - values) == shifted


def test_hierarchical_bootstrap_resamples_seeds_then_images():
    rng = np.random.default_rng(3)
    tight = [0.01 + rng.normal(0.0, 0.002, 100) for _ in range(4)]
    interval = hierarchical_bootstrap(tight)
    assert interval.mean == pytest.approx(np.mean([t.mean() for t in tight]))
    assert interval.low < 0.01 < interval.high and interval.significant
    # the seeds disagree (training randomness): the interval must widen to cover zero, although
    # every seed's own images give a tight interval away from it
    spread = [offset + rng.normal(0.0, 0.002, 100) for offset in (0.03, -0.02, 0.01, -0.015)]
    wide = hierarchical_bootstrap(spread)
    assert wide.low < 0 < wide.high and not wide.significant
    assert all(image_bootstrap(values).significant for values in spread)
    assert hierarchical_bootstrap(spread) == wide  # seeded
    with pytest.raises(ValueError, match="at least 2 seeds"):
        hierarchical_bootstrap(spread[:1])


def test_leaderboard_shows_paired_differences_roles_and_marks(tmp_path):
    rng = np.random.default_rng(4)
    base = rng.uniform(0.5, 0.8, 40)
    _write_paired(tmp_path, [
        _paired_record("none", 0, base),
        _paired_record("gfla", 0, base + 0.02 + rng.normal(0, 0.005, 40)),
        _paired_record("plain_flow", 0, base + rng.normal(0, 0.005, 40)),
        _paired_record("oracle_flow", 0, base + 0.15, role="oracle"),
        _paired_record("source_image", 0, base - 0.2, role="floor"),
    ])
    write_leaderboards(tmp_path)
    markdown = (tmp_path / "leaderboard.md").read_text()
    # the oracle's SSIM is the highest, but only methods are ranked: gfla is bold
    assert _table_row(markdown, "gfla")[2].startswith("**")
    oracle = _table_row(markdown, "oracle_flow (oracle)")
    assert not oracle[2].startswith("**") and oracle[2] == f"{np.mean(base + 0.15):.4f}"
    assert markdown.index("Oracle and floor rows") < markdown.index("**Paired difference to none")
    gfla = _difference_row(markdown, "gfla")
    assert gfla[2].endswith("\\*") and gfla[2].startswith("+0.02")
    assert not _difference_row(markdown, "plain_flow")[2].endswith("\\*")
    assert _difference_row(markdown, "oracle_flow (oracle)")[2] == "+0.1500 [+0.1500, +0.1500] \\*"
    assert _difference_row(markdown, "source_image (floor)")[2] == "-0.2000 [-0.2000, -0.2000] \\*"
    assert _difference_row(markdown, "gfla")[3].endswith("(no CI)")  # FID: set-level, no interval
    assert "scipy.stats.bootstrap (BCa, 10000 resamples, seed 0) over the paired test images" in markdown
    assert "is not a finding" in markdown and "FID has no spread at all" in markdown

    frame = pd.read_csv(tmp_path / "leaderboard.csv")
    paired = frame[(frame.block == "paired") & (frame.metric == "ssim")].set_index("method")
    assert set(paired.index) == {"gfla", "plain_flow", "oracle_flow", "source_image"}
    assert bool(paired.loc["gfla", "significant"]) and paired.loc["gfla", "resampled"] == "images"
    assert paired.loc["gfla", "ci_low"] < paired.loc["gfla", "mean"] < paired.loc["gfla", "ci_high"]
    assert paired.loc["oracle_flow", "image_count"] == 40 and (paired.baseline == "none").all()
    assert set(frame.block) == {"reproduced", "oracle", "floor", "paired"}
    latex = (tmp_path / "leaderboard.tex").read_text()
    assert r"\textit{Oracle and floor rows" in latex and r"$\Delta$ SSIM" in latex
    html = (tmp_path / "report.html").read_text()
    assert '<table class="board paired">' in html and '<td class="num sig">+0.1500 [+0.1500, +0.1500] *</td>' in html


def test_baseline_can_be_chosen():
    rng = np.random.default_rng(5)
    base = rng.uniform(0.5, 0.8, 30)
    records = [_paired_record("none", 0, base)[0], _paired_record("gfla", 0, base)[0]]
    table = build_tables(records, baseline="gfla")[0]
    assert table.baseline == "gfla" and set(table.differences) == {"none"}
    assert table.differences["none"]["fid"].difference.mean == pytest.approx(0.0)
    absent = build_tables(records, baseline="affine_stn")[0]
    assert absent.differences == {} and "'affine_stn' has no successful record" in absent.difference_notes()[0]


def test_records_without_per_image_values_render_na(tmp_path):
    write_records(tmp_path, [_scores("none", 0, 0.60, 0.30, 55.0), _scores("gfla", 0, 0.71, 0.20, 40.0)])
    write_leaderboards(tmp_path)
    markdown = (tmp_path / "leaderboard.md").read_text()
    row = _difference_row(markdown, "gfla")
    assert row[2] == "n/a" and row[3] == "n/a" and row[4] == "-15.000 (no CI)"  # SSIM, LPIPS, FID
    assert "n/a in SSIM, LPIPS of gfla: no per-image values recorded" in markdown
    frame = pd.read_csv(tmp_path / "leaderboard.csv", keep_default_na=False)  # "n/a" stays text
    ssim = frame[(frame.block == "paired") & (frame.metric == "ssim")].iloc[0]
    assert ssim.status == "n/a" and ssim["mean"] == "" and "no per-image values" in ssim.notes


def test_a_missing_per_image_file_is_na_naming_the_file(tmp_path):
    base = np.linspace(0.5, 0.7, 10)
    _write_paired(tmp_path, [_paired_record("none", 0, base), _paired_record("gfla", 0, base + 0.01)])
    gfla = [r for r in RecordStore(tmp_path).read() if r["cell"]["method"] == "gfla"][0]
    (tmp_path / gfla["per_image"]["file"]).unlink()
    write_leaderboards(tmp_path)
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert _difference_row(markdown, "gfla")[2] == "n/a"
    assert f"{gfla['per_image']['file']}: per-image file of record" in markdown


def test_several_seeds_use_the_hierarchical_bootstrap(tmp_path):
    rng = np.random.default_rng(6)
    items = []
    for seed, offset in enumerate((0.03, -0.02, 0.01)):
        base = rng.uniform(0.5, 0.8, 25)
        items += [_paired_record("none", seed, base), _paired_record("gfla", seed, base + offset)]
    _write_paired(tmp_path, items)
    table = build_tables(RecordStore(tmp_path).read(), results_dir=tmp_path)[0]
    difference = table.differences["gfla"]["ssim"].difference
    assert difference.seeds == (0, 1, 2) and difference.image_count == 25
    assert difference.seed_differences == pytest.approx((0.03, -0.02, 0.01))
    expected = hierarchical_bootstrap([np.full(25, d) for d in (0.03, -0.02, 0.01)])  # per seed: constant
    interval = difference.interval
    assert (interval.mean, interval.low, interval.high) == pytest.approx((expected.mean, expected.low, expected.high))
    assert interval.low == pytest.approx(-0.02) and interval.high == pytest.approx(0.03)  # seed means only
    assert not table.differences["gfla"]["ssim"].significant  # the seeds disagree
    assert any("hierarchical percentile bootstrap" in note for note in table.difference_notes())


def test_compare_two_methods_and_two_record_sets(tmp_path, capsys):
    rng = np.random.default_rng(7)
    base = rng.uniform(0.5, 0.8, 30)
    first, second = tmp_path / "a", tmp_path / "b"
    _write_paired(first, [_paired_record("none", 0, base), _paired_record("gfla", 0, base + 0.05)])
    _write_paired(second, [_paired_record("none", 0, base - 0.01), _paired_record("gfla", 0, base + 0.05)])
    (methods,) = compare_methods(RecordStore(first).read(), first, "gfla", "none")
    ssim = next(m for m in methods.metrics if m.metric == "ssim")
    assert ssim.difference.interval.mean == pytest.approx(0.05) and ssim.a_mean - ssim.b_mean == pytest.approx(0.05)
    sets = compare_record_sets(RecordStore(first).read(), first, RecordStore(second).read(), second)
    by_method = {c.a_label.split()[0]: c for c in sets}
    assert {m: next(x for x in c.metrics if x.metric == "ssim").difference.mean for m, c in by_method.items()} \
        == pytest.approx({"gfla": 0.0, "none": 0.01})
    assert main(["compare", "gfla", "none", "--results-dir", str(first)]) == 0
    out = capsys.readouterr().out
    assert "+0.0500 [+0.0500, +0.0500]" in out and "Resampled: one seed: scipy.stats.bootstrap" in out
    assert main(["compare", "--results-dir", str(first), "--against", str(second), "none"]) == 0
    assert "-0.0100" not in capsys.readouterr().out.replace("+0.0100", "")
    assert main(["compare", "gfla", "--results-dir", str(first)]) == 2  # one method: an error


def test_video_frames_are_resampled_as_whole_videos(tmp_path):
    """Frames of one video are correlated: the interval resamples the videos' mean differences, so
    it equals the image bootstrap over those means, and is wider than a per-frame bootstrap."""
    rng = np.random.default_rng(6)
    videos, frames = 6, 25
    per_video = rng.normal(0.01, 0.02, videos)  # each video's own shift: the frames share it
    delta = np.repeat(per_video, frames) + rng.normal(0.0, 0.001, videos * frames)
    base = rng.uniform(0.5, 0.8, videos * frames)
    groups = tuple(f"video {v}" for v in range(videos) for _ in range(frames))
    names = tuple(f"v{v}_{t:02d}" for v in range(videos) for t in range(frames))
    items = []
    for method, values in (("none", base), ("gfla", base + delta)):
        made = record(method, 0, {"ssim": metric(float(values.mean()), count=len(values))},
                      task="face_synthetic", dataset="synthetic_faces")
        made["cell"]["task_kind"] = made["config"]["kind"] = "face_animation"
        items.append((made, PerImageValues({"ssim": values}, names, groups)))
    _write_paired(tmp_path, items)
    table = build_tables([made for made, _ in items], results_dir=tmp_path)[0]
    interval = table.differences["gfla"]["ssim"].difference.interval
    stored = (base + delta) - base  # the difference as the table computes it, to the last bit
    assert interval == image_bootstrap(stored.reshape(videos, frames).mean(axis=1))
    per_frame = image_bootstrap(stored)
    assert interval.high - interval.low > 3 * (per_frame.high - per_frame.low)
    assert "the unit resampled is the test video" in " ".join(table.difference_notes())


def test_undefined_images_are_left_out_and_an_undefined_interval_is_na(tmp_path):
    """A per-image value can be undefined (the occlusion AUROC of an image without occluded pixels is
    NaN): such images, and groups left without any, are not resampled; and an interval that cannot be
    computed is n/a with its reason instead of stopping the whole leaderboard."""
    from bench.leaderboard.paired import unit_differences

    differences = np.array([0.1, np.nan, 0.3, 0.5, np.nan, np.nan])
    assert unit_differences(differences, ()).tolist() == pytest.approx([0.1, 0.3, 0.5])
    groups = ("a", "a", "b", "b", "c", "c")
    assert unit_differences(differences, groups).tolist() == pytest.approx([0.1, 0.4])

    rng = np.random.default_rng(7)
    base = rng.uniform(0.5, 0.8, 12)
    other = base + rng.normal(0.02, 0.01, 12)
    base[[2, 5]] = np.nan
    table = build_tables(
        [made for made, _ in _write_and_return(tmp_path, [_paired_record("none", 0, base),
                                                          _paired_record("gfla", 0, other)])],
        results_dir=tmp_path,
    )[0]
    difference = table.differences["gfla"]["ssim"].difference
    defined = np.isfinite(base)
    assert difference.image_count == 10 and difference.mean == pytest.approx(float((other - base)[defined].mean()))



def test_an_interval_that_cannot_be_computed_is_na_with_its_reason(tmp_path, monkeypatch):
    import bench.leaderboard.paired as paired

    def undefined(per_seed):
        raise ValueError("scipy's BCa interval is undefined for these 6 differences")

    monkeypatch.setattr(paired, "paired_interval", undefined)
    rng = np.random.default_rng(8)
    base = rng.uniform(0.5, 0.8, 12)
    _write_paired(tmp_path, [_paired_record("none", 0, base), _paired_record("gfla", 0, base + 0.01)])
    write_leaderboards(tmp_path)  # the whole board is written
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert _difference_row(markdown, "gfla")[2].startswith("n/a")
    assert "BCa interval is undefined for these 6 differences" in markdown


def _write_and_return(results_dir: Path, items: list[tuple]) -> list[tuple]:
    _write_paired(results_dir, items)
    return items
