"""The study validators: the rules of the data contract, one vectorised pass each.

Each validator takes a table in declared types (:func:`~msc_response.study.tables.normalise`,
then pandas), raises :class:`~msc_response.errors.DataError` for a structural problem,
records every row problem in a :class:`~msc_response.study.problems.ProblemLog` (file,
row, column, patient, day) and returns the rows that are fit to use. Row numbers are the
file's 1-based data rows (CSV line = row + 1), carried in ``_row`` through any chunking.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import plausible, units
from ..errors import DataError, Problem
from .pandera_pandas import pa
from .problems import CodedText, ProblemLog, empty_problems, py, row_numbers, unit_hint
from .tables import TEXT_PREFIX

#: Study days accepted: any whole number within 100 years either side of the first
#: infusion. Windows in the config decide which days are used.
DAY_RANGE = (-36525, 36525)


@dataclass
class Study:
    """A validated study in canonical units.

    Attributes
    ----------
    patients : DataFrame
        Every row of the patients table, in file order (``patient_id`` a string as
        written); rows with problems stay, so every patient is accounted for.
    labs : DataFrame
        The usable lab rows: ``pidx`` (row of ``patients``), ``day``, ``test``
        (categorical), ``value`` in canonical units; identical duplicates dropped.
    cells : DataFrame or None
        The usable cell-fraction rows: ``pidx``, ``day``, ``population``, ``parent``, ``fraction``.
    lab_units : dict
        The unit of every test (canonical for known tests, the site's for others).
    files : dict
        The file each table was read from, by table name.
    problems : DataFrame
        Every row problem (see :mod:`msc_response.study.problems`); those rows are not in
        the tables above.
    simulated : bool
        The simulator made the data (every result built on it says SIMULATED).
    truth : DataFrame or None
        For a study simulated in memory, the simulator's truth (``truth.csv``).
    """

    patients: pd.DataFrame
    labs: pd.DataFrame
    cells: pd.DataFrame | None
    lab_units: dict[str, str]
    files: dict[str, Path]
    cells_derived: bool = False
    problems: pd.DataFrame = field(default_factory=empty_problems)
    simulated: bool = False
    truth: pd.DataFrame | None = None

    def __repr__(self) -> str:
        label = "SIMULATED " if self.simulated else ""
        return (f"<{label}Study: {len(self.patients)} patients, {len(self.labs)} lab rows, "
                f"{0 if self.cells is None else len(self.cells)} cell rows, {len(self.problems)} row problems>")  # fmt: skip


# ----------------------------------------------------------------------------------------
# patients

PATIENTS_SCHEMA = pa.DataFrameSchema(
    {
        "sex": pa.Column(object, pa.Check.isin(["F", "M"], error="must be 'F' or 'M'"), nullable=False),
        "age_years": pa.Column(float, pa.Check.in_range(0, 120, error="outside 0-120 years"), nullable=False),
        "dose_per_infusion": pa.Column(float, pa.Check.in_range(1e6, 1e10, error="outside 1e6-1e10 cells"),
                                       nullable=True, required=False),
        "n_infusions": pa.Column(float, pa.Check.isin(list(range(0, 21)), error="must be a whole number 0-20"),
                                 nullable=True, required=False),
        "interval_days": pa.Column(float, pa.Check.in_range(0, 365, error="outside 0-365 days"),
                                   nullable=True, required=False),
    },
    strict=False,
)  # fmt: skip


def _text_problems(df: pd.DataFrame, columns, file: str, log: ProblemLog, **where) -> np.ndarray:
    """Cells of numeric ``columns`` that held text other than a number; returns the rows' mask."""
    bad = np.zeros(len(df), dtype=bool)
    for col in columns:
        text = df.get(TEXT_PREFIX + col)
        if text is None:
            continue
        mask = text.notna().to_numpy()
        log.add(file, col, "not a number", mask,
                lambda i, text=text: f"value {text.iloc[i]!r} is not a number", **where)  # fmt: skip
        bad |= mask
    return bad


def _stripped(texts) -> np.ndarray:
    """``str.strip`` of every string (an object array): what ``.str.strip()`` gives for
    strings, without pandas' per-element wrapper (a chunk strips 50,000 ids per column)."""
    return np.array(list(map(str.strip, texts)), dtype=object)


def _id_text(ids: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray | CodedText]:
    """``(missing, has surrounding spaces, stripped id)`` of an id column (strings or categorical;
    the stripped ids of a categorical are :class:`CodedText`, read where needed).

    A categorical is checked once per category; its rows get the answer through their codes,
    and only when some category is blank or spaced (the usual case costs one comparison).
    """
    if isinstance(ids.dtype, pd.CategoricalDtype):
        cats = ids.cat.categories.to_numpy(dtype=object)  # strings (see _as_category)
        codes = ids.cat.codes.to_numpy()
        stripped_c = _stripped(cats)
        empty_c, spaced_c = stripped_c == "", stripped_c != cats
        missing = codes < 0
        if empty_c.any():
            missing |= np.append(empty_c, True)[codes]
        spaced = np.append(spaced_c, False)[codes] if spaced_c.any() else np.zeros(len(codes), bool)
        return missing, spaced, CodedText(codes, stripped_c)
    raw = ids.to_numpy(dtype=object)
    present = pd.notna(raw)
    text = raw if present.all() else np.where(present, raw, "")
    stripped = _stripped(text)
    empty = stripped == ""
    spaced = present & (stripped != text)
    return empty, spaced, np.where(empty, None, stripped).astype(object)


def validate_patients(df: pd.DataFrame, file: str, log: ProblemLog) -> pd.DataFrame:
    """Every row of the patients table, checked; bad cells become missing, rows stay."""
    df = df.reset_index(drop=True)
    rows = row_numbers(df)
    missing, spaced, _ = _id_text(df["patient_id"])
    ids = df["patient_id"].astype(object).where(~missing, None).to_numpy()
    where = {"rows": rows, "patient_ids": ids, "pidx": np.arange(len(df))}
    dup = pd.Series(ids).duplicated(keep=False).to_numpy() & ~missing
    if dup.any():  # structural: the patients' rows could not be told apart
        raise DataError([Problem(file, None if rows is None else int(rows[i]), "patient_id",
                                 f"duplicate patient_id {ids[i]!r}") for i in np.flatnonzero(dup)])  # fmt: skip
    log.add(file, "patient_id", "missing value", missing, "patient_id is missing", **where)
    log.add(file, "patient_id", "id with spaces", spaced,
            lambda i: f"patient_id {ids[i]!r} has leading or trailing spaces", **where)  # fmt: skip
    for col in ("age_years", "dose_per_infusion", "n_infusions", "interval_days"):
        _text_problems(df, (col,), file, log, **where)
    for col in ("sex", "etiology", "arm"):  # an empty cell is a missing value
        if col in df.columns:
            text = df[col].to_numpy(dtype=object)
            blank = ~pd.notna(text)
            blank[~blank] = _stripped(text[~blank]) == ""
            df[col] = np.where(blank, None, text)
    checked = df[[c for c in PATIENTS_SCHEMA.columns if c in df.columns]]
    for pos, column, message in pandera_failures(PATIENTS_SCHEMA, checked):
        if pos is None:
            raise DataError([Problem(file, None, column, message)])
        if TEXT_PREFIX + str(column) in df.columns and pd.notna(
            df[TEXT_PREFIX + str(column)].iloc[pos]
        ):
            continue  # already reported as "not a number"
        mask = np.zeros(len(df), dtype=bool)
        mask[pos] = True
        log.add(file, column, "invalid value", mask, message, **where)
    out = df[[c for c in df.columns if c != "_row" and not c.startswith(TEXT_PREFIX)]].copy()
    out["patient_id"] = ids
    return out


def pandera_failures(schema: pa.DataFrameSchema, df: pd.DataFrame):
    """``(position or None, column, message)`` of every failing cell of a lazy pandera run."""
    try:
        schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as err:
        for case in err.failure_cases.itertuples(index=False):
            pos = None if case.index is None or pd.isna(case.index) else int(case.index)
            column = None if case.column is None or pd.isna(case.column) else str(case.column)
            if case.check == "column_in_dataframe":
                yield None, str(case.failure_case), "required column is missing"
            elif pos is None:
                yield None, column, str(case.check)
            elif pd.isna(case.failure_case):
                yield pos, column, f"{column} is missing"
            else:
                yield pos, column, f"value {py(case.failure_case)!r} {case.check}"


# ----------------------------------------------------------------------------------------
# labs


def _as_category(s: pd.Series) -> pd.Series:
    """Categorical with string categories."""
    if not isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype("category")
    if len(s.cat.categories) and not pd.api.types.is_string_dtype(s.cat.categories.dtype):
        s = s.cat.rename_categories(s.cat.categories.astype(str))
    return s


def patient_index(ids: pd.Series, patient_ids) -> np.ndarray:
    """Row of ``patient_ids`` for each id (-1 where unknown), through the categories only."""
    ids = _as_category(ids)
    cats = ids.cat.categories
    codes = ids.cat.codes.to_numpy()
    known = np.asarray(patient_ids, dtype=object)
    if len(cats) == len(known) and np.array_equal(cats.to_numpy(dtype=object), known):
        return codes.astype(np.int64)  # a chunk's labs name its patients in the patients' order
    index = pd.Index(patient_ids)
    first = np.arange(len(index))
    if not index.is_unique:  # two missing or equal ids: problems of the patients table, which
        keep = ~index.duplicated()  # quarantines them; here each id finds its first row
        index, first = index[keep], first[keep]
    lookup = index.get_indexer(cats)
    lookup = np.where(lookup >= 0, first[lookup], -1)
    return np.where(codes >= 0, lookup[codes], -1).astype(np.int64)


def _day_problems(day: np.ndarray, file: str, log: ProblemLog, where: dict) -> np.ndarray:
    lo, hi = DAY_RANGE
    with np.errstate(invalid="ignore"):
        out_of_range = (day < lo) | (day > hi)
        not_whole = ~np.isnan(day) & ~out_of_range & (day != np.floor(day))
    log.add(file, "day", "day out of range", out_of_range,
            lambda i: f"day {py(day[i])!r} is outside {lo}..{hi} (100 years either side of the first infusion)",
            **where)  # fmt: skip
    log.add(file, "day", "day not whole", not_whole,
            lambda i: f"day {py(day[i])!r} is not a whole number of days", **where)  # fmt: skip
    return out_of_range | not_whole


def _patient_rows(pid: pd.Series, patients: pd.DataFrame, file: str, log: ProblemLog, rows, day,
                  tests=None):  # fmt: skip
    """``(pidx, bad)``: each row's patient and the rows whose id is missing, spaced or unknown.

    A row whose id has surrounding spaces is attributed to the patient the stripped id
    names, so that patient is quarantined rather than the row silently re-assigned.
    """
    missing, spaced, stripped = _id_text(pid)
    pidx = patient_index(pid, patients["patient_id"])
    if spaced.any():  # only the spaced rows' stripped ids are looked up
        at = np.flatnonzero(spaced)
        pidx[at] = pd.Index(patients["patient_id"]).get_indexer(
            np.asarray(stripped[at], dtype=object)
        )
    ids = CodedText.of(pid)
    where = {"rows": rows, "patient_ids": ids, "pidx": pidx, "days": day, "tests": tests}
    log.add(file, "patient_id", "missing value", missing, "patient_id is missing", **where)
    log.add(file, "patient_id", "id with spaces", spaced,
            lambda i: f"patient_id {ids[i]!r} has leading or trailing spaces", **where)  # fmt: skip
    unknown = (pidx < 0) & ~missing & ~spaced
    log.add(file, "patient_id", "unknown patient", unknown,
            lambda i: f"patient_id {ids[i]!r} is not in the patients table", **where)  # fmt: skip
    return pidx, missing | spaced | unknown, where


def validate_labs(
    raw: pd.DataFrame,
    patients: pd.DataFrame,
    file: str,
    log: ProblemLog,
    reference_units: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The usable lab rows in canonical units, and the unit of every test.

    ``reference_units`` (a model's training units) fixes the unit of each test the project
    cannot convert; without it, the first unit a test appears in is its unit. Millions
    of rows go through here: every rule is one vectorised pass over numpy arrays.
    """
    rows = row_numbers(raw)
    day = raw["day"].to_numpy(dtype=float)
    pid = _as_category(raw["patient_id"])
    test, unit = _as_category(raw["test"]), _as_category(raw["unit"])
    # every problem carries its test: the policy lets a test the config never reads reject nobody
    tests = CodedText.of(test)
    pidx, bad, where = _patient_rows(pid, patients, file, log, rows, day, tests)
    bad |= _text_problems(raw, ("day", "value"), file, log, **where)
    value_raw = raw["value"].to_numpy(dtype=float)
    for name, series in (("test", test), ("unit", unit)):
        miss = _id_text(series)[0]
        log.add(file, name, "missing value", miss, f"{name} is missing", **where)
        bad |= miss
    for name, values in (("day", day), ("value", value_raw)):
        miss = np.isnan(values) & ~bad
        log.add(file, name, "missing value", miss, f"{name} is missing", **where)
        bad |= miss
    bad |= _day_problems(day, file, log, where)

    # codes as intp: a table read through them costs a third of reading through int8 codes
    tc, uc = test.cat.codes.to_numpy().astype(np.intp), unit.cat.codes.to_numpy().astype(np.intp)
    cats = [str(c) for c in test.cat.categories]
    unit_names = [str(u) for u in unit.cat.categories]
    # every unit rule is a small (test x unit) table, read through one index per row
    # (code -1, missing, picks the last row or column)
    pair = np.where(tc < 0, len(cats), tc) * (len(unit_names) + 1) + np.where(
        uc < 0, len(unit_names), uc
    )
    factor_t = units.factor_table(cats, unit_names)
    known_t = np.append(np.isin(cats, list(units.KNOWN_TESTS)), False)
    bad_unit = (known_t[:, None] & np.isnan(factor_t)).ravel()[pair] & ~bad
    log.add(file, "unit", "unknown unit", bad_unit, lambda i: (
        f"unknown unit {py(unit.iloc[i])!r} for test {py(test.iloc[i])!r}; accepted: {units.accepted_units(test.iloc[i])}"
    ), **where)  # fmt: skip
    bad |= bad_unit
    lab_units, other_t = _units_of_other_tests(cats, unit_names, tc, uc, bad, known_t,
                                               reference_units)  # fmt: skip
    other_unit = other_t.ravel()[pair] & ~bad if other_t.any() else np.zeros(len(tc), bool)
    log.add(file, "unit", "unit differs", other_unit, lambda i: (
        f"test {py(test.iloc[i])!r} is in {py(unit.iloc[i])!r} here, but in {lab_units[str(test.iloc[i])]!r} "
        + ("in the model's training data" if reference_units and str(test.iloc[i]) in reference_units
           else "in its first row") + "; use one unit per test"
    ), **where)  # fmt: skip
    bad |= other_unit

    factor = np.where(np.isnan(factor_t), 1.0, factor_t).ravel()
    value = value_raw * factor[pair] if (factor != 1.0).any() else value_raw  # x 1.0: the same
    bad |= _value_problems(value, value_raw, tc, cats, unit, bad, file, log, where)
    keep = None if not bad.any() else ~bad  # None: every row (no copies)

    def kept(values):
        return values if keep is None else values[keep]

    labs = pd.DataFrame({"pidx": kept(pidx), "day": kept(day).astype(np.int32),
                         "test": test.array if keep is None else test.array[keep],
                         "value": kept(value) if value is not value_raw or keep is not None
                         else value.copy()}, copy=False)  # fresh arrays: not copied again  # fmt: skip
    labs = _drop_duplicates(labs, file, log, None if rows is None else kept(rows),
                            where["patient_ids"] if keep is None else where["patient_ids"].subset(keep),
                            what="test", value_col="value",
                            tests=tests if keep is None else tests.subset(keep))  # fmt: skip
    return labs, lab_units


def _units_of_other_tests(test_names, unit_names, tc, uc, bad, known_t, reference_units):
    """The unit of each test the project cannot convert, and the (test x unit) pairs in another unit.

    The unit is the reference's (a model's training units) where one is given, else the
    unit of the test's first usable row. With a reference (scoring), tests the model does
    not use are not checked: they are not used either. The second result, indexed
    ``[test code, unit code]`` (code -1 the last), marks the pairs whose usable rows differ.
    """
    lab_units: dict[str, str] = dict(units.CANONICAL_UNITS)
    expected = np.full(len(test_names) + 1, -1)  # unit code; -1: none seen, -2: not in this table
    checked = np.append(~known_t[:-1], False)  # known tests are converted, not checked here
    if reference_units is None and checked.any():  # the first usable row's unit, per test
        rows = np.flatnonzero(~known_t[tc] & ~bad)  # the usable rows of tests not converted
        first = rows[np.unique(tc[rows], return_index=True)[1]]
        expected[tc[first]] = uc[first]
    for code, name in enumerate(test_names):
        if not checked[code]:
            continue
        if reference_units is not None:
            if name not in reference_units:
                checked[code] = False
                continue
            ref = reference_units[name]
            expected[code] = unit_names.index(ref) if ref in unit_names else -2
            lab_units[name] = ref
        elif expected[code] >= 0:
            lab_units[name] = unit_names[expected[code]]
    unit_codes = np.append(np.arange(len(unit_names)), -1)
    differs = (checked & (expected != -1))[:, None] & (unit_codes[None, :] != expected[:, None])
    return lab_units, differs


def _value_problems(value, value_raw, tc, cats, unit, bad, file, log, where) -> np.ndarray:
    """Non-finite, implausible (known tests) and negative (tests that cannot be) values."""
    finite = np.isfinite(value)
    not_finite = ~finite & ~np.isnan(value) & ~bad
    log.add(file, "value", "not finite", not_finite,
            lambda i: f"value {py(value_raw[i])!r} is not a finite number", **where)  # fmt: skip
    out = not_finite
    checked = finite & ~bad
    low = np.array([plausible.RANGES.get(c, (-np.inf, np.inf))[0] for c in cats] + [-np.inf])
    high = np.array([plausible.RANGES.get(c, (-np.inf, np.inf))[1] for c in cats] + [np.inf])
    whole = np.array([c in plausible.WHOLE_NUMBER_TESTS for c in cats] + [False])
    with np.errstate(invalid="ignore"):
        implausible = checked & ((value < low[tc]) | (value > high[tc]))
        if whole.any():  # a whole-number test's grade with a fraction
            implausible |= checked & whole[tc] & (value != np.floor(value))
    for code in np.unique(tc[implausible]):
        t = cats[code]
        expected = plausible.expected(t)
        log.add(file, "value", "implausible value", implausible & (tc == code), lambda i, t=t, expected=expected: (
            f"{t} value {py(value_raw[i])!r} {unit.iloc[i]} is not plausible (expected {expected})"
            + (unit_hint(t, float(value_raw[i]), str(unit.iloc[i])) if t not in plausible.WHOLE_NUMBER_TESTS else "")
        ), **where)  # fmt: skip
    nonneg = np.array(
        [units.cannot_be_negative(c) and c not in plausible.RANGES for c in cats] + [False]
    )
    if not nonneg.any():  # no test here that only this rule checks
        return out | implausible
    negative = checked & nonneg[tc] & (value < 0)
    log.add(file, "value", "negative value", negative,
            lambda i: f"{cats[tc[i]]} value {py(value_raw[i])!r} is negative; a {cats[tc[i]]} value cannot be",
            **where)  # fmt: skip
    return out | implausible | negative


def _drop_duplicates(
    df, file, log, rows, ids, *, what: str, value_col: str, tests=None
) -> pd.DataFrame:
    """Identical repeats of (patient, day, ``what``) are dropped; conflicting ones are row problems."""
    lo, hi = DAY_RANGE
    codes = df[what].cat.codes.to_numpy()
    # one int64 key per (patient, day, what): days lie in DAY_RANGE (built in place)
    key = df["pidx"].to_numpy().astype(np.int64)
    key *= hi - lo + 1
    key += df["day"].to_numpy()
    key -= lo
    key *= int(codes.max(initial=0)) + 1
    key += codes
    step = np.diff(key)
    order = None if (step >= 0).all() else np.argsort(key, kind="stable")
    k = key if order is None else key[order]
    v = df[value_col].to_numpy() if order is None else df[value_col].to_numpy()[order]
    same = step == 0 if order is None else k[1:] == k[:-1]
    if not same.any():
        return df
    differ = same & ~np.isclose(v[1:], v[:-1], rtol=1e-9, atol=1e-12)
    conflict_keys = np.unique(k[1:][differ])
    in_conflict = np.isin(key, conflict_keys)
    log.add(file, value_col, "conflicting duplicate", in_conflict, lambda i: (
        f"conflicting duplicate of {what} {str(df[what].iloc[i])!r} on day "
        f"{int(df['day'].iloc[i])} for the same patient (values differ)"
    ), rows=rows, patient_ids=ids, pidx=df["pidx"].to_numpy(), days=df["day"].to_numpy(), tests=tests)  # fmt: skip
    repeat = np.zeros(len(df), dtype=bool)
    dup_pos = np.flatnonzero(same & ~differ) + 1
    repeat[dup_pos if order is None else order[dup_pos]] = True
    return df[~in_conflict & ~repeat].reset_index(drop=True)


# ----------------------------------------------------------------------------------------
# cells


def validate_cells(
    raw: pd.DataFrame, patients: pd.DataFrame, file: str, log: ProblemLog
) -> pd.DataFrame:
    """The usable cell-fraction rows, with ``pidx``."""
    rows = row_numbers(raw)
    day = raw["day"].to_numpy(dtype=float)
    pid = _as_category(raw["patient_id"])
    pidx, bad, where = _patient_rows(pid, patients, file, log, rows, day)
    bad |= _text_problems(raw, ("day", "fraction"), file, log, **where)
    population, parent = _as_category(raw["population"]), _as_category(raw["parent"])
    for name, series in (("population", population), ("parent", parent)):
        miss = _id_text(series)[0]
        log.add(file, name, "missing value", miss, f"{name} is missing", **where)
        bad |= miss
    fraction = raw["fraction"].to_numpy(dtype=float)
    for name, values in (("day", day), ("fraction", fraction)):
        miss = np.isnan(values) & ~bad
        log.add(file, name, "missing value", miss, f"{name} is missing", **where)
        bad |= miss
    bad |= _day_problems(day, file, log, where)
    with np.errstate(invalid="ignore"):
        outside = ~bad & ~((fraction >= 0) & (fraction <= 1))
    log.add(file, "fraction", "implausible value", outside, lambda i: (
        f"fraction {py(fraction[i])!r} is outside 0-1" + ("; looks like a percentage" if 1 < fraction[i] <= 100 else "")
    ), **where)  # fmt: skip
    bad |= outside
    keep = ~bad
    cells = pd.DataFrame({"pidx": pidx[keep], "day": day[keep].astype(np.int32),
                          "population": population.array[keep], "parent": parent.array[keep],
                          "fraction": fraction[keep]})  # fmt: skip
    cells = _drop_duplicates(cells, file, log, None if rows is None else rows[keep],
                             where["patient_ids"].subset(keep), what="population", value_col="fraction")  # fmt: skip
    cells["population"] = cells["population"].astype(str)
    cells["parent"] = cells["parent"].astype(str)
    return cells
