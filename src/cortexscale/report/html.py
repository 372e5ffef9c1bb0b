"""HTML pages of the study's summary and tables, for ``snakemake --report``.

Snakemake's report shows an HTML result in a frame but offers a TSV only as a download; the
stages that write ``summary.md`` and the tables therefore also write an HTML page beside each
(same name, ``.html``), which the report lists under its theme (``workflow/rules/report.smk``).

The summary is Markdown of a small subset, converted here without a Markdown library:
``#``/``##``/``###`` headings, ``-`` bullets (nested by two spaces), paragraphs, inline
```code``` and ``**bold**``. Every page is one self-contained file (no script, no external
resource) written atomically.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from cortexscale.errors import MissingInputError
from cortexscale.io.atomic import atomic_path

__all__ = [
    "MAX_ROWS", "TABLE_TITLES", "html_page", "markdown_to_html", "page_path", "table_html",
    "write_summary_html", "write_table_html", "write_table_pages",
]

#: Rows shown on a table's page; the TSV beside it always holds every row.
MAX_ROWS = 5000

#: A title for each table the stages write, by file stem.
TABLE_TITLES = {
    "encoding": "Encoding accuracy of every run, subject and ROI",
    "scaling_fits": "Scaling-law fits",
    "frontier": "Compute frontier",
    "isoflop": "IsoFLOP profiles",
    "allocation": "Compute-optimal allocation",
    "comparisons": "Factor tests on run pairs",
    "pretrained": "Pretrained models: accuracy per model, subject and ROI",
    "pretrained_sample_size": "Pretrained models: accuracy against fMRI training samples",
    "pretrained_fits": "Pretrained models: scaling fits",
}

_STYLE = """
body.cortexscale { font-family: system-ui, -apple-system, "Segoe UI", sans-serif;
  margin: 1.5em; color: #1e293b; line-height: 1.45; max-width: 70em; }
.cortexscale h1 { font-size: 1.5em; } .cortexscale h2 { font-size: 1.25em; margin-top: 1.4em; }
.cortexscale h3 { font-size: 1.05em; } .cortexscale code { background: #f1f5f9; padding: 0 .2em; }
.cortexscale .note { color: #475569; font-size: .9em; }
.cortexscale .scroll { overflow: auto; max-height: 80vh; border: 1px solid #cbd5e1; }
.cortexscale table.data { border-collapse: collapse; font-size: .85em; white-space: nowrap; }
.cortexscale table.data th { position: sticky; top: 0; background: #e2e8f0; text-align: left; }
.cortexscale table.data th, .cortexscale table.data td { padding: .15em .5em;
  border-bottom: 1px solid #e2e8f0; }
.cortexscale table.data tbody tr:nth-child(even) { background: #f8fafc; }
"""

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^( *)[-*]\s+(.*)$")


def _inline(text: str) -> str:
    """Escape ``text`` for HTML and render ```code``` and ``**bold**`` spans."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if len(part) >= 2 and part.startswith("`") and part.endswith("`"):
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
        else:
            escaped = html.escape(part)
            out.append(re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped))
    return "".join(out)


def markdown_to_html(text: str) -> str:
    """Convert the Markdown subset of ``summary.md`` to an HTML fragment.

    Parameters
    ----------
    text : str
        Markdown: ATX headings (``#`` to ``######``), bullet items (``-`` or ``*``; two
        spaces of indent per nesting level), paragraphs separated by blank lines, inline
        ```code``` and ``**bold**``. Any other character is text and is escaped.

    Returns
    -------
    fragment : str
        HTML elements (``h1``-``h6``, ``ul``/``li``, ``p``, ``code``, ``strong``), one
        block (heading, paragraph, outermost list) per line.
    """
    out: list[str] = []
    paragraph: list[str] = []
    depth = 0  # open <ul> levels; each open level has an open <li>

    def close_paragraph() -> None:
        if paragraph:
            out.append(f"<p>{_inline(' '.join(paragraph))}</p>\n")
            paragraph.clear()

    def close_lists(to: int = 0) -> None:
        nonlocal depth
        while depth > to:
            depth -= 1
            out.append("</li></ul>" + ("\n" if depth == 0 else ""))

    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip():
            close_paragraph()
            close_lists()
            continue
        heading = _HEADING.match(line)
        bullet = _BULLET.match(line)
        if heading:
            close_paragraph()
            close_lists()
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>\n")
        elif bullet:
            close_paragraph()
            level = len(bullet.group(1)) // 2 + 1
            level = min(level, depth + 1)  # no skipped levels: deeper indent nests once
            if level > depth:
                out.append("<ul><li>")
                depth += 1
            else:
                close_lists(level)
                out.append("</li><li>")
            out.append(_inline(bullet.group(2)))
        elif depth and raw.startswith(" "):
            out.append(" " + _inline(line.strip()))  # continuation of the open item
        else:
            close_lists()
            paragraph.append(line.strip())
    close_paragraph()
    close_lists()
    return "".join(out)


def html_page(title: str, body: str) -> str:
    """A complete, self-contained HTML5 page (inline style, no script).

    Parameters
    ----------
    title : str
        The page title (plain text; escaped).
    body : str
        HTML fragment inside ``<body>``.
    """
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body class=\"cortexscale\">\n{body}\n</body>\n</html>\n"
    )


def page_path(path: str | os.PathLike) -> Path:
    """The HTML page written beside a table or summary: same name, suffix ``.html``."""
    return Path(path).with_suffix(".html")


def _format(value: object) -> str:
    if isinstance(value, float):
        return "NA" if value != value else f"{value:.4g}"
    return str(value)


def table_html(df: pd.DataFrame, title: str, source: str, max_rows: int = MAX_ROWS) -> str:
    """A table as an HTML page: title, its size, where the full table is, the rows.

    Parameters
    ----------
    df : DataFrame, shape (n_rows, n_columns)
    title : str
    source : str
        The file the table comes from (named on the page).
    max_rows : int, optional
        Rows shown (the first ``max_rows``); the page says when rows were left out.

    Returns
    -------
    page : str
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1; found {max_rows}")
    n_rows, n_cols = df.shape
    shown = df.head(max_rows)
    note = f"{n_rows} row(s) x {n_cols} column(s), from <code>{html.escape(source)}</code>"
    if n_rows > max_rows:
        note += (f"; the first {max_rows} rows are shown here, the file holds all {n_rows}")
    note += ". Numbers are rounded to 4 significant digits; NA: not available."
    if n_cols == 0:
        rows = "<p>The table has no columns.</p>"
    else:
        table = shown.to_html(index=False, border=0, classes="data", na_rep="NA",
                              formatters={c: _format for c in shown.columns}, escape=True)
        rows = f"<div class=\"scroll\">\n{table}\n</div>"
    body = f"<h1>{html.escape(title)}</h1>\n<p class=\"note\">{note}</p>\n{rows}"
    return html_page(title, body)


def write_table_html(
    tsv: str | os.PathLike, out: str | os.PathLike | None = None, title: str | None = None,
    max_rows: int = MAX_ROWS,
) -> Path:
    """Render a TSV table as an HTML page, atomically.

    Parameters
    ----------
    tsv : path-like
        A tab-separated table with a header line.
    out : path-like, optional
        The page (default :func:`page_path` of ``tsv``).
    title : str, optional
        Default: :data:`TABLE_TITLES` of the file stem, else the stem.
    max_rows : int, optional

    Returns
    -------
    out : Path
    """
    tsv = Path(tsv)
    out = page_path(tsv) if out is None else Path(out)
    try:
        df = pd.read_csv(tsv, sep="\t")
    except pd.errors.EmptyDataError:
        df = pd.DataFrame()
    except FileNotFoundError as exc:
        raise MissingInputError(f"table {tsv} does not exist; cannot render its HTML page") from exc
    title = title or TABLE_TITLES.get(tsv.stem, tsv.stem)
    page = table_html(df, title, tsv.name, max_rows=max_rows)
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out


def write_table_pages(tsvs: Sequence[str | os.PathLike]) -> list[Path]:
    """Write the HTML page beside each table (:func:`write_table_html`)."""
    return [write_table_html(t) for t in tsvs]


def write_summary_html(md: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Render ``summary.md`` as an HTML page (default: ``summary.html`` beside it), atomically.

    The page title is the Markdown's first heading (else the file name).
    """
    md = Path(md)
    out = page_path(md) if out is None else Path(out)
    try:
        text = md.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise MissingInputError(f"summary {md} does not exist; cannot render its page") from exc
    first = next((m.group(2) for m in map(_HEADING.match, text.splitlines()) if m), md.name)
    with atomic_path(out) as tmp:
        tmp.write_text(html_page(first, markdown_to_html(text)), encoding="utf-8")
    return out
