"""One document model, two renderings: Markdown (figures linked) and self-contained HTML.

The HTML embeds every figure as a base64 PNG data URI and carries its CSS inline, so
it opens offline from anywhere (an MLflow artifact, an e-mail attachment) with no CDN.
Paragraph text may use two bits of inline markup, `**bold**` and `` `code` ``.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.report.tables import Table

_NUMBER = re.compile(r"^[−+-]?[\d,]*\.?\d+%?$|^–$")


@dataclass(frozen=True)
class Heading:
    """A section heading (level 2 = a section of the report)."""

    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of text with Markdown emphasis (`**bold**`, `code`)."""

    text: str


@dataclass(frozen=True)
class Bullets:
    """A bulleted list."""

    items: tuple[str, ...]


@dataclass(frozen=True)
class FigureRef:
    """A PNG in the figures folder, by file name."""

    filename: str
    caption: str


Block = Heading | Paragraph | Bullets | Table | FigureRef


def _numeric_columns(table: Table) -> list[bool]:
    """Columns whose every cell is a number (or '–'): right-aligned, as numbers should be."""
    return [all(_NUMBER.match(str(v)) for v in table.frame[c]) for c in table.frame.columns]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# ---------------------------------------------------------------------------- Markdown


def _md_cell(text: str, bold: bool) -> str:
    text = str(text).replace("|", "\\|").replace("\n", " ")
    return f"**{text}**" if bold and text else text


def markdown_table(table: Table) -> str:
    """A GitHub-flavoured Markdown table (no `tabulate` needed), caption in italics below."""
    cols = list(table.frame.columns)
    lines = ["| " + " | ".join(_md_cell(c, False) for c in cols) + " |"]
    lines.append("|" + "|".join("---:" if num else ":---" for num in _numeric_columns(table)) + "|")
    for i, row in enumerate(table.frame.itertuples(index=False)):
        cells = [_md_cell(v, (i, c) in table.bold) for c, v in zip(cols, row, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    if table.caption:
        lines += ["", f"*{table.caption}*"]
    return "\n".join(lines)


def render_markdown(blocks: list[Block], title: str, figures_rel: str) -> str:
    """The report as Markdown; figures are relative links `figures_rel/<file>`."""
    out = [f"# {title}"]
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Paragraph):
            out.append(b.text)
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Table):
            out.append(markdown_table(b))
        elif isinstance(b, FigureRef):
            out.append(f"![{b.caption}]({figures_rel}/{b.filename})\n\n*{b.caption}*")
    return "\n\n".join(out) + "\n"


# -------------------------------------------------------------------------------- HTML

_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2329;
       margin: 0; background: #f6f7f9; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 1.9em; margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #dde1e6;
     padding-bottom: .2em; } h3 { margin-top: 1.4em; }
nav { font-size: .92em; color: #56606b; } nav a { margin-right: 1em; color: #2b6cb0; text-decoration: none; }
.table-wrap { overflow-x: auto; margin: .8em 0 .2em; }
table { border-collapse: collapse; font-size: .92em; }
th, td { padding: 5px 10px; border-bottom: 1px solid #e4e7eb; text-align: left; vertical-align: top; }
th { background: #eef1f5; font-weight: 600; } tbody tr:nth-child(even) { background: #fafbfc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.caption, figcaption { color: #56606b; font-size: .88em; margin: .3em 0 1.2em; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eef0f2; }
code { background: #f1f3f5; padding: 1px 4px; border-radius: 3px; font-size: .9em; }
"""


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def html_table(table: Table) -> str:
    """An HTML table of escaped cells; numeric columns right-aligned, bold cells in <strong>."""
    cols, num = list(table.frame.columns), _numeric_columns(table)
    head = "".join(f"<th{' class=num' if n else ''}>{html.escape(str(c))}</th>" for c, n in zip(cols, num, strict=True))
    body = []
    for i, row in enumerate(table.frame.itertuples(index=False)):
        cells = []
        for c, v, n in zip(cols, row, num, strict=True):
            text = html.escape(str(v))
            text = f"<strong>{text}</strong>" if (i, c) in table.bold and text else text
            cells.append(f"<td{' class=num' if n else ''}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    out = f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
    return out + (f'<p class="caption">{_inline(table.caption)}</p>' if table.caption else "")


def png_data_uri(path: Path) -> str:
    """A PNG file as a `data:image/png;base64,...` URI."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _html_block(b: Block, figures_dir: Path) -> str:
    if isinstance(b, Heading):
        return f'<h{b.level} id="{_slug(b.text)}">{html.escape(b.text)}</h{b.level}>'
    if isinstance(b, Paragraph):
        return f"<p>{_inline(b.text)}</p>"
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>"
    if isinstance(b, Table):
        return html_table(b)
    caption = _inline(b.caption)
    img = f'<img src="{png_data_uri(figures_dir / b.filename)}" alt="{html.escape(b.caption)}">'
    return f"<figure>{img}<figcaption>{caption}</figcaption></figure>"


def render_html(blocks: list[Block], title: str, figures_dir: Path) -> str:
    """The report as one HTML page with inline CSS and embedded figures (opens offline)."""
    sections = [b for b in blocks if isinstance(b, Heading) and b.level == 2]
    nav = " ".join(f'<a href="#{_slug(h.text)}">{html.escape(h.text)}</a>' for h in sections)
    body = "\n".join(_html_block(b, figures_dir) for b in blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        f"<h1>{html.escape(title)}</h1>\n<nav>{nav}</nav>\n{body}\n</main>\n</body>\n</html>\n"
    )
