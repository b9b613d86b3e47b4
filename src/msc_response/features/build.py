"""Feature builders: a validated study to one feature table per patient, with labels.

Baseline and follow-up values are picked from long-format labs by day windows, the liver
scores are computed from them (:func:`msc_response.scores.add_scores`), cell fractions
and the regimen are added, and every patient of the input ends up either in the table
or in the exclusions with a reason (bad rows first, see :mod:`msc_response.study.policy`).
Training, scoring, validation and the API all build features through
:func:`features_from_study`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import labels as labels_mod
from .. import scores, units
from ..config import ExperimentConfig
from ..domain import REGIMEN_FEATURES, regimen_features, slug
from ..errors import DataError, Problem
from ..io import (
    ASSUMPTIONS,
    CELLS_FROM_H5AD,
    EXCLUDED,
    FLOW,
    PROBLEMS,
    check_outputs,
    sidecar,
    write_json,
    write_table,
)
from ..progress import timed
from ..study import Study, load_study
from ..study import policy as bad_rows_policy
from ..study.files import input_paths
from ..study.problems import counts_by_rule, empty_problems

#: The lab tests each endpoint needs (``inr`` may be replaced by ``pt`` and ``pt_control``).
ENDPOINT_TESTS: dict[str, tuple[str, ...]] = {
    "child_pugh": ("bilirubin", "albumin", "inr", "ascites", "encephalopathy"),
    "meld": ("bilirubin", "inr", "creatinine", "dialysis"),
    "meld_na": ("bilirubin", "inr", "creatinine", "sodium", "dialysis"),
    "meld3": ("bilirubin", "inr", "creatinine", "sodium", "albumin", "dialysis"),
    "albumin": ("albumin",),
}

#: Every test a score reads: the known tests, in the unit table's order.
SCORE_TESTS = tuple(units.CANONICAL_UNITS)

#: Scores computed at baseline; each is the feature ``baseline_<score>``.
BASELINE_SCORES = scores.SCORES

#: Columns of the exclusions table (and of a scoring job's rejected file).
EXCLUSION_COLUMNS = ["patient_id", "reason", "category"]

_REGIMEN_UNITS = {"dose_per_infusion_1e8": "1e8 cells", "n_infusions": "infusions",
                  "cumulative_dose_1e8": "1e8 cells", "interval_days": "days"}  # fmt: skip


@dataclass
class FeatureSet:
    """The output of :func:`build_features`.

    Attributes
    ----------
    table : DataFrame
        One row per included patient: ``patient_id``, the features and, when built with
        labels, ``endpoint_baseline``, ``endpoint_followup``, ``endpoint_change``,
        ``followup_day_used`` and ``response``.
    feature_columns : list of str
        The model inputs, in order.
    exclusions : DataFrame
        ``patient_id``, ``reason``, ``category``: every patient of the input not in
        ``table`` (``category`` groups reasons for the flow box).
    assumptions : DataFrame
        ``patient_id``, ``visit``, ``assumption``: every assumed value (``assume``, PT for INR).
    flow : dict
        Patient counts: in the input, excluded by category, included, responders; rows
        with problems by rule.
    lab_units : dict
        The unit of every lab test as used in the features.
    derived_cells : DataFrame or None
        MX1+ monocyte fractions derived from ``cells.h5ad``, in the ``cells`` form.
    problems : DataFrame
        Every row problem of the study, with ``in_window`` (whether it mattered).
    feature_spec : list of dict
        Per feature column: ``name``, ``kind`` (patient, lab, score, cells,
        cells_landmark, cells_change, regimen), ``source`` (the test, score, population
        or patient column it comes from) and ``unit``. Stored with a model, so scoring
        knows what each input needs without parsing column names.
    simulated : bool
        Built from SIMULATED data.
    """

    table: pd.DataFrame
    feature_columns: list[str]
    exclusions: pd.DataFrame
    assumptions: pd.DataFrame
    flow: dict
    lab_units: dict[str, str] = field(default_factory=dict)
    derived_cells: pd.DataFrame | None = None
    problems: pd.DataFrame = field(default_factory=empty_problems)
    feature_spec: list[dict] = field(default_factory=list)
    simulated: bool = False

    def __repr__(self) -> str:
        label = "SIMULATED " if self.simulated else ""
        return (f"<{label}FeatureSet: {len(self.table)} patients x {len(self.feature_columns)} features, "
                f"{len(self.exclusions)} excluded>")  # fmt: skip


def used_categories(values: pd.Series) -> pd.Series:
    """``values.cat.remove_unused_categories()`` by counting codes instead of sorting them."""
    codes = values.cat.codes.to_numpy()
    used = np.bincount(codes[codes >= 0], minlength=len(values.cat.categories)) > 0
    if used.all():
        return values
    renumber = np.append(np.cumsum(used) - 1, -1)  # code -1 (missing) stays -1
    categories = values.cat.categories[used]
    return pd.Series(pd.Categorical.from_codes(renumber[codes], categories=categories,
                                               ordered=values.cat.ordered),
                     index=values.index, name=values.name)  # fmt: skip


def read_lab_tests(config: ExperimentConfig) -> frozenset[str] | None:
    """The lab tests the config reads (None: every test), the one rule for every verb and engine.

    The score components (every baseline score is a feature; PT and its control stand in
    for INR), the endpoint's tests, the assumed tests, and the features' tests
    (``lab_features``): by default the tests the product knows (score components and the
    common liver and blood tests of :data:`msc_response.units.NONNEGATIVE_TESTS`, in any
    case as written), ``"all"``: every test (None), or the listed ones.
    """
    if config.lab_features == "all":
        return None
    read = {*SCORE_TESTS, *ENDPOINT_TESTS[config.endpoint.score], *config.assume}
    features = (
        units.KNOWN_TESTS | units.NONNEGATIVE_TESTS
        if config.lab_features is None
        else config.lab_features
    )
    return frozenset(bad_rows_policy.test_key(t) for t in (*read, *features))


def windows(config: ExperimentConfig, *, labels: bool) -> bad_rows_policy.Windows:
    """What the config reads: the day ranges - baseline, follow-up (with labels), landmark
    (cells) - and the lab tests (:func:`read_lab_tests`)."""
    base = tuple(config.baseline_window)
    ep = config.endpoint
    labs = (base, ep.followup_window) if labels else (base,)
    cells = (base, (1, config.landmark_day)) if config.landmark_day is not None else (base,)
    return bad_rows_policy.Windows(labs, cells, read_lab_tests(config))


def pick_values(
    pidx: np.ndarray, day: np.ndarray, codes: np.ndarray, value: np.ndarray,
    n_patients: int, n_codes: int, lo: int, hi: int, target: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Per (patient, code): the value in days ``lo..hi`` - the latest, or the closest to ``target``.

    Ties in distance to ``target`` go to the later day. Returns the value and the day
    picked, each an ``n_patients x n_codes`` array (NaN where nothing was measured).
    """
    inside = (day >= lo) & (day <= hi)
    p, d, c, v = pidx[inside], day[inside], codes[inside], value[inside]
    d = d.astype(np.int64)
    if target is None:
        rank = -d  # latest first
    else:
        rank = np.abs(d - target) * 2 + (d < target)  # closest first, ties to the later day
    # no sort: the best rank of each cell by a scatter-min, then the rows that reach it
    # (one per cell: a (patient, code, day) repeats only as an identical, dropped duplicate)
    cell = p.astype(np.int64) * n_codes + c
    best = np.full(n_patients * n_codes, np.iinfo(np.int64).max)
    np.minimum.at(best, cell, rank)
    chosen = rank == best[cell]
    values = np.full(n_patients * n_codes, np.nan)
    days = np.full(n_patients * n_codes, np.nan)
    values[cell[chosen]] = v[chosen]
    days[cell[chosen]] = d[chosen]
    return values.reshape(n_patients, n_codes), days.reshape(n_patients, n_codes)


