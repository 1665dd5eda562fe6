"""The LaTeX leaderboard (``leaderboard.tex``, booktabs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.leaderboard.metric_info import metric_header
from bench.leaderboard.model import ROLE_BLOCK_TITLE, ROLES, STD_NOTE, Row, Table, dims, summary_text
from bench.leaderboard.reported import format_reported

_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "×": r"$\times$",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
    "–": "--",
    "…": r"\dots{}",
    "·": r"$\cdot$",
    "Δ": r"$\Delta$",
    "−": r"$-$",
}


def tex_escape(text: Any) -> str:
    return "".join(_TEX_ESCAPES.get(char, char) for char in str(text))


def _tex_marks(marks: Sequence[int]) -> str:
    return r"\textsuperscript{" + ",".join(map(str, marks)) + "}" if marks else ""


def _table_latex(table: Table) -> list[str]:
    lines = [
        r"\begin{table}[ht]",
        r"\centering\small",
        r"\begin{tabular}{l r " + "r " * len(table.columns) + "}",
    ]
    lines += [
        r"\toprule",
        " & ".join(["Method", "$n$", *(tex_escape(c.label) for c in table.columns)]) + r" \\",
    ]
    lines.append(r"\midrule")
    lines += _rows_latex(table, table.method_rows)
    if table.role_rows:
        width = len(table.columns) + 2
        lines += [r"\midrule", rf"\multicolumn{{{width}}}{{l}}{{\textit{{{tex_escape(ROLE_BLOCK_TITLE)}}}}} \\"]
        lines += _rows_latex(table, table.role_rows)
    lines += [r"\bottomrule", r"\end{tabular}"]
    protocol = "; ".join(f"{label} {value}" for label, value in table.protocol_items())
    lines.append(
        rf"\caption{{{tex_escape(table.title)}. {tex_escape(STD_NOTE)}. "
        rf"Protocol: {tex_escape(protocol)}.}}"
    )
    lines.append(r"\end{table}")
    if table.reported:
        lines += _reported_latex(table)
    notes = [rf"\textsuperscript{{{n}}}{tex_escape(text)}" for n, text in enumerate(table.footnotes, start=1)]
    if notes:  # after the reported table too, since both share the numbering
        lines.insert(len(lines) - 1, r"\par\footnotesize " + r" \\ ".join(notes))
    return lines + _differences_latex(table) + [""]


def _rows_latex(table: Table, rows: Sequence[Row]) -> list[str]:
    lines = []
    for row in rows:
        cells = [tex_escape(row.label) + _tex_marks(row.notes), tex_escape(row.seeds_text)]
        for column in table.columns:
            entry = row.entries[column.metric]
            text = tex_escape(entry.text)
            text = rf"\textbf{{{text}}}" if entry.best else text
            cells.append(text + _tex_marks(entry.notes))
        lines.append(" & ".join(cells) + r" \\")
    return lines


def _differences_latex(table: Table) -> list[str]:
    """The paired-difference table (methods, then oracle and floor rows) with its notes as caption."""
    notes = " ".join(tex_escape(note) for note in table.difference_notes())
    if not table.differences:
        return [r"\par\footnotesize " + notes]
    lines = [
        r"\begin{table}[ht]",
        r"\centering\small",
        r"\begin{tabular}{l r " + "r " * len(table.columns) + "}",
        r"\toprule",
        " & ".join(["Method", "$n$", *(tex_escape(c.difference_label) for c in table.columns)]) + r" \\",
        r"\midrule",
    ]
    rows = table.difference_rows()
    for index, (row, seeds, differences) in enumerate(rows):
        if index and row.role in ROLES and rows[index - 1][0].role not in ROLES:
            lines.append(r"\midrule")
        cells = [tex_escape(differences[c.metric].text) for c in table.columns]
        lines.append(" & ".join([tex_escape(row.label), seeds, *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines.append(rf"\caption{{{tex_escape(table.title)}: {tex_escape(table.difference_title())}. {notes}}}")
    lines.append(r"\end{table}")
    return lines


def _reported_latex(table: Table) -> list[str]:
    metrics = table.reported_columns
    lines = [
        r"\begin{table}[ht]",
        r"\centering\small",
        r"\begin{tabular}{l l l " + "r " * len(metrics) + "l}",
    ]
    header = [
        "Method (reported)",
        "Resolution",
        "Protocol",
        *(tex_escape(metric_header(m)) for m in metrics),
        "Source",
    ]
    lines += [r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    for index, entry in enumerate(table.reported):
        values = [format_reported(entry.metrics[m]) if m in entry.metrics else "--" for m in metrics]
        name = tex_escape(f"{entry.method} ({entry.venue})") + _tex_marks(table.reported_notes[index])
        lines.append(
            " & ".join(
                [
                    name,
                    tex_escape(dims(entry.resolution)),
                    tex_escape(entry.protocol),
                    *values,
                    tex_escape(entry.sources()),
                ]
            )
            + r" \\"
        )
    lines += [r"\bottomrule", r"\end{tabular}"]
    described = "; ".join(f"{name}: {text}" for name, text in table.reported_protocols())
    lines.append(
        rf"\caption{{Reported numbers for {tex_escape(table.dataset)} (published, not ranked with the "
        rf"reproduced table {tex_escape(table.protocol_key)}). {tex_escape(described)}}}"
    )
    lines.append(r"\end{table}")
    return lines


def render_latex(tables: Sequence[Table], records: list[dict]) -> str:
    lines = [
        r"\documentclass{article}",
        r"\usepackage[utf8]{inputenc}",
        r"\usepackage{booktabs}",
        r"\usepackage[margin=1.5cm,landscape]{geometry}",
        r"\begin{document}",
        r"\section*{warpbench leaderboard}",
        tex_escape(summary_text(records)),
        "",
    ]
    for table in tables:
        lines += _table_latex(table)
    lines.append(r"\end{document}")
    return "\n".join(lines) + "\n"


