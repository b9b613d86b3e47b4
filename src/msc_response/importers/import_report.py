"""The mapping report written beside an imported study: ``import_report.json`` and ``.md``.

It says, for each source code, what it became and how many rows were imported; which
codes were kept under their own name (unmapped); how unit strings were read; which
contract tests are absent and why; and every row that was not imported, with its file,
row and column (FHIR: resource and element) and the reason, counted by reason. The rows of a
patient who was not imported are one decision about the patient: counted per file and reason.
"""

from __future__ import annotations

import json

from .. import __version__, units
from .mapping import LOOKS_LIKE, Mapping, default_mapping
from .rows import OK, Imported
from .writer import WRITTEN_BY

_ABSENT_NOTE = {
    "sdtm": "not a lab test and no default: name its domain and test code under 'findings:' in a mapping file",
    "fhir": "not a lab test and no default: name its code under 'tests:' in a mapping file",
}
NOT_LAB_TESTS = ("ascites", "encephalopathy", "dialysis")


def build_report(imp: Imported, mapping: Mapping, *, source: str, strict: bool) -> dict:
    """The report as a JSON-ready dict."""
    rows = imp.rows
    defaults = default_mapping(mapping.format).tests
    default_tests = set(defaults.values())
    from_file = {t for c, t in mapping.tests.items() if defaults.get(c) != t} | set(
        mapping.findings
    )
    codes = []
    for (code, kind, name), g in rows.groupby(["code", "kind", "name"], sort=True, dropna=False):
        imported = g["status"].eq(OK)
        entry = {
            "source_code": code,
            "became": f"cells: {name}" if kind == "cells" else name,
            "how": ("mapping file" if kind == "cells" or name in from_file
                    else "default" if name in default_tests else "kept under its own code"),
            "rows": int(len(g)),
            "imported": int(imported.sum()),
            "not_imported": {str(k): int(v) for k, v in g.loc[~imported, "status"].value_counts().items()},
            "units": sorted({f"{u or ''} -> {c}" for u, c in
                             zip(g.loc[imported, "unit"], g.loc[imported, "contract_unit"], strict=True)}),
        }  # fmt: skip
        codes.append(entry)
    imported_rows = rows[rows["status"].eq(OK)]
    conversions = (
        imported_rows.assign(unit=imported_rows["unit"].fillna("").astype(str))
        .groupby(["name", "unit", "contract_unit"], sort=True).size().reset_index(name="rows")
    )  # fmt: skip
    conversions = [
        {"test": r.name, "unit_as_written": r.unit, "unit_written": r.contract_unit, "rows": int(r.rows),
         "values": "divided by 100" if r.unit.strip() == "%" and r.contract_unit == "fraction" else "unchanged"}
        for r in conversions.itertuples(index=False)
        if r.unit != r.contract_unit or r.contract_unit == "fraction"
    ]  # fmt: skip
    present = set(imp.labs["test"])
    absent = {
        t: (_ABSENT_NOTE[mapping.format] if t in NOT_LAB_TESTS and t not in mapping.findings
            and t not in mapping.tests.values() else "no imported rows in the source")
        for t in sorted(units.KNOWN_TESTS - present)
    }  # fmt: skip
    looks_like = _looks_like(rows, set(absent) & set(LOOKS_LIKE))
    report = {
        "written_by": WRITTEN_BY,
        "package_version": __version__,
        "source": {"format": mapping.format, "folder": source, **imp.report.pop("source", {})},
        "mapping_file": mapping.file,
        "strict": strict,
        **imp.report,
        "written": {
            "patients": int(len(imp.patients)),
            "lab_rows": int(len(imp.labs)),
            "cell_rows": 0 if imp.cells is None else int(len(imp.cells)),
            "tests": sorted(present),
        },
        "codes": codes,
        "unmapped_codes": [
            c["source_code"] for c in codes if c["how"] == "kept under its own code"
        ],
        "unit_conversions": conversions,
        "absent_tests": absent,
        "absent_tests_look_alikes": looks_like,
        "rows_not_imported": {
            "problems_by_reason": imp.log.by_reason(),
            "left_out_by_rule": {k: int(v) for k, v in sorted(imp.log.skipped.items()) if v},
            "of_patients_not_imported": [
                {"file": file, "why": why, "rows": int(n)}
                for (file, why), n in sorted(imp.log.of_patients_not_imported.items())
            ],
        },
        "problems": [
            {"reason": reason, "file": p.file, "row": p.row, "column": p.column, "problem": str(p)}
            for reason, p in imp.log.problems
        ],  # fmt: skip
    }
    return report


