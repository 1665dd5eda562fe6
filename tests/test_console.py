"""The terminal output read from a log (stdout not a TTY): numbers and names whole, progress sparse."""

from __future__ import annotations

import io
import re

from rich.console import Console

from bench.cli import LogProgress, fit_console_to_output, main
from cli_runs import bench_args, records


def test_check_data_prints_a_long_path_whole_on_one_line(tmp_path, capsys):
    root = tmp_path / ("a_dataset_directory_whose_name_alone_is_longer_than_a_terminal_line_" * 2) / "persons"
    root.mkdir(parents=True)
    assert main(["check-data", "pose_synthetic", "--root", str(root)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(str(root)) > 120
    assert any(f"{root}: " in line and "problem(s) for task pose_synthetic" in line for line in lines), lines
    problems = [line for line in lines if line.startswith("  - ")]
    assert problems and all(str(root) in line for line in problems)  # each problem names its file in full


def test_run_summary_in_a_log_shows_every_value_and_name_whole(tmp_path, capsys):
    assert main(bench_args(tmp_path, "--methods", "none", "--set", "train.eval_every=0")) == 0
    out = capsys.readouterr().out
    [record] = records(tmp_path)
    assert record["status"] == "ok", record["error"]
    row = next(line for line in out.splitlines() if "pose_synthetic" in line and "│ ok" in line)
    for name in ("ssim", "psnr", "l1"):
        assert f" {record['metrics'][name]['value']:.4g} " in row, row
    assert "…" not in out
    assert "\r" not in out and "\x1b" not in out  # no live-display redraws, no colour codes
    train_lines = [line for line in out.splitlines() if re.match(r"pose_synthetic/none/seed0 train none: ", line)]
    steps = record["config"]["train"]["stage2_steps"]
    assert train_lines[-1].startswith(f"pose_synthetic/none/seed0 train none: {steps}/{steps} (100%, ")


def test_log_progress_prints_the_start_every_quarter_and_the_end():
    stream = io.StringIO()
    target = Console(file=stream)
    fit_console_to_output(target)
    progress = LogProgress(target)
    for done in range(1, 201):
        progress.update("task/method/seed0 train method", done, 200)
    lines = [re.sub(r", \d+ s\)$", ")", line) for line in stream.getvalue().splitlines()]
    assert lines == [f"task/method/seed0 train method: {done}/200 ({done // 2}%)" for done in (1, 50, 100, 150, 200)]


def test_a_terminal_keeps_rich_defaults():
    terminal = Console(file=io.StringIO(), force_terminal=True)
    fit_console_to_output(terminal)
    assert terminal.width < 1000 and not terminal.soft_wrap
    log = Console(file=io.StringIO())
    fit_console_to_output(log)
    assert log.width == 1000 and log.soft_wrap
    log.print("x" * 300)
    assert log.file.getvalue() == "x" * 300 + "\n"
