"""A self-contained HTML report of a results directory.

``report.html`` needs nothing beside itself: images and GIFs are embedded as base64 data URIs,
the style sheet is inline, and no external resource is requested.  Per task it shows the
leaderboard tables (with their protocol, footnotes and the reported block), the failed cells with
their errors, sample grids (source | target structure | each method's output | ground truth),
the flow and mask visualisations of flow-based methods per scale, and videos when present.
Everything is derived from the records (never from the current machine), so the output is
reproducible byte for byte.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.leaderboard.curve_plots import learning_curves_html
from bench.leaderboard.metric_info import metric_header
from bench.leaderboard.model import ROLE_BLOCK_TITLE, ROLES, STD_NOTE, Row, Table
from bench.leaderboard.reading import latest_per_cell
from bench.leaderboard.reported import format_reported
from bench.visualize import flow_to_rgb

MIME_TYPES = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

STYLE = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --band: #f6f8fa; --best: #dafbe1;
        --bad: #cf222e; --accent: #0969da; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--ink);
       margin: 0 auto; padding: 24px 32px 64px; max-width: 1400px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; border-bottom: 2px solid var(--line); padding-bottom: 4px; margin-top: 40px; }
h3 { font-size: 16px; margin: 28px 0 8px; }
h4 { font-size: 14px; margin: 18px 0 6px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.sub { color: var(--muted); font-weight: normal; font-size: 14px; }
nav a { color: var(--accent); margin-right: 14px; text-decoration: none; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 10px; }
thead th { background: var(--band); border-bottom: 2px solid var(--line); text-align: right; white-space: nowrap; }
thead th:first-child, thead th.txt, th[scope=row] { text-align: left; }
th[scope=row] { font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.best { font-weight: 700; background: var(--best); }
td.na { color: var(--muted); font-style: italic; }
td.failed, span.failed { color: var(--bad); font-weight: 600; }
sup { color: var(--accent); font-size: 10px; margin-left: 1px; }
table.reported { color: var(--muted); }
table.reported caption, table.board caption { caption-side: top; text-align: left; font-weight: 600;
       color: var(--ink); padding-bottom: 4px; }
.tag { display: inline-block; font-size: 11px; border: 1px solid var(--line); border-radius: 10px;
       padding: 0 7px; margin-left: 6px; color: var(--muted); background: #fff; font-weight: normal; }
.protocol { font-size: 12.5px; color: var(--muted); margin: 4px 0; }
.protocol b { color: var(--ink); font-weight: 600; }
ol.notes { font-size: 12.5px; color: var(--muted); margin: 6px 0; padding-left: 22px; }
table.kv td, table.kv th { padding: 3px 12px 3px 0; text-align: left; font-size: 13px; }
table.samples td, table.samples th { border: none; padding: 3px; text-align: center; font-size: 12px; }
table.samples thead th { background: none; border: none; text-align: center; font-weight: 600; }
table.samples img { width: 112px; image-rendering: pixelated; border: 1px solid var(--line); display: block; }
.missing { display: inline-block; width: 112px; font-size: 11px; color: var(--bad); overflow-wrap: anywhere; }
ul.failures li { margin-bottom: 6px; }
details pre { background: var(--band); padding: 8px; overflow-x: auto; font-size: 12px; max-height: 300px; }
.key { display: flex; align-items: center; gap: 10px; font-size: 12px; color: var(--muted); margin: 4px 0; }
.key img { width: 56px; image-rendering: pixelated; }
.key span { max-width: 720px; }
figure { display: inline-block; margin: 0 16px 8px 0; text-align: center; font-size: 12px; }
figure img { width: 160px; image-rendering: pixelated; border: 1px solid var(--line); }
td.sig { font-weight: 700; color: var(--accent); }
tr.block th { text-align: left; font-style: italic; color: var(--muted); background: var(--band); }
table.paired { margin-top: 14px; }
ul.protocol { padding-left: 18px; max-width: 1100px; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def data_uri(results_dir: Path, relative: str | None) -> str | None:
    """The file at ``results_dir/relative`` as a data URI, or None when missing or outside the dir."""
    if not relative:
        return None
    root = results_dir.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or not path.is_file() or path.suffix.lower() not in MIME_TYPES:
        return None
    payload = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"data:{MIME_TYPES[path.suffix.lower()]};base64,{payload}"


def _image(results_dir: Path, relative: str | None, alt: str) -> str:
    uri = data_uri(results_dir, relative)
    if uri is None:
        return f'<span class="missing">missing: {_e(relative or "not recorded")}</span>'
    return f'<img src="{uri}" alt="{_e(alt)}" title="{_e(relative)}">'


def _marks(numbers: tuple[int, ...] | list[int]) -> str:
    return "".join(f"<sup>{n}</sup>" for n in numbers)


def _rows(table: Table, rows: list[Row]) -> list[str]:
    body = []
    for row in rows:
        cells = []
        for column in table.columns:
            entry = row.entries[column.metric]
            kind = {"n/a": "na", "missing": "na", "failed": "failed"}.get(entry.status, "")
            classes = " ".join(filter(None, ["num", kind, "best" if entry.best else ""]))
            cells.append(f'<td class="{classes}">{_e(entry.text)}{_marks(entry.notes)}</td>')
        method = f'<th scope="row">{_e(row.label)}{_marks(row.notes)}</th>'
        body.append(f'<tr>{method}<td class="num">{_e(row.seeds_text)}</td>{"".join(cells)}</tr>')
    return body


def _block_header(table: Table, title: str) -> str:
    return f'<tr class="block"><th colspan="{len(table.columns) + 2}">{_e(title)}</th></tr>'


def _differences(table: Table) -> str:
    """The paired-difference table (methods, then oracle and floor rows) and its notes."""
    notes = '<ul class="protocol">' + "".join(f"<li>{_e(n)}</li>" for n in table.difference_notes()) + "</ul>"
    if not table.differences:
        return notes
    head = "".join(f"<th>{_e(c.difference_label)}</th>" for c in table.columns)
    body, previous_role = [], "method"
    for row, seeds, differences in table.difference_rows():
        if row.role in ROLES and previous_role not in ROLES:
            body.append(_block_header(table, ROLE_BLOCK_TITLE))
        previous_role = row.role
        cells = []
        for column in table.columns:
            entry = differences[column.metric]
            kind = "sig" if entry.significant else "na" if entry.difference.mean is None else ""
            cells.append(f'<td class="{" ".join(filter(None, ["num", kind]))}">{_e(entry.text)}</td>')
        body.append(f'<tr><th scope="row">{_e(row.label)}</th><td class="num">{seeds}</td>{"".join(cells)}</tr>')
    return (
        f'<table class="board paired"><caption>{_e(table.difference_title())}</caption>'
        f"<thead><tr><th>Method</th><th>n</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{notes}"
    )


def _board(table: Table) -> str:
    head = "".join(f"<th>{_e(c.label)}</th>" for c in table.columns)
    body = _rows(table, table.method_rows)
    if table.role_rows:
        body += [_block_header(table, ROLE_BLOCK_TITLE), *_rows(table, table.role_rows)]
    protocol = " · ".join(f"<b>{_e(label)}</b> {_e(value)}" for label, value in table.protocol_items())
    details = "".join(
        f"<li><b>{_e(metric)}</b>: " + _e(", ".join(f"{k}={' / '.join(v)}" for k, v in values.items())) + "</li>"
        for metric, values in table.metric_protocols.items()
    )
    if details:
        details = (
            f'<details class="protocol"><summary>how each metric was computed</summary><ul>{details}</ul></details>'
        )
    parts = [
        '<table class="board">',
        f"<thead><tr><th>Method</th><th>n</th>{head}</tr></thead>",
        f"<tbody>{''.join(body)}</tbody></table>",
        f'<div class="protocol">{_e(STD_NOTE)}.</div>',
        _differences(table),
        f'<div class="protocol"><b>Protocol</b> <code>{_e(table.protocol_key)}</code>: {protocol}</div>',
        details,
    ]
    if table.reported:
        parts.append(_reported(table))
    if table.footnotes:
        parts.append('<ol class="notes">' + "".join(f"<li>{_e(t)}</li>" for t in table.footnotes) + "</ol>")
    return "\n".join(parts)


def _reported(table: Table) -> str:
    head = "".join(f"<th>{_e(metric_header(m))}</th>" for m in table.reported_columns)
    rows = []
    for index, entry in enumerate(table.reported):
        values = "".join(
            f'<td class="num">{_e(format_reported(entry.metrics[m])) if m in entry.metrics else "–"}</td>'
            for m in table.reported_columns
        )
        resolution = "×".join(map(str, entry.resolution))
        rows.append(
            f'<tr><th scope="row">{_e(entry.method)} <span class="sub">{_e(entry.venue)}</span>'
            f"{_marks(table.reported_notes[index])}</th><td>{_e(resolution)}</td><td>{_e(entry.protocol)}</td>"
            f"{values}<td>{_e(entry.sources())}</td></tr>"
        )
    protocols = "".join(
        f'<div class="protocol"><b>{_e(name)}</b>: {_e(text)}</div>' for name, text in table.reported_protocols()
    )
    return (
        '<table class="board reported"><caption>Reported <span class="tag">published numbers, other '
        "protocols: not ranked with the table above</span></caption>"
        f'<thead><tr><th>Method</th><th class="txt">Resolution</th><th class="txt">Protocol</th>{head}'
        '<th class="txt">Source</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>{protocols}"
    )


# ---------------------------------------------------------------------------------------------
# Failures, samples, flows, videos
# ---------------------------------------------------------------------------------------------
def _failures(table: Table) -> str:
    items = []
    for row in table.rows:
        for record in row.records:
            if record["status"] != "failed":
                continue
            error = record.get("error") or {}
            trace = error.get("traceback")
            items.append(
                f'<li><span class="failed">{_e(row.method)} seed {_e(record["cell"]["seed"])} failed</span>'
                f" in {_e(error.get('phase') or '?')}: <code>{_e(error.get('type') or 'error')}</code> "
                f"{_e(error.get('message') or '')}"
                + (f"<details><summary>traceback</summary><pre>{_e(trace)}</pre></details>" if trace else "")
                + "</li>"
            )
    return f'<h4>Failed cells</h4><ul class="failures">{"".join(items)}</ul>' if items else ""


def _sample_record(row: Row) -> dict | None:
    """The lowest-seed successful record of a method that has samples."""
    for record in row.records:
        if record["status"] == "ok" and (record.get("artifacts") or {}).get("samples"):
            return record
    return None


def _label(path: str) -> str:
    """``samples/<key>/0_flow_s1.png`` -> ``flow s1``."""
    stem = Path(path).stem
    return stem.split("_", 1)[1].replace("_", " ") if "_" in stem else stem


def _samples(results_dir: Path, table: Table) -> str:
    shown = [(row.method, record) for row in table.rows if (record := _sample_record(row))]
    if not shown:
        return ""
    first = shown[0][1]["artifacts"]["samples"]
    count = max(len(record["artifacts"]["samples"]) for _, record in shown)
    head = "<th></th><th>source</th><th>target structure</th>"
    head += "".join(f"<th>{_e(method)}</th>" for method, _ in shown) + "<th>ground truth</th>"
    rows = []
    for index in range(count):
        base = first[index] if index < len(first) else {}
        cells = [
            f"<th>#{index}</th>",
            f"<td>{_image(results_dir, base.get('source'), 'source')}</td>",
            f"<td>{_image(results_dir, base.get('structure'), 'target structure')}</td>",
        ]
        for method, record in shown:
            samples = record["artifacts"]["samples"]
            output = samples[index].get("output") if index < len(samples) else None
            cells.append(f"<td>{_image(results_dir, output, f'{method} output')}</td>")
        cells.append(f"<td>{_image(results_dir, base.get('target'), 'ground truth')}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    grid = f'<table class="samples"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    seeds = ", ".join(f"{method} seed {record['cell']['seed']}" for method, record in shown)
    return f'<h4>Samples</h4><div class="protocol">{_e(seeds)}</div>{grid}' + _flows(results_dir, shown)


def _flow_key(size: int = 41) -> str:
    """A colour wheel legend drawn with the same ``flow_to_rgb`` as the flow pictures."""
    radius = size // 2
    yy, xx = np.mgrid[0:size, 0:size] - radius
    wheel = flow_to_rgb(np.stack([xx, yy]).astype(float), max_magnitude=radius)
    wheel[np.hypot(xx, yy) > radius] = 255
    buffer = io.BytesIO()
    Image.fromarray(wheel).save(buffer, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        f'<div class="key"><img src="{uri}" alt="flow colour key">'
        "<span>Flow colour key: hue = direction the source is sampled from (right red, down yellow-green, "
        "left cyan, up violet), saturation = magnitude relative to the field's largest (with ground truth: the "
        "ground-truth flow's largest, every flow in image pixels), white = no motion. "
        "Masks: white = warped source used, black = generated; visibility gt: white = visible in the source."
        "</span></div>"
    )


def _flows(results_dir: Path, shown: list[tuple[str, dict]]) -> str:
    """Per flow-based method: for every sample, its flow and mask pictures per scale."""
    parts = []
    for method, record in shown:
        samples = record["artifacts"]["samples"]
        if not any(sample.get("flows") for sample in samples):
            continue
        rows = []
        for index, sample in enumerate(samples):
            pictures = [p for pair in zip(sample.get("flows", []), sample.get("masks", [])) for p in pair]
            pictures += sample.get("flows", [])[len(sample.get("masks", [])) :]
            pictures = [sample[key] for key in ("flow_gt", "visibility_gt") if sample.get(key)] + pictures
            cells = "".join(f"<td>{_image(results_dir, p, _label(p))}<div>{_e(_label(p))}</div></td>" for p in pictures)
            rows.append(f"<tr><th>#{index}</th>{cells}</tr>")
        parts.append(
            f"<h4>{_e(method)}: flow and occlusion mask per scale</h4>{_flow_key()}"
            f'<table class="samples"><tbody>{"".join(rows)}</tbody></table>'
        )
    return "".join(parts)


def _videos(results_dir: Path, table: Table) -> str:
    figures = []
    for row in table.rows:
        record = next((r for r in row.records if (r.get("artifacts") or {}).get("video")), None)
        if record is not None:
            video = record["artifacts"]["video"]
            figures.append(
                f"<figure>{_image(results_dir, video, f'{row.method} video')}"
                f"<figcaption>{_e(row.method)} seed {_e(record['cell']['seed'])}</figcaption></figure>"
            )
    return f"<h4>Videos</h4><div>{''.join(figures)}</div>" if figures else ""


# ---------------------------------------------------------------------------------------------
# Page
# ---------------------------------------------------------------------------------------------
def _environment(records: list[dict]) -> str:
    """Every environment field with its distinct values (and how many cells had each); unset fields
    are left out, mappings (library versions) are shown as ``name version`` lists."""
    values: dict[str, dict[str, int]] = {}
    for record in records:
        for key, value in (record.get("environment") or {}).items():
            if value is None:
                continue
            if isinstance(value, dict):
                text = " · ".join(f"{name} {version}" for name, version in sorted(value.items()))
            else:
                text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
                text = text if len(text) <= 160 else text[:159] + "…"
            values.setdefault(key, {}).setdefault(text, 0)
            values[key][text] += 1
    if not values:
        return "<p>No environment recorded.</p>"
    rows = []
    for key in sorted(values):
        seen = values[key]
        shown = (
            _e(next(iter(seen)))
            if len(seen) == 1
            else "<br>".join(f"{_e(v)} <span class='sub'>({n} cells)</span>" for v, n in sorted(seen.items()))
        )
        rows.append(f"<tr><th>{_e(key)}</th><td>{shown}</td></tr>")
    return f'<table class="kv"><tbody>{"".join(rows)}</tbody></table>'


def _anchor(task: str) -> str:
    return "task-" + "".join(c if c.isalnum() else "-" for c in task)


def _table_heading(results_dir: Path, table: Table) -> str:
    heading = (
        f"<h3>{_e(table.dataset)} <span class='tag'>profile {_e(table.profile or '–')}</span>"
        f"<span class='tag'>protocol {_e(table.protocol_key)}</span>"
        + (f"<span class='tag'>training {_e(table.training_key)}</span>" if table.training_differences else "")
        + "</h3>"
    )
    return "\n".join([heading, *(f"<p class='sub'>{_e(label)}: {_e(', '.join(items))}</p>"
                                 for label, items in table.setup_notes())])


TableSection = Callable[[Path, Table], str]
TaskSection = Callable[[Path, str, list[Table], list[dict]], str]
# What each table shows, in order (a section returns "" when it has nothing to show).
TABLE_SECTIONS: tuple[TableSection, ...] = (
    _table_heading,
    lambda results_dir, table: _board(table),
    lambda results_dir, table: _failures(table),
    _samples,
    _videos,
)


def _learning_curves(results_dir: Path, task: str, tables: list[Table], records: list[dict]) -> str:
    return learning_curves_html([r for r in latest_per_cell(records) if r["cell"]["task"] == task])


# Sections per task after its tables (results_dir, task, its tables, the records), e.g. figures.
TASK_SECTIONS: tuple[TaskSection, ...] = (_learning_curves,)


def render_report(
    results_dir: Path,
    tables: list[Table],
    records: list[dict],
    task_sections: Sequence[TaskSection] = TASK_SECTIONS,
) -> str:
    """The report as one HTML string (see the module docstring)."""

    results_dir = Path(results_dir)
    latest = latest_per_cell(records)
    failed = sum(r["status"] == "failed" for r in latest)
    created = sorted(str(r.get("created", "")) for r in records)
    span = f"records from {created[0]} to {created[-1]}" if created else "no records"
    tasks = sorted({t.task for t in tables})
    nav = "".join(f'<a href="#{_anchor(task)}">{_e(task)}</a>' for task in tasks)
    body = [
        "<header><h1>warpbench report</h1>",
        f'<div class="sub">{len(latest)} cells ({len(latest) - failed} ok, {failed} failed) · '
        f"{len(records)} records · {_e(span)}</div></header>",
        f"<nav>{nav}</nav>",
        "<h2>Environment</h2>",
        _environment(latest),
    ]
    for task in tasks:
        task_tables = [t for t in tables if t.task == task]
        kinds = ", ".join(sorted({t.task_kind for t in task_tables if t.task_kind}))
        body.append(f'<section id="{_anchor(task)}"><h2>{_e(task)} <span class="sub">{_e(kinds)}</span></h2>')
        for table in task_tables:
            body += [section(results_dir, table) for section in TABLE_SECTIONS]
        body += [section(results_dir, task, task_tables, records) for section in task_sections]
        body.append("</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>warpbench report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body>\n</html>\n"
    )
