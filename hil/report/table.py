"""One table model for every report: a title, columns, rows of cells, a caption; rendered to the
terminal (rich), Markdown and HTML.

A table is defined once, from the pipeline's dataclasses, as plain text cells with a tone
(bad, warn); the renderers only lay it out. So the console, report.html and the Markdown of
docs/ show the same figures, formatted the same way, and cannot drift apart.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from enum import StrEnum

from rich.markup import escape as rich_escape
from rich.table import Table as RichTable


class Tone(StrEnum):
    """How a cell is marked: the console colours it, the HTML page gives it a class."""

    PLAIN = ""
    BAD = "bad"  # a difference, a failure: red
    WARN = "warn"  # incomplete, skipped: yellow


RICH_STYLES = {Tone.BAD: "red", Tone.WARN: "yellow"}


@dataclass(frozen=True)
class Cell:
    text: str
    tone: Tone = Tone.PLAIN
    hover: str = ""  # HTML only: the whole value where the cell shows part of it (a hash)


def bad(text: object) -> Cell:
    return Cell(str(text), Tone.BAD)


def warn(text: object) -> Cell:
    return Cell(str(text), Tone.WARN)


@dataclass(frozen=True)
class Column:
    name: str
    numeric: bool = False  # right-aligned
    no_wrap: bool = False  # the console keeps it on one line


@dataclass(frozen=True)
class Table:
    title: str
    columns: list[Column]
    rows: list[list[Cell]]
    caption: str = ""
    sections: frozenset[int] = field(default_factory=frozenset)  # rows that start a group (a new board)

    @classmethod
    def of(cls, title: str, columns: list[Column | str], rows: list[list[Cell | str]], caption: str = "",
           sections: frozenset[int] = frozenset()) -> Table:
        """Columns given by name are numeric when every cell of theirs reads as a number."""
        rows = [[cell if isinstance(cell, Cell) else Cell(str(cell)) for cell in row] for row in rows]
        shaped = [column if isinstance(column, Column) else
                  Column(column, numeric=bool(index) and all(_reads_numeric(row[index].text) for row in rows))
                  for index, column in enumerate(columns)]
        return cls(title, shaped, rows, caption, frozenset(sections))


def _reads_numeric(text: str) -> bool:
    return text[:1].isdigit() or text[:1] in "+-"


def by_board(slots: list[str]) -> frozenset[int]:
    """The rows where the board changes, for rows in board order."""
    return frozenset(i for i in range(1, len(slots)) if slots[i] != slots[i - 1])


def to_rich(table: Table) -> RichTable:
    rich = RichTable(title=rich_escape(table.title), title_justify="left", caption=rich_escape(table.caption) or None,
                     caption_justify="left")
    for column in table.columns:
        rich.add_column(rich_escape(column.name), justify="right" if column.numeric else "left",
                        no_wrap=column.no_wrap)
    for index, row in enumerate(table.rows):
        if index in table.sections:
            rich.add_section()
        rich.add_row(*(_rich_cell(cell) for cell in row))
    return rich


def _rich_cell(cell: Cell) -> str:
    text = rich_escape(cell.text)
    return f"[{RICH_STYLES[cell.tone]}]{text}[/{RICH_STYLES[cell.tone]}]" if cell.tone in RICH_STYLES else text


def to_markdown(table: Table) -> str:
    lines = [f"**{table.title}**", "", "| " + " | ".join(c.name for c in table.columns) + " |",
             "|" + "|".join("---" for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(cell.text for cell in row) + " |" for row in table.rows]
    if table.caption:
        lines += ["", table.caption]
    return "\n".join(lines) + "\n"


def to_html(table: Table, heading: str = "h2") -> str:
    """The title as a heading, the table, the caption under it; every text escaped."""
    head = "".join(f"<th>{html.escape(c.name)}</th>" for c in table.columns)
    body = []
    for index, row in enumerate(table.rows):
        cells = "".join(_html_cell(cell, column) for cell, column in zip(row, table.columns))
        body.append(f'<tr class="section">{cells}</tr>' if index in table.sections else f"<tr>{cells}</tr>")
    caption = f'<p class="muted">{html.escape(table.caption)}</p>' if table.caption else ""
    return (f"<{heading}>{html.escape(table.title)}</{heading}><table><thead><tr>{head}</tr></thead><tbody>\n"
            + "\n".join(body) + f"\n</tbody></table>{caption}")


def _html_cell(cell: Cell, column: Column) -> str:
    text = html.escape(cell.text)
    if cell.hover:
        text = f'<code title="{html.escape(cell.hover)}">{text}</code>'
    if cell.tone is not Tone.PLAIN:
        text = f'<span class="{cell.tone}">{text}</span>'
    return f"<td class=n>{text}</td>" if column.numeric else f"<td>{text}</td>"
