"""Markdown for the report: escaping, GitHub-style tables, and the one-file HTML page.

The report is written as Markdown first, with its figures as PNG files in ``FIGURES_FOLDER``
beside it; :func:`render_html` turns that Markdown into a self-contained page.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

import pandas as pd
from markdown_it import MarkdownIt

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


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1180px;
margin:2rem auto;padding:0 1rem;color:#1d232b;line-height:1.5}
h1{font-size:1.7rem;border-bottom:2px solid #1f5fa8;padding-bottom:.3rem}
h2{font-size:1.3rem;margin-top:2.2rem;border-bottom:1px solid #d6dbe1}
h3{font-size:1.1rem;margin-top:1.6rem}
table{border-collapse:collapse;display:block;overflow-x:auto;font-size:.88rem;margin:1rem 0}
th,td{border:1px solid #d6dbe1;padding:.35rem .6rem;white-space:nowrap}
th{background:#eef2f7}tr:nth-child(even) td{background:#f8fafc}
img{max-width:100%;height:auto;border:1px solid #e3e7ec}
code{background:#f1f3f5;padding:0 .2rem;border-radius:3px}
"""


def render_html(markdown: str, base_dir: Path, title: str) -> str:
    """The Markdown as one HTML file: inline CSS, every figure embedded as a data URI."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)

    def embed(match: re.Match[str]) -> str:
        data = (base_dir / FIGURES_FOLDER / match.group(1)).read_bytes()
        return f'src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}"'

    body = re.sub(rf'src="{FIGURES_FOLDER}/([^"]+\.png)"', embed, body)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
            f"<body>\n{body}</body>\n</html>\n")
