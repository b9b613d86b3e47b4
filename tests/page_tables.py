"""Read a report page's tables back (stdlib HTML parser) and find every printed bound outside its range.

What the range of a column is, is read from the page itself: a row's metric label
(``metrics.LABELS``, ``metrics.RANGES``), the column's name (AUROC, predicted probability,
proportions of a measure), a cell-fraction table, and percentages of "x/n (p%; a-b%)".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from msc_response.modeling import metrics


@dataclass
class Table:
    caption: str = ""
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)

    def records(self) -> list[dict[str, str]]:
        return [dict(zip(self.header, r, strict=False)) for r in self.rows]


class _Tables(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables: list[Table] = []
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._in_caption = False
        self._in_head = False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append(Table())
        elif tag == "caption":
            self._in_caption = True
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "caption":
            self._in_caption = False
        elif tag == "thead":
            self._in_head = False
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self.tables:
            if self._in_head:
                self.tables[-1].header = self._row
            else:
                self.tables[-1].rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._in_caption and self.tables:
            self.tables[-1].caption += data
        elif self._cell is not None:
            self._cell.append(data)


def tables(page: Path | str) -> list[Table]:
    parser = _Tables()
    parser.feed(Path(page).read_text(encoding="utf-8"))
    return parser.tables


UNIT = (0.0, 1.0)
_BY_LABEL = {
    label: metrics.RANGES[name] for name, label in metrics.LABELS.items() if name in metrics.RANGES
}
#: Columns (or the start of their names) that hold a probability, a proportion or an AUROC.
_UNIT_COLUMNS = ("AUROC", "mean predicted", "predicted 95% CI", "Brier", "ICI")
_CI = re.compile(r"(?:^|\s)(?:95% )?CI (low|high)$")
_TEXT_INTERVAL = re.compile(r"(-?\d+\.\d+) \((-?\d+\.\d+) to (-?\d+\.\d+)\)")
_PERCENT_INTERVAL = re.compile(r"\((-?\d+\.\d+)%; (-?\d+\.\d+)-(-?\d+\.\d+)%\)")


def _range_of(table: Table, record: dict[str, str], column: str) -> tuple[float, float] | None:
    label = record.get("metric") or record.get("measure") or ""
    if "measure" in record:  # sensitivity, specificity, PPV, NPV
        return UNIT
    if label in _BY_LABEL:
        return _BY_LABEL[label]
    if {"by", "group", "day"} <= set(table.header):  # mean cell fraction by day
        return UNIT
    if any(column.startswith(c) for c in _UNIT_COLUMNS):
        return UNIT
    if (
        column in ("proportion", "proportion_better")
        or "responders" in table.header
        and column.startswith("ci_")
    ):
        return UNIT
    return None


def out_of_range(page: Path | str) -> list[str]:
    """Every printed bound or estimate outside its quantity's range, and every low above its high."""
    bad = []
    for t in tables(page):
        for rec in t.records():
            for column, text in rec.items():
                where = f"{t.caption or t.header}: {column} = {text!r} ({rec.get('metric') or rec.get('measure') or ''})"
                rng = _range_of(t, rec, column)
                for m in _PERCENT_INTERVAL.finditer(text):
                    est, lo, hi = (float(g) for g in m.groups())
                    if not (0 <= lo <= est <= hi <= 100):
                        bad.append(where)
                for m in _TEXT_INTERVAL.finditer(text):
                    est, lo, hi = (float(g) for g in m.groups())
                    if lo > hi or (rng is not None and not (rng[0] <= lo and hi <= rng[1])):
                        bad.append(where)
                if _CI.search(column) and text and rng is not None:
                    v = float(text)
                    if not (rng[0] <= v <= rng[1]) or math.isnan(v):
                        bad.append(where)
            lows = [c for c in rec if c.endswith("CI low")]
            for low in lows:
                high = low.removesuffix("low") + "high"
                if rec.get(low) and rec.get(high) and float(rec[low]) > float(rec[high]):
                    bad.append(f"{t.caption}: {low} above {high} in {rec}")
    return bad


def bounds_checked(page: Path | str) -> int:
    """How many interval bounds :func:`out_of_range` knows the range of (so a test sees it checked some)."""
    n = 0
    for t in tables(page):
        for rec in t.records():
            for column, text in rec.items():
                rng = _range_of(t, rec, column)
                n += len(_PERCENT_INTERVAL.findall(text)) + (
                    len(_TEXT_INTERVAL.findall(text)) if rng else 0
                )
                n += bool(_CI.search(column) and text and rng is not None)
    return n
