"""The Markdown leaderboard (``leaderboard.md``)."""

from __future__ import annotations

from collections.abc import Sequence

from bench.leaderboard.metric_info import metric_header, metric_label
from bench.leaderboard.model import ROLE_BLOCK_TITLE, STD_NOTE, Row, Table, dims, summary_text
from bench.leaderboard.reported import format_reported


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_marks(marks: Sequence[int]) -> str:
    return "".join(f" [{m}]" for m in marks)


def _rows_markdown(table: Table, rows: Sequence[Row]) -> list[str]:
    lines = ["| Method | n | " + " | ".join(_md(c.label) for c in table.columns) + " |"]
    lines.append("|:--|--:|" + "--:|" * len(table.columns))
    for row in rows:
        cells = []
        for column in table.columns:
            entry = row.entries[column.metric]
            text = f"**{entry.text}**" if entry.best else entry.text
            cells.append(text + _md_marks(entry.notes))
        method = _md(row.label) + _md_marks(row.notes)
        lines.append(f"| {method} | {row.seeds_text} | " + " | ".join(cells) + " |")
    return lines


def _differences_markdown(table: Table) -> list[str]:
    """The paired-difference block: a table (when there is a baseline row) and its notes."""
    lines = []
    if table.differences:
        lines += [f"**{_md(table.difference_title())}:**", ""]
        lines.append("| Method | n | " + " | ".join(_md(c.difference_label) for c in table.columns) + " |")
        lines.append("|:--|--:|" + "--:|" * len(table.columns))
        for row, seeds, differences in table.difference_rows():
            cells = [_md(differences[c.metric].text).replace("*", "\\*") for c in table.columns]
            lines.append(f"| {_md(row.label)} | {seeds} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [f"- {_md(note)}" for note in table.difference_notes()]
    return lines + [""]


def _table_markdown(table: Table) -> list[str]:
    lines = [f"## {_md(table.title)}", "", f"Task kind: {table.task_kind or '–'}."]
    for label, items in table.setup_notes(code=lambda text: f"`{text}`"):
        lines += ["", f"{_md(label)}: " + ", ".join(f"`{_md(item)}`" for item in items) + "."]
    lines.append("")
    lines += _rows_markdown(table, table.method_rows)
    lines += ["", f"{STD_NOTE}.", ""]
    if table.role_rows:
        lines += [f"**{ROLE_BLOCK_TITLE}:**", "", *_rows_markdown(table, table.role_rows), ""]
    lines += _differences_markdown(table)
    protocol = " · ".join(f"{label} {value}" for label, value in table.protocol_items())
    lines.append(f"Protocol `{table.protocol_key}`: {_md(protocol)}")
    for metric, details in table.metric_protocols.items():
        text = ", ".join(f"{k}={' / '.join(v)}" for k, v in details.items())
        lines.append(f"- {metric_label(metric)} details: {_md(text)}")
    if table.reported:
        lines += ["", "**Reported** (published numbers under their own protocols; not ranked):", ""]
        lines.append(
            "| Method | Resolution | Protocol | "
            + " | ".join(metric_header(m) for m in table.reported_columns)
            + " | Source |"
        )
        lines.append("|:--|:--|:--|" + "--:|" * len(table.reported_columns) + ":--|")
        for index, entry in enumerate(table.reported):
            values = [format_reported(entry.metrics[m]) if m in entry.metrics else "–" for m in table.reported_columns]
            name = f"{_md(entry.method)} ({entry.venue}), reported" + _md_marks(table.reported_notes[index])
            lines.append(
                f"| {name} | {dims(entry.resolution)} | {entry.protocol} | "
                + " | ".join(values)
                + f" | {_md(entry.sources())} |"
            )
        lines.append("")
        lines += [f"- `{name}`: {_md(text)}" for name, text in table.reported_protocols()]
    if table.footnotes:
        lines.append("")
        lines += [f"[{number}] {_md(text)}  " for number, text in enumerate(table.footnotes, start=1)]
    return lines + [""]


def render_markdown(tables: Sequence[Table], records: list[dict]) -> str:
    lines = ["# warpbench leaderboard", "", summary_text(records), ""]
    for table in tables:
        lines += _table_markdown(table)
    return "\n".join(lines).rstrip() + "\n"

