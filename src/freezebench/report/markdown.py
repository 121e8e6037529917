"""Markdown for the report: escaping, GitHub-style tables, and the one-file HTML page.

The report is written as Markdown first, with its figures as PNG files in ``FIGURES_FOLDER``
beside it; :func:`render_html` turns that Markdown into a self-contained page.
"""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path
from typing import Any

import pandas as pd
from markdown_it import MarkdownIt
from PIL import Image

FIGURES_FOLDER = "report_files"


def md_escape(text: str) -> str:
    """``text`` shown literally in Markdown (a label with | or * does not break a table)."""
    # An underscore inside a word (rotten_tomatoes) is never emphasis, so it stays readable.
    text = re.sub(r"([\\`*\[\]<>|#])", r"\\\1", text)
    return re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", text)


def markdown_table(frame: pd.DataFrame, numeric: bool = True) -> str:
    """A GitHub-style table; with ``numeric``, every column after the first is right-aligned."""
    def cell(value: Any) -> str:
        return md_escape(str(value)).replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    align = "|" + "|".join(":---" if i == 0 or not numeric else "---:"
                           for i in range(len(frame.columns))) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([header, align, *body])


# Screen: prose at a readable line length, figures at their drawn size (shrunk to fit), wide
# tables scroll inside their own box with the strategy column kept in view. Print: a figure and
# its caption are never split across pages, headings stay with what follows, and tables wrap
# to the page's width instead of hiding columns behind a scroll bar.
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1180px;
margin:2rem auto;padding:0 1rem;color:#1d232b;line-height:1.5}
p,ul,ol{max-width:52rem}p:has(>img){max-width:none}
h1{font-size:1.7rem;border-bottom:2px solid #1f5fa8;padding-bottom:.3rem}
h2{font-size:1.3rem;margin-top:2.2rem;border-bottom:1px solid #d6dbe1}
h3{font-size:1.1rem;margin-top:1.6rem}
table{border-collapse:separate;border-spacing:0;display:block;overflow-x:auto;max-width:100%;
width:max-content;font-size:.88rem;margin:1rem 0;border-left:1px solid #d6dbe1}
th,td{border:1px solid #d6dbe1;border-width:1px 1px 0 0;padding:.35rem .6rem;
white-space:nowrap;background:#fff}
table::-webkit-scrollbar{height:10px}table::-webkit-scrollbar-thumb{background:#b8c2cc;
border-radius:5px}table::-webkit-scrollbar-track{background:#eef2f7}
tr:last-child td{border-bottom-width:1px}
th{background:#eef2f7;vertical-align:bottom}tr:nth-child(even) td{background:#f8fafc}
th:first-child,td:first-child{position:sticky;left:0;z-index:1;box-shadow:1px 0 0 #d6dbe1}
img{max-width:100%;height:auto;border:1px solid #e3e7ec}
code{background:#f1f3f5;padding:0 .2rem;border-radius:3px}
@page{size:A4;margin:14mm 12mm}
@media print{
body{max-width:none;margin:0;padding:0;font-size:10pt;line-height:1.4}
p,ul,ol{max-width:none}h1,h2,h3{break-after:avoid}
p:has(>img){break-inside:avoid;break-after:avoid}img{border:0;max-height:240mm}
table{display:table;width:100%;overflow:visible;font-size:7pt;border-collapse:collapse}
th,td{white-space:normal;padding:.15rem .25rem;border-width:1px}
th:first-child,td:first-child{position:static;box-shadow:none}
thead{display:table-header-group}tr{break-inside:avoid}
*{print-color-adjust:exact;-webkit-print-color-adjust:exact}
}
"""


def css_width(png: bytes) -> int:
    """The PNG's width in CSS pixels (96 to the inch) at the resolution it was saved with, so
    that every figure shows at the size it was drawn and its text at the same size as others."""
    with Image.open(io.BytesIO(png)) as image:
        dpi = image.info.get("dpi", (96, 96))[0]
        return round(image.width * 96 / dpi)


def render_html(markdown: str, base_dir: Path, title: str) -> str:
    """The Markdown as one HTML file: inline CSS, every figure embedded as a data URI."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)

    def embed(match: re.Match[str]) -> str:
        data = (base_dir / FIGURES_FOLDER / match.group(1)).read_bytes()
        return (f'src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}" '
                f'width="{css_width(data)}"')

    body = re.sub(rf'src="{FIGURES_FOLDER}/([^"]+\.png)"', embed, body)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
            f"<body>\n{body}</body>\n</html>\n")
