"""A self-contained HTML page: sections of text, tables and figures, nothing fetched.

Figures are inlined as PNG data URIs and the page's Content-Security-Policy forbids
loading anything else (no scripts, no remote fonts or images), so one file is the whole
report: it can be mailed, logged to MLflow or opened offline. When the data are
simulated, a banner at the top of the page, the title and every figure say so.

All text is escaped; only this module writes markup.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_path
from ..plotting import SIMULATED_LABEL

SIMULATED_BANNER = (
    "SIMULATED DATA. Every number and figure on this page comes from simulated patients "
    "(msc_response.simulate), not from real people: it describes the simulator, not MSC therapy."
)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:0;color:#1d2330;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:0 24px 48px}
.simulated{position:sticky;top:0;z-index:2;background:#b3261e;color:#fff;font-weight:700;padding:10px 24px;
  letter-spacing:.02em;text-align:center}
h1{font-size:1.7em;margin:24px 0 4px} h2{font-size:1.3em;margin-top:2.2em;border-bottom:2px solid #d6dbe3;padding-bottom:4px}
h3{font-size:1.05em;margin-top:1.6em}
.subtitle{color:#556}
table{border-collapse:collapse;margin:10px 0 6px;font-size:.86em}
th,td{border:1px solid #d6dbe3;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5} td.num{text-align:right;font-variant-numeric:tabular-nums}
caption{caption-side:top;text-align:left;font-weight:600;padding:4px 0}
figure{margin:14px 0} figure img{max-width:100%;height:auto;border:1px solid #e3e6eb}
figcaption{font-size:.86em;color:#445}
.note{background:#fff8e1;border-left:4px solid #e0a800;padding:8px 12px;margin:10px 0}
.warning{background:#fdecea;border-left:4px solid #b3261e;padding:8px 12px;margin:10px 0}
nav ol{columns:2;font-size:.9em} code{background:#f2f4f7;padding:0 3px}
dl{display:grid;grid-template-columns:max-content auto;gap:4px 16px} dt{font-weight:600}
"""

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _slug(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "-", text.lower()).strip("-") or "section"


def _cell(value, digits: int) -> tuple[str, bool]:
    """(text, numeric) of one table cell."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "", False
    if isinstance(value, bool | np.bool_):
        return ("yes" if value else "no"), False
    if isinstance(value, int | np.integer):
        return f"{int(value)}", True
    if isinstance(value, float | np.floating):
        return f"{float(value):.{digits}f}", True
    return str(value), False


def png_data_uri(ax_or_figure, *, simulated: bool, dpi: int = 110) -> str:
    """The figure of ``ax_or_figure`` as a PNG data URI (labelled SIMULATED when it is)."""
    fig = getattr(ax_or_figure, "figure", ax_or_figure)
    if simulated:
        fig.suptitle(SIMULATED_LABEL, color="#b3261e", fontsize=9, fontweight="bold")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@dataclass
class Section:
    """One titled part of the page; ``add_*`` methods append blocks in order."""

    title: str
    anchor: str
    simulated: bool
    blocks: list[str] = field(default_factory=list)
    level: int = 2

    def paragraph(self, text: str) -> Section:
        self.blocks.append(f"<p>{_esc(text)}</p>")
        return self

    def subheading(self, text: str) -> Section:
        self.blocks.append(f"<h3>{_esc(text)}</h3>")
        return self

    def note(self, text: str, *, warning: bool = False) -> Section:
        self.blocks.append(f'<div class="{"warning" if warning else "note"}">{_esc(text)}</div>')
        return self

    def items(self, lines) -> Section:
        self.blocks.append("<ul>" + "".join(f"<li>{_esc(x)}</li>" for x in lines) + "</ul>")
        return self

    def definitions(self, pairs: dict) -> Section:
        body = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in pairs.items())
        self.blocks.append(f"<dl>{body}</dl>")
        return self

    def table(self, df: pd.DataFrame, caption: str | None = None, *, digits: int = 3,
              index: bool = False) -> Section:  # fmt: skip
        """A DataFrame as a table (floats to ``digits`` decimals; the index too with ``index``)."""
        frame = df.reset_index() if index else df
        head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
        rows = []
        for rec in frame.itertuples(index=False):
            cells = []
            for v in rec:
                text, numeric = _cell(v, digits)
                cells.append(
                    f'<td class="num">{_esc(text)}</td>' if numeric else f"<td>{_esc(text)}</td>"
                )
            rows.append("<tr>" + "".join(cells) + "</tr>")
        cap = f"<caption>{_esc(caption)}</caption>" if caption else ""
        self.blocks.append(
            f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
        return self

    def figure(self, ax_or_figure, alt: str, caption: str | None = None) -> Section:
        """A matplotlib figure, inlined as PNG (``alt`` describes it for screen readers)."""
        uri = png_data_uri(ax_or_figure, simulated=self.simulated)
        cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
        self.blocks.append(f'<figure><img src="{uri}" alt="{_esc(alt)}">{cap}</figure>')
        return self

    def html(self) -> str:
        return f'<section id="{self.anchor}"><h2>{_esc(self.title)}</h2>{"".join(self.blocks)}</section>'


class Page:
    """A report page: a title, an optional SIMULATED banner, a table of contents, sections."""

    def __init__(self, title: str, *, simulated: bool, subtitle: str = ""):
        self.title, self.simulated, self.subtitle = title, simulated, subtitle
        self.sections: list[Section] = []

    def section(self, title: str) -> Section:
        anchor = _slug(title)
        taken = {s.anchor for s in self.sections}
        base, i = anchor, 2
        while anchor in taken:
            anchor, i = f"{base}-{i}", i + 1
        s = Section(title, anchor, self.simulated)
        self.sections.append(s)
        return s

    def html(self) -> str:
        title = ("SIMULATED - " if self.simulated else "") + self.title
        banner = (
            f'<div class="simulated" role="alert">{_esc(SIMULATED_BANNER)}</div>'
            if self.simulated
            else ""
        )
        toc = "".join(f'<li><a href="#{s.anchor}">{_esc(s.title)}</a></li>' for s in self.sections)
        sub = f'<p class="subtitle">{_esc(self.subtitle)}</p>' if self.subtitle else ""
        body = "".join(s.html() for s in self.sections)
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head>"
            f"<body>{banner}<main><h1>{_esc(title)}</h1>{sub}"
            f"<nav><ol>{toc}</ol></nav>{body}</main></body></html>\n"
        )

    def write(self, out_dir: str | Path, name: str = "index.html") -> Path:
        """Write the page to ``out_dir/name`` atomically; returns its path."""
        path = Path(out_dir) / name
        with atomic_path(path) as tmp:
            tmp.write_text(self.html(), encoding="utf-8")
            tmp.chmod(0o644)  # a page to read and share (the temporary file is private)
        return path