def _measured_in(
    pidx: np.ndarray, day: np.ndarray, n: int, lo: int, hi: int, read_rows: np.ndarray
) -> np.ndarray:
    """Patients with any row of a test the config reads (``read_rows``) in days ``lo..hi``."""
    measured = np.zeros(n, dtype=bool)
    measured[pidx[(day >= lo) & (day <= hi) & read_rows]] = True
    return measured


def visit_values(study: Study, config: ExperimentConfig, visit: str) -> dict[str, np.ndarray]:
    """Each lab test's value per patient of ``study`` as the builder picks it, ``assume`` filled in.

    ``visit`` is ``"baseline"`` (the latest in the baseline window) or ``"followup"`` (the
    closest to the follow-up day in its window); rows follow ``study.patients``.
    """
    if visit not in ("baseline", "followup"):
        raise ValueError(f"visit: expected 'baseline' or 'followup', got {visit!r}")
    labs, n = study.labs, len(study.patients)
    test = used_categories(labs["test"])
    names = [str(t) for t in test.cat.categories]
    pidx, day = labs["pidx"].to_numpy(), labs["day"].to_numpy()
    args = (pidx, day, test.cat.codes.to_numpy(), labs["value"].to_numpy(), n, len(names))
    if visit == "baseline":
        values, _ = pick_values(*args, *config.baseline_window)
        read_rows = windows(config, labels=False).reads_test(names)[test.cat.codes.to_numpy()]
        usable = _measured_in(pidx, day, n, *config.baseline_window, read_rows)
    else:
        ep = config.endpoint
        values, _ = pick_values(*args, *ep.followup_window, target=ep.followup_day)
        usable = ~np.all(np.isnan(values), axis=1)
    assumed = _Assumptions(study.patients["patient_id"].to_numpy())  # not recorded: a view
    return assumed.columns(values, names, config, visit, usable)


