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
from bench.records import RecordsError
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
    first = write_leaderboards(tmp_path)
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
