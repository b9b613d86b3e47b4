"""A self-contained HTML page: sections of text, tables and figures, nothing fetched.

Figures are inlined as PNG data URIs and the page's Content-Security-Policy forbids
loading anything else (no scripts, no remote fonts or images), so one file is the whole
report: it can be mailed, logged to MLflow or opened offline. When the data are
simulated, a banner at the top of the page, the title and every figure say so.

Every page says what made it (:class:`Provenance`: package version, git commit, config
digest, date) under its title. Given the feature spec, a table shows each feature by its
label (:mod:`msc_response.feature_labels`) with the code name in a tooltip, and the page
ends with a glossary of both. Numbers are shown as what they are: no "-0.000", integers
without decimals, mappings as "name value" lists; an empty table is one sentence.

All text is escaped; only this module writes markup.

Why not Jinja2 templates (issue 23 asked; measured, not assumed): the package's markup is
the 29 lines of this module that hold a tag, each block escaped by one function, so a
template would not shrink the code; Jinja2's escaping (markupsafe) writes ``'`` and ``"``
as ``&#39;`` and ``&#34;`` where ``html.escape`` writes ``&#x27;`` and ``&quot;``, so every
page with a quote in its text (warnings such as "registered as 'exploratory'") would change
byte for byte; and Jinja2 is not a dependency of this package (it arrives through Flask).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from .. import processes, provenance
from ..config import config_digest
from ..feature_labels import feature_labels
from ..io import atomic_path
from ..plotting import png_bytes, render_pngs

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
details{margin:10px 0;border:1px solid #d6dbe3;border-radius:4px;padding:4px 12px}
summary{cursor:pointer;font-weight:600;padding:4px 0}
.provenance{color:#556;font-size:.82em;margin:2px 0 10px} abbr{text-decoration:underline dotted #99a}
"""

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _slug(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "-", text.lower()).strip("-") or "section"