def _missing_components(score: str, has) -> list[str]:
    """The components of ``score`` that ``has(test)`` says are absent (PT may stand in for INR)."""
    missing = [t for t in ENDPOINT_TESTS[score] if not has(t)]
    if (
        "inr" in missing
        and score == "child_pugh"
        and scores.pt_replaces_inr(False, has("pt"), has("pt_control"))
    ):
        missing.remove("inr")
    return missing


def _check_endpoint_computable(study: Study, config: ExperimentConfig) -> None:
    present = set(used_categories(study.labs["test"]).cat.categories.astype(str))
    missing = _missing_components(
        config.endpoint.score, lambda t: t in present or t in config.assume
    )
    problems = []
    for test in missing:
        advice = (f" (or set assume: {{{test}: VALUE}} in the config)"
                  if test in ("ascites", "encephalopathy", "dialysis") else "")  # fmt: skip
        problems.append(Problem(study.files["labs"].name, None, "test",
                                f"endpoint {config.endpoint.score!r} needs test {test!r}, which is never measured{advice}"))  # fmt: skip
    if problems:
        raise DataError(problems)


def _wide_scores(values: dict[str, np.ndarray], patients: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame({t: values[t] for t in SCORE_TESTS if t in values})
    frame["sex"] = patients["sex"].to_numpy()
    if "etiology" in patients:
        frame["etiology"] = patients["etiology"].to_numpy()
    return scores.add_scores(frame)


def _endpoint_values(score: str, tests: dict[str, np.ndarray], scored: pd.DataFrame) -> np.ndarray:
    return tests["albumin"] if score == "albumin" else scored[score].to_numpy(dtype=float)


class _Assumptions:
    """Values the builder assumed, recorded per patient and visit (one frame per rule)."""

    def __init__(self, ids: np.ndarray):
        self.ids, self.frames = ids, []

    def record(self, mask: np.ndarray, visit: str, text: str) -> None:
        if mask.any():  # one frame per rule: a site without a test may assume it for everyone
            self.frames.append(
                pd.DataFrame({"patient_id": self.ids[mask], "visit": visit, "assumption": text})
            )

    def columns(self, values, test_names, config, visit: str, usable) -> dict[str, np.ndarray]:
        """Per test, the picked value of every patient, with ``assume`` filled in and recorded."""
        n = len(self.ids)
        cols = {t: values[:, j].copy() for j, t in enumerate(test_names)}
        for test, assumed in config.assume.items():
            col = cols.setdefault(test, np.full(n, np.nan))
            fill = np.isnan(col) & usable
            col[fill] = assumed
            self.record(fill, visit, f"{test} = {assumed:g} assumed (not recorded)")
        has = {
            t: ~np.isnan(cols[t]) if t in cols else np.zeros(n, dtype=bool)
            for t in ("inr", "pt", "pt_control")
        }
        uses_pt = usable & scores.pt_replaces_inr(has["inr"], has["pt"], has["pt_control"])
        self.record(uses_pt, visit, "Child-Pugh coagulation from PT over control (INR missing)")
        return cols

    def frame(self, keep_ids) -> pd.DataFrame:
        if not self.frames:
            return pd.DataFrame(columns=["patient_id", "visit", "assumption"])
        out = pd.concat(self.frames, ignore_index=True)
        return out[out["patient_id"].isin(keep_ids)].reset_index(drop=True)


def build_features(
    config: ExperimentConfig,
    study: Study | str | Path | None = None,
    *,
    labels: bool = True,
    bad_rows: str = "error",
) -> FeatureSet:
    """The feature table of a study (training, scoring and the API share this).

    Parameters
    ----------
    config : ExperimentConfig
        Baseline window, endpoint, landmark day, assumptions, single-cell settings.
    study : Study or path, optional
        A study (:func:`~msc_response.study.load_study`, :func:`~msc_response.simulate`)
        or its directory; defaults to ``config.data``.
    labels : bool
        Also compute the follow-up endpoint and the response label (training). Scoring
        passes ``False``: no follow-up is needed then.
    bad_rows : {"error", "exclude"}
        What a row problem that matters does: stop with every problem, or exclude the
        patient (see :mod:`msc_response.study.policy`).

    Raises
    ------
    DataError
        A structural problem, a row problem with ``bad_rows="error"``, or an endpoint the
        data cannot give.
    """
    if not isinstance(study, Study):
        study = load_study(config.data if study is None else study, config.singlecell)
    return features_from_study(study, config, labels=labels, bad_rows=bad_rows)


def features_from_study(
    study: Study,
    config: ExperimentConfig,
    *,
    labels: bool = True,
    bad_rows: str = "error",
    seconds: dict[str, float] | None = None,
) -> FeatureSet:
    """:func:`build_features` on an already loaded :class:`~msc_response.study.Study`.

    ``seconds``, when given, gets the time spent picking the lab values of the baseline
    window (``window_s``) added to it.
    """
    files = {k: (v.name + "/" if v.is_dir() else v.name) for k, v in study.files.items()}
    reads = windows(config, labels=labels)
    problems = bad_rows_policy.mark_in_use(study.problems, reads, files)
    bad_reason, bad_category = bad_rows_policy.apply(problems, bad_rows, len(study.patients))
    if labels:
        _check_endpoint_computable(study, config)
    patients, labs = study.patients, study.labs
    n = len(patients)
    test = used_categories(labs["test"])
    test_names = [str(t) for t in test.cat.categories]
    read = reads.reads_test(test_names)  # per test: does the config read it
    _check_feature_names([t for t, r in zip(test_names, read, strict=True) if r], files["labs"])
    codes = test.cat.codes.to_numpy()
    pidx, day, value = labs["pidx"].to_numpy(), labs["day"].to_numpy(), labs["value"].to_numpy()
    lo, hi = config.baseline_window
    with timed(seconds, "window_s"):
        base_vals, _ = pick_values(pidx, day, codes, value, n, len(test_names), lo, hi)
        has_baseline = _measured_in(pidx, day, n, lo, hi, read[codes])

    ids = patients["patient_id"].to_numpy()
    assumed = _Assumptions(ids)
    base = assumed.columns(base_vals, test_names, config, "baseline", has_baseline)
    base_scores = _wide_scores(base, patients)

    reasons = bad_reason.copy()
    categories = bad_category.copy()

    def exclude(mask: np.ndarray, reason, category: str | None = None) -> None:
        mask = mask & (reasons == None)  # noqa: E711 - the first reason stands
        reasons[mask] = reason if isinstance(reason, str) else reason[mask]
        categories[mask] = category or reason

    exclude(~has_baseline, f"no baseline measurement in days {lo}..{hi}")
    table = pd.DataFrame({"patient_id": ids})
    if "arm" in patients:
        table["arm"] = (
            patients["arm"].astype(object).where(patients["arm"].notna(), None).to_numpy()
        )

    feats: dict[str, np.ndarray] = {
        "age_years": patients["age_years"].to_numpy(dtype=float),
        "female": np.where(
            patients["sex"] == "F", 1.0, np.where(patients["sex"] == "M", 0.0, np.nan)
        ),
    }
    spec = [{"name": "age_years", "kind": "patient", "source": "age_years", "unit": "years"},
            {"name": "female", "kind": "patient", "source": "sex", "unit": "flag"}]  # fmt: skip
    for t in (t for t, r in zip(test_names, read, strict=True) if r):
        feats[f"baseline_{slug(t)}"] = base[t]
        spec.append(
            {
                "name": f"baseline_{slug(t)}",
                "kind": "lab",
                "source": t,
                "unit": study.lab_units.get(t),
            }
        )
    for s in BASELINE_SCORES:
        feats[f"baseline_{s}"] = base_scores[s].to_numpy(dtype=float)
        spec.append({"name": f"baseline_{s}", "kind": "score", "source": s, "unit": "points"})
    for name, (values, kind, source) in _cell_features(study, config, n).items():
        feats[name] = values
        spec.append({"name": name, "kind": kind, "source": source, "unit": "fraction"})
    for name, values in _regimen_features(patients).items():
        feats[name] = values
        spec.append({"name": name, "kind": "regimen", "source": name, "unit": _REGIMEN_UNITS[name]})

    label_cols = (
        _labels(study, config, assumed, base, base_scores, test_names, codes, exclude)
        if labels
        else {}
    )
    feature_columns = list(feats)
    table = pd.concat([table, pd.DataFrame(feats), pd.DataFrame(label_cols)], axis=1)
    keep = reasons == None  # noqa: E711
    if labels:
        table["response"] = table["response"].astype("Int64")
    exclusions = pd.DataFrame({"patient_id": ids[~keep], "reason": reasons[~keep].astype(str),
                               "category": categories[~keep].astype(str)})  # fmt: skip
    included = table[keep].reset_index(drop=True)
    flow = patient_flow(n, exclusions, included if labels else None, problems)
    derived = None
    if study.cells_derived and study.cells is not None:
        derived = study.cells.assign(patient_id=ids[study.cells["pidx"].to_numpy()]).drop(
            columns="pidx"
        )
        derived = derived[["patient_id", "day", "population", "parent", "fraction"]]
    return FeatureSet(included, feature_columns, exclusions, assumed.frame(ids[keep]), flow,
                      dict(study.lab_units), derived, problems, spec, study.simulated)  # fmt: skip


def _check_feature_names(test_names: list[str], file: str) -> None:
    seen: dict[str, str] = {}
    problems = []
    for t in test_names:
        if slug(t) in seen:
            problems.append(Problem(file, None, "test", (
                f"tests {seen[slug(t)]!r} and {t!r} give the same feature name "
                f"'baseline_{slug(t)}'; name each test once")))  # fmt: skip
        seen.setdefault(slug(t), t)
    if problems:
        raise DataError(problems)


def _labels(study, config, assumed, base, base_scores, test_names, codes, exclude) -> dict:
    """The endpoint at baseline and follow-up, its change and the response; exclusions by reason."""
    labs, n = study.labs, len(study.patients)
    pidx, day, value = labs["pidx"].to_numpy(), labs["day"].to_numpy(), labs["value"].to_numpy()
    ep, score = config.endpoint, config.endpoint.score
    fu_lo, fu_hi = ep.followup_window
    fu_vals, fu_days = pick_values(pidx, day, codes, value, n, len(test_names), fu_lo, fu_hi,
                                   target=ep.followup_day)  # fmt: skip
    has_fu = ~np.all(np.isnan(fu_vals), axis=1)
    fu = assumed.columns(fu_vals, test_names, config, f"day {ep.followup_day}", has_fu)
    fu_scores = _wide_scores(fu, study.patients)
    b_end = _endpoint_values(score, base, base_scores)
    f_end = _endpoint_values(score, fu, fu_scores)

    def not_computable(visit: str, tests: dict, values: np.ndarray) -> np.ndarray:
        reason = np.full(n, None, dtype=object)
        for i in np.flatnonzero(np.isnan(values)):
            missing = _missing_components(
                score, lambda t, i=i: t in tests and not np.isnan(tests[t][i])
            )
            reason[i] = f"{visit} {score} not computable: missing {', '.join(missing)}"
        return reason

    reason = not_computable("baseline", base, b_end)
    exclude(reason != None, reason, f"baseline {score} not computable")  # noqa: E711
    exclude(~has_fu, f"no follow-up measurement in days {fu_lo}..{fu_hi}")
    reason = not_computable("follow-up", fu, f_end)
    exclude(reason != None, reason, f"follow-up {score} not computable")  # noqa: E711
    change = labels_mod.endpoint_change(b_end, f_end)
    endpoint_cols = [i for i, t in enumerate(test_names) if t in ENDPOINT_TESTS[score]]
    used_day = (np.nanmax(fu_days[:, endpoint_cols], axis=1, initial=-np.inf)
                if endpoint_cols else np.full(n, np.nan))  # fmt: skip
    return {
        "endpoint_baseline": b_end,
        "endpoint_followup": f_end,
        "endpoint_change": change,
        "followup_day_used": np.where(np.isfinite(used_day), used_day, np.nan),
        "response": labels_mod.response(change, ep.direction, ep.min_change),
    }


def patient_flow(
    n_input: int,
    exclusions: pd.DataFrame,
    labelled: pd.DataFrame | None,
    problems: pd.DataFrame | None = None,
) -> dict:
    """Counts for the flow box: input, excluded by category, included, responders, bad rows."""
    by = exclusions["category"] if "category" in exclusions else exclusions["reason"]
    rules, outside, not_read = None, 0, 0
    if problems is not None and len(problems):
        read = problems["test_read"] if "test_read" in problems else True
        rules = counts_by_rule(problems)
        outside = int((~problems["in_window"] & read).sum())
        not_read = int((~problems["in_window"]).sum()) - outside
    flow = flow_of_counts(n_input, by.value_counts().to_dict(), len(exclusions), rules, outside,
                          not_read)  # fmt: skip
    if labelled is not None:
        r = int(labelled["response"].sum())
        flow.update(responders=r, non_responders=int(len(labelled) - r))
    return flow


def flow_of_counts(
    n_input: int,
    excluded: dict,
    n_excluded: int,
    rows_by_rule: dict | None = None,
    rows_outside_windows: int = 0,
    rows_in_tests_not_read: int = 0,
) -> dict:
    """The flow of :func:`patient_flow` from counts (excluded patients by category, row
    problems by rule, rows that reject nobody: of a test that is read but outside every
    window, and of a test the config does not read): the one layout, also for engines
    that count without frames."""
    flow = {
        "patients_in_input": int(n_input),
        "excluded": {str(k): int(excluded[k]) for k in sorted(excluded)},
        "n_excluded": int(n_excluded),
        "included": int(n_input - n_excluded),
    }
    if rows_by_rule:
        flow["rows_with_problems"] = {str(k): int(rows_by_rule[k]) for k in sorted(rows_by_rule)}
        flow["rows_with_problems_outside_windows"] = int(rows_outside_windows)
        flow["rows_with_problems_in_tests_not_read"] = int(rows_in_tests_not_read)
    return flow


def _cell_features(study: Study, config: ExperimentConfig, n: int) -> dict[str, tuple]:
    """``name -> (values, kind, population)`` of the cell-fraction features."""
    cells = study.cells
    if cells is None or cells.empty:
        return {}
    pops = sorted(cells["population"].unique())
    pop_codes = pd.Categorical(cells["population"], categories=pops).codes
    pidx, day, frac = (cells[c].to_numpy() for c in ("pidx", "day", "fraction"))
    lo, hi = config.baseline_window
    base, _ = pick_values(pidx, day, pop_codes, frac, n, len(pops), lo, hi)
    out = {f"baseline_{slug(p)}_fraction": (base[:, j], "cells", p) for j, p in enumerate(pops)}
    if config.landmark_day is not None:
        land, _ = pick_values(pidx, day, pop_codes, frac, n, len(pops), 1, config.landmark_day)
        for j, p in enumerate(pops):
            out[f"landmark_{slug(p)}_fraction"] = (land[:, j], "cells_landmark", p)
            out[f"change_{slug(p)}_fraction"] = (land[:, j] - base[:, j], "cells_change", p)
    return out


def _regimen_features(patients: pd.DataFrame) -> dict[str, np.ndarray]:
    if "dose_per_infusion" not in patients or "n_infusions" not in patients:
        return {}
    interval = patients["interval_days"] if "interval_days" in patients else None
    out = regimen_features(patients["dose_per_infusion"], patients["n_infusions"], interval)
    return {k: out[k] for k in REGIMEN_FEATURES if k in out}


#: What :func:`write_feature_set` may write beside the feature table.
FEATURE_SIDECARS = (EXCLUDED, ASSUMPTIONS, FLOW, PROBLEMS, CELLS_FROM_H5AD)


def check_feature_outputs(out: str | Path, config_path: str | Path, data_dir: str | Path) -> None:
    """The feature table and its sidecars may be written without destroying an input.

    See :func:`msc_response.io.check_outputs`; the inputs are the study's tables and the
    config file.
    """
    outputs = [Path(out), *(sidecar(out, s) for s in FEATURE_SIDECARS)]
    check_outputs(outputs, inputs=[*input_paths(data_dir), Path(config_path)], option="out")


def write_problems(problems: pd.DataFrame, path: str | Path) -> Path:
    """The full list of row problems as CSV (patient ids included: a local file, never logged)."""
    cols = ["file", "row", "column", "patient_id", "test", "rule", "message"]
    out = problems[cols + [c for c in ("test_read", "in_window") if c in problems]]
    return write_table(out, path)


def write_feature_set(fs: FeatureSet, out: str | Path) -> list[Path]:
    """Write the table, the exclusions, the assumptions, the flow and the row problems (atomically)."""
    written = [
        write_table(fs.table, out),
        write_table(fs.exclusions, sidecar(out, EXCLUDED)),
        write_table(fs.assumptions, sidecar(out, ASSUMPTIONS)),
        write_json({"flow": fs.flow, "feature_columns": fs.feature_columns, "lab_units": fs.lab_units,
                    "feature_spec": fs.feature_spec}, sidecar(out, FLOW)),
    ]  # fmt: skip
    if len(fs.problems):
        written.append(write_problems(fs.problems, sidecar(out, PROBLEMS)))
    if fs.derived_cells is not None:
        written.append(write_table(fs.derived_cells, sidecar(out, CELLS_FROM_H5AD)))
    return written