def _looks_like(rows, absent: set[str]) -> dict[str, list[dict]]:
    """Per absent contract test: the source codes not mapped to it whose display text looks like it."""
    out: dict[str, list[dict]] = {}
    shown = rows.assign(display=rows["display"].fillna("").astype(str))
    for (code, display), g in shown.groupby(["code", "display"], sort=True, dropna=False):
        for test in sorted(absent):
            if LOOKS_LIKE[test].search(display) and not g["name"].eq(test).any():
                out.setdefault(test, []).append({"source_code": code, "display": display,
                                                 "rows": int(len(g)), "became": str(g["name"].iloc[0])})  # fmt: skip
    return out


def _table(header: list[str], rows: list[list]) -> str:
    esc = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def report_markdown(report: dict) -> str:
    """The report as a readable Markdown page."""
    w = report["written"]
    out = [
        f"# Import report ({report['source']['format'].upper()})",
        "",
        f"Source folder `{report['source']['folder']}`; mapping file: "
        f"{report['mapping_file'] or 'none (defaults only)'}; strict: {report['strict']}.",
        f"Written: {w['patients']} patients, {w['lab_rows']} lab rows, {w['cell_rows']} cell-fraction rows.",
        "",
        "## Source codes",
        "",
        _table(["source code", "became", "how", "rows", "imported", "not imported", "units (as written -> written)"],
               [[c["source_code"], c["became"], c["how"], c["rows"], c["imported"],
                 "; ".join(f"{k}: {v}" for k, v in c["not_imported"].items()) or "",
                 "; ".join(c["units"])] for c in report["codes"]]),
        "",
        "## Unit strings read",
        "",
        _table(["test", "as written", "written", "rows", "values"],
               [[c["test"], repr(c["unit_as_written"]), c["unit_written"], c["rows"], c["values"]]
                for c in report["unit_conversions"]]) if report["unit_conversions"] else "None: every unit was written as the contract spells it.",
        "",
        "## Contract tests absent",
        "",
        _table(["test", "why"], [[t, why] for t, why in report["absent_tests"].items()])
        if report["absent_tests"] else "None.",
        "",
        *([ "Source codes whose text looks like an absent test (name them in a mapping file to use them):", "",
            _table(["test", "source code", "display", "rows", "became"],
                   [[t, c["source_code"], c["display"], c["rows"], c["became"]]
                    for t, cs in report["absent_tests_look_alikes"].items() for c in cs]), ""]
          if report["absent_tests_look_alikes"] else []),
        "## Rows not imported",
        "",
    ]  # fmt: skip
    by_reason = report["rows_not_imported"]["problems_by_reason"]
    rule = report["rows_not_imported"]["left_out_by_rule"]
    out.append(
        _table(["reason", "rows"], [[k, v] for k, v in by_reason.items()])
        if by_reason
        else "No row problems."
    )
    if rule:
        out += ["", "Left out by a stated rule (not problems):", "",
                _table(["rule", "rows"], [[k, v] for k, v in rule.items()])]  # fmt: skip
    of_excluded = report["rows_not_imported"]["of_patients_not_imported"]
    if of_excluded:
        out += ["", "Rows of patients not imported (the patient's reason is in the problems or the "
                "day-0 table; one line per file and reason):", "",
                _table(["file", "why the patient is not imported", "rows"],
                       [[r["file"], r["why"], r["rows"]] for r in of_excluded])]  # fmt: skip
    if report["problems"]:
        out += ["", "### Every problem", ""]
        out += [f"- {p['problem']}" for p in report["problems"]]
    out += ["", "## Other facts", "", "```json"]
    skip = {
        "codes",
        "problems",
        "unit_conversions",
        "absent_tests",
        "absent_tests_look_alikes",
        "rows_not_imported",
        "written",
    }
    out.append(
        json.dumps({k: v for k, v in report.items() if k not in skip}, indent=2, default=str)
    )
    out += ["```", ""]
    return "\n".join(out)