def number(value: float, digits: int) -> str:
    """``value`` to ``digits`` decimals, never "-0.000" (a value that rounds to zero has no sign)."""
    text = f"{float(value):.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _cell(value, digits: int) -> tuple[str, bool]:
    """(text, numeric) of one table cell (``digits=0``: an integer)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "", False
    if isinstance(value, bool | np.bool_):
        return ("yes" if value else "no"), False
    if isinstance(value, int | np.integer):
        return f"{int(value)}", True
    if isinstance(value, float | np.floating):
        return number(value, digits), True
    if isinstance(value, dict):  # a mapping is read as "name value" pairs, not as Python
        return ", ".join(f"{k} {_cell(v, digits)[0]}" for k, v in value.items()), False
    return str(value), False


def _column_digits(values: pd.Series, digits: int) -> int:
    """0 for a float column that holds only whole numbers (counts read as floats), else ``digits``."""
    if values.dtype.kind != "f":
        return digits
    finite = values.to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    return 0 if len(finite) and np.all(finite == np.round(finite)) else digits


@dataclass(frozen=True)
class Provenance:
    """What made a page: package version, git commit, config digest and when."""

    package_version: str
    git_commit: str
    config_digest: str
    written: str

    @classmethod
    def now(cls, config: dict | None) -> Provenance:
        """This package and checkout, ``config`` (as plain data; None: no config), the current time."""
        return cls(metadata.version("msc-response"), provenance.git_commit(),
                   "none" if config is None else config_digest(config),
                   dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))  # fmt: skip

    def text(self) -> str:
        commit = self.git_commit if self.git_commit == "unknown" else self.git_commit[:12]
        return (f"msc-response {self.package_version}; git commit {commit}; config digest "
                f"{self.config_digest}; written {self.written}")  # fmt: skip


def png_data_uri(figure, *, simulated: bool) -> str:
    """``figure`` as a PNG data URI: PNG bytes as they are (:func:`~msc_response.plotting.png_bytes`,
    the same a run logs), or Axes or a Figure, rendered (labelled SIMULATED when it is)."""
    data = figure if isinstance(figure, bytes) else png_bytes(figure, simulated=simulated)
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


@dataclass
class _Figure:
    """A figure of a section, rendered when the page is (all of a page's at once: :meth:`Page.html`)."""

    figure: object  # Axes, a Figure, PNG bytes already rendered, or a function that draws it
    alt: str
    caption: str | None
    png: bytes | None = None

    def html(self, simulated: bool) -> str:
        uri = png_data_uri(self.figure if self.png is None else self.png, simulated=simulated)
        cap = f"<figcaption>{_esc(self.caption)}</figcaption>" if self.caption else ""
        return f'<figure><img src="{uri}" alt="{_esc(self.alt)}">{cap}</figure>'


@dataclass
class Section:
    """One titled part of the page; ``add_*`` methods append blocks in order."""

    title: str
    anchor: str
    simulated: bool
    blocks: list[str | Section | _Figure] = field(default_factory=list)
    level: int = 2
    #: feature code name -> label (the page's feature spec); such cells show the label
    labels: dict[str, str] = field(default_factory=dict)

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
        body = "".join(
            f"<dt>{_esc(k)}</dt><dd>{_esc(_cell(v, 3)[0])}</dd>" for k, v in pairs.items()
        )
        self.blocks.append(f"<dl>{body}</dl>")
        return self

    def _label(self, text: str) -> str:
        """A feature's code name (alone, or before " = level") as its label, the code in a tooltip."""
        name, sep, rest = text.partition(" = ")
        if name not in self.labels:
            return _esc(text)
        return f'<abbr title="{_esc(name)}">{_esc(self.labels[name])}</abbr>{_esc(sep + rest)}'

    def table(self, df: pd.DataFrame, caption: str | None = None, *, digits: int = 3,
              index: bool = False, empty: str | None = None) -> Section:  # fmt: skip
        """A DataFrame as a table (floats to ``digits`` decimals, whole-number columns as integers;
        the index too with ``index``). No rows: the sentence ``empty`` instead (default: the
        caption and "none")."""
        frame = df.reset_index() if index else df
        if frame.empty:
            return self.paragraph(empty or f"{caption or 'Table'}: none.")
        head = "".join(f"<th>{_esc(c)}</th>" for c in frame.columns)
        col_digits = [_column_digits(frame.iloc[:, j], digits) for j in range(frame.shape[1])]
        rows = []
        for rec in frame.itertuples(index=False):
            cells = []
            for v, d in zip(rec, col_digits, strict=True):
                text, numeric = _cell(v, d)
                cells.append(f'<td class="num">{_esc(text)}</td>' if numeric
                             else f"<td>{self._label(text)}</td>")  # fmt: skip
            rows.append("<tr>" + "".join(cells) + "</tr>")
        cap = f"<caption>{_esc(caption)}</caption>" if caption else ""
        self.blocks.append(
            f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
        return self

    def figure(self, figure, alt: str, caption: str | None = None) -> Section:
        """A matplotlib figure (Axes, Figure, PNG bytes already rendered, or a function of no
        arguments that draws it, called where the page's figures are rendered: in its worker
        processes), inlined as PNG (``alt`` describes it for screen readers). Rendered with
        the page: draw nothing more on a figure once it is added."""
        self.blocks.append(_Figure(figure, alt, caption))
        return self

    def figures(self) -> list[_Figure]:
        """The figures of this section and of its folded parts, in order."""
        out = []
        for b in self.blocks:
            out += [b] if isinstance(b, _Figure) else b.figures() if isinstance(b, Section) else []
        return out

    def details(self, summary: str) -> Section:
        """A folded part of this section (HTML ``<details>``, closed until the reader opens it):
        returns it, to add blocks to as to a section."""
        part = Section(summary, "", self.simulated)
        self.blocks.append(part)
        return part

    def _body(self) -> str:
        return "".join(b if isinstance(b, str) else b.folded_html() if isinstance(b, Section)
                       else b.html(self.simulated) for b in self.blocks)  # fmt: skip

    def folded_html(self) -> str:
        return f"<details><summary>{_esc(self.title)}</summary>{self._body()}</details>"

    def html(self) -> str:
        return f'<section id="{self.anchor}"><h2>{_esc(self.title)}</h2>{self._body()}</section>'


class Page:
    """A report page: a title, an optional SIMULATED banner, its provenance, a warning, a table
    of contents, sections, and a glossary of the feature names when given a feature spec.

    ``config`` is the experiment config as plain data (its digest is shown); ``warning`` is
    what every reader must be told about the model (shown under the title).
    """

    def __init__(self, title: str, *, simulated: bool, subtitle: str = "", config: dict | None = None,
                 feature_spec: list[dict] | None = None, warning: str | None = None,
                 n_jobs: int = 1):  # fmt: skip
        self.title, self.simulated, self.subtitle = title, simulated, subtitle
        self.n_jobs = n_jobs  # processes that render the figures (the same bytes with any number)
        self.config, self.warning = config, warning
        self.labels = feature_labels(feature_spec or [])
        self.sections: list[Section] = []

    def section(self, title: str) -> Section:
        anchor = _slug(title)
        taken = {s.anchor for s in self.sections}
        base, i = anchor, 2
        while anchor in taken:
            anchor, i = f"{base}-{i}", i + 1
        s = Section(title, anchor, self.simulated, labels=self.labels)
        self.sections.append(s)
        return s

    def _glossary(self) -> Section | None:
        if not self.labels:
            return None
        s = Section("Glossary of feature names", "glossary", self.simulated)
        s.paragraph("Tables show each feature by its label; the name in the code, the data and MLflow is "
                    "the column on the right (also shown when the pointer rests on a label).")  # fmt: skip
        return s.table(
            pd.DataFrame({"feature": list(self.labels.values()), "code name": list(self.labels)})
        )

    def html(self) -> str:
        title = ("SIMULATED - " if self.simulated else "") + self.title
        banner = (
            f'<div class="simulated" role="alert">{_esc(SIMULATED_BANNER)}</div>'
            if self.simulated
            else ""
        )
        sections = [*self.sections, *filter(None, [self._glossary()])]
        pending = [
            f
            for s in sections
            for f in s.figures()
            if f.png is None and not isinstance(f.figure, bytes)
        ]
        pngs = render_pngs(
            [f.figure for f in pending], simulated=self.simulated, n_jobs=self.n_jobs
        )
        for f, png in zip(pending, pngs, strict=True):
            f.png = png
        toc = "".join(f'<li><a href="#{s.anchor}">{_esc(s.title)}</a></li>' for s in sections)
        sub = f'<p class="subtitle">{_esc(self.subtitle)}</p>' if self.subtitle else ""
        sub += f'<p class="provenance">{_esc(Provenance.now(self.config).text())}</p>'
        if self.warning:
            sub += f'<div class="warning" role="alert">{_esc(self.warning)}</div>'
        body = "".join(s.html() for s in sections)
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
            processes.checkpoint("page:written")
        return path
