"""HTML building blocks of the reports: one page of sections, tables, embedded figures.

Pages are self-contained: figures are embedded as base64 PNG, the CSS is inline, and there are
no scripts, so a report opens offline in any browser.
"""

from __future__ import annotations

import base64
import html
import logging
import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from bids_decode._version import __version__
from bids_decode.reports.figures import ReportFigure

LOGGER = logging.getLogger(__name__)

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#222;
line-height:1.45;background:#fff}
header{background:#23395d;color:#fff;padding:14px 28px}
header h1{margin:0;font-size:1.5em} header p{margin:4px 0 0;opacity:.85}
nav{padding:8px 28px;background:#eef1f6;border-bottom:1px solid #d5dbe5;font-size:.92em}
nav a{margin-right:14px;color:#23395d}
main{padding:8px 28px 40px;max-width:1400px}
h2{border-bottom:2px solid #23395d;padding-bottom:3px;margin-top:34px}
table{border-collapse:collapse;margin:8px 0 14px;font-size:.88em}
th,td{border:1px solid #ccd3df;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef1f6} td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:14px 0 22px} figure img{max-width:100%;height:auto;border:1px solid #e3e6ec}
figcaption{font-size:.9em;color:#444;max-width:1000px}
.note{background:#fff7e0;border-left:4px solid #e0a800;padding:6px 12px;margin:8px 0}
.warn{background:#fdecea;border-left:4px solid #d33;padding:6px 12px;margin:8px 0}
.cite{background:#f4f6f9;border-left:4px solid #23395d;padding:8px 14px;max-width:1000px}
code{background:#f1f1f1;padding:0 3px}
"""


def esc(x) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return "n/a" if not np.isfinite(v) else f"{v:.3f}" if abs(v) < 1e4 else f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v) if v else "—"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {x}" for k, x in v.items()) if v else "—"
    return "—" if v is None or v == "" else str(v)


def table(rows: Sequence[Mapping] | pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """An HTML table of dict rows (or a DataFrame); numbers right-aligned, 3 decimals."""
    if isinstance(rows, pd.DataFrame):
        columns = list(columns or rows.columns)
        rows = rows.to_dict("records")
    rows = list(rows)
    if not rows:
        return "<p><em>(none)</em></p>"
    columns = list(columns or rows[0].keys())
    out = ["<table><thead><tr>", *(f"<th>{esc(c)}</th>" for c in columns), "</tr></thead><tbody>"]
    for r in rows:
        out.append("<tr>")
        for c in columns:
            v = r.get(c)
            num = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            out.append(f"<td{' class=num' if num else ''}>{esc(_fmt(v))}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def kv_table(items: Mapping) -> str:
    return table([{"item": k, "value": _fmt(v)} for k, v in items.items()], ["item", "value"])


def img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def figure_html(fig: ReportFigure) -> str:
    return (f'<figure id="{esc(fig.name)}">{img(fig.png, fig.title)}'
            f"<figcaption><b>{esc(fig.title)}.</b> {esc(fig.caption)}</figcaption></figure>")


def note(text: str, cls: str = "note") -> str:
    return f'<div class="{cls}">{esc(text)}</div>'


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """A complete HTML page; ``sections`` are (anchor, heading, body html)."""
    nav = "".join(f'<a href="#{esc(a)}">{esc(h)}</a>' for a, h, _ in sections)
    body = "".join(f'<section id="{esc(a)}"><h2>{esc(h)}</h2>{b}</section>'
                   for a, h, b in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>"
            f"<nav>{nav}</nav><main>{body}</main></body></html>\n")


def stamp() -> str:
    return f"bids_decode {__version__}, {time.strftime('%Y-%m-%d %H:%M')}"
