"""Feature builders: validated tables to one feature table per patient.

:func:`add_scores` computes the liver scores of a wide table whose score inputs are in
canonical units; the study-level builder (:func:`build_features`) picks baseline and
follow-up values from long-format labs and calls it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import labels as labels_mod
from . import scores
from .config import ExperimentConfig
from .dataset import Study, load_study
from .domain import regimen_features
from .errors import DataError, Problem
from .io import write_json, write_table

#: Output columns of :func:`add_scores`.
SCORE_COLUMNS = ["child_pugh", "child_pugh_class", "meld", "meld_na", "meld3"]

CHOLESTATIC_ETIOLOGIES = frozenset({"pbc", "psc"})


def cholestatic_mask(etiology: pd.Series | None, index) -> np.ndarray:
    """True where the etiology is PBC or PSC (the Child-Pugh bilirubin variant applies)."""
    if etiology is None:
        return np.zeros(len(index), dtype=bool)
    cat = etiology.astype("category")  # string work once per distinct etiology, not per row
    names = pd.Index(cat.cat.categories.astype(str)).str.strip().str.lower()
    flags = np.append(names.isin(CHOLESTATIC_ETIOLOGIES), False)  # code -1 (missing): False
    return flags[cat.cat.codes.to_numpy()]


def add_scores(canonical: pd.DataFrame) -> pd.DataFrame:
    """Child-Pugh (score and class), MELD, MELD-Na and MELD 3.0 of every row.

    Parameters
    ----------
    canonical : DataFrame
        Columns ``bilirubin``, ``albumin``, ``inr``, ``creatinine``, ``sodium`` (canonical
        units), ``ascites``, ``encephalopathy``, ``dialysis``, optionally ``pt`` and
        ``pt_control`` (seconds), ``sex`` (F/M) and ``etiology`` (PBC/PSC use the
        cholestatic bilirubin bands).

    Returns
    -------
    DataFrame
        The columns of :data:`SCORE_COLUMNS`, on the index of ``canonical``.
    """
    c = canonical
    col = lambda name: c[name].to_numpy(dtype=float) if name in c else np.full(len(c), np.nan)  # noqa: E731
    cp = scores.child_pugh(
        col("bilirubin"), col("albumin"), col("inr"), col("ascites"), col("encephalopathy"),
        pt=col("pt"), pt_control=col("pt_control"),
        cholestatic=cholestatic_mask(c.get("etiology"), c.index),
    )  # fmt: skip
    dialysis = col("dialysis")
    if "sex" in c:
        sex = c["sex"].to_numpy()
        female = np.where(sex == "F", 1.0, np.where(sex == "M", 0.0, np.nan))
    else:
        female = np.full(len(c), np.nan)
    out = pd.DataFrame(index=c.index)
    out["child_pugh"] = cp
    out["child_pugh_class"] = scores.child_pugh_class(cp)
    out["meld"] = scores.meld(col("bilirubin"), col("inr"), col("creatinine"), dialysis)
    out["meld_na"] = scores.meld_na(
        col("bilirubin"), col("inr"), col("creatinine"), col("sodium"), dialysis
    )
    out["meld3"] = scores.meld3(
        col("bilirubin"),
        col("inr"),
        col("creatinine"),
        col("sodium"),
        col("albumin"),
        female,
        dialysis,
    )
    return out


def with_scores(raw: pd.DataFrame, canonical: pd.DataFrame) -> pd.DataFrame:
    """``raw`` with the score columns of ``canonical`` appended (existing score columns replaced)."""
    scored = add_scores(canonical)
    for col in ("child_pugh", "meld", "meld_na", "meld3"):  # whole points, missing allowed
        scored[col] = scored[col].astype("Int64")
    return pd.concat(
        [raw.drop(columns=[c for c in scored.columns if c in raw.columns]), scored], axis=1
    )


# ----------------------------------------------------------------------------------------
# the study-level feature builder

#: The lab tests each endpoint needs (``inr`` may be replaced by ``pt`` and ``pt_control``).
ENDPOINT_TESTS: dict[str, tuple[str, ...]] = {
    "child_pugh": ("bilirubin", "albumin", "inr", "ascites", "encephalopathy"),
    "meld": ("bilirubin", "inr", "creatinine", "dialysis"),
    "meld_na": ("bilirubin", "inr", "creatinine", "sodium", "dialysis"),
    "meld3": ("bilirubin", "inr", "creatinine", "sodium", "albumin", "dialysis"),
    "albumin": ("albumin",),
}

SCORE_TESTS = ("bilirubin", "albumin", "inr", "pt", "pt_control", "creatinine", "sodium",
               "ascites", "encephalopathy", "dialysis")  # fmt: skip

#: Scores computed at baseline; each is the feature ``baseline_<score>``.
BASELINE_SCORES = ("child_pugh", "meld", "meld_na", "meld3")


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
        ``patient_id``, ``reason``: every patient of the input not in ``table``.
    assumptions : DataFrame
        ``patient_id``, ``visit``, ``assumption``: every assumed value (``assume``, PT for INR).
    flow : dict
        Patient counts: in the input, excluded by reason, included, responders.
    lab_units : dict
        The unit of every lab test as used in the features.
    derived_cells : DataFrame or None
        MX1+ monocyte fractions derived from ``cells.h5ad``, in the ``cells`` form.
    """

    table: pd.DataFrame
    feature_columns: list[str]
    exclusions: pd.DataFrame
    assumptions: pd.DataFrame
    flow: dict
    lab_units: dict[str, str] = field(default_factory=dict)
    derived_cells: pd.DataFrame | None = None


def slug(name: str) -> str:
    """A column-safe name: ``"MX1+ monocytes"`` -> ``"mx1_monocytes"``."""
    return re.sub(r"[^0-9a-z]+", "_", str(name).lower()).strip("_")


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
    values, days = values.reshape(n_patients, n_codes), days.reshape(n_patients, n_codes)
    return values, days


def _check_endpoint_computable(study: Study, config: ExperimentConfig) -> None:
    present = set(
        map(str, study.labs["test"].cat.categories[study.labs["test"].cat.codes.unique()])
    )
    needed = ENDPOINT_TESTS[config.endpoint.score]
    problems = []
    for test in needed:
        if test in present or test in config.assume:
            continue
        if (
            test == "inr"
            and {"pt", "pt_control"} <= present
            and config.endpoint.score == "child_pugh"
        ):
            continue
        advice = (
            f" (or set assume: {{{test}: VALUE}} in the config)"
            if test in ("ascites", "encephalopathy", "dialysis")
            else ""
        )
        problems.append(Problem(study.files["labs"].name, None, "test",
                                f"endpoint {config.endpoint.score!r} needs test {test!r}, which is never measured{advice}"))  # fmt: skip
    if problems:
        raise DataError(problems)


def _wide_scores(values: dict[str, np.ndarray], patients: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame({t: values[t] for t in SCORE_TESTS if t in values})
    frame["sex"] = patients["sex"].to_numpy()
    if "etiology" in patients:
        frame["etiology"] = patients["etiology"].to_numpy()
    return add_scores(frame)


def _endpoint_values(score: str, tests: dict[str, np.ndarray], scored: pd.DataFrame) -> np.ndarray:
    return tests["albumin"] if score == "albumin" else scored[score].to_numpy(dtype=float)


def _missing_components(score: str, tests: dict[str, np.ndarray], i: int) -> list[str]:
    missing = []
    for t in ENDPOINT_TESTS[score]:
        v = tests.get(t)
        if v is None or np.isnan(v[i]):
            if (
                t == "inr"
                and score == "child_pugh"
                and all(
                    tests.get(x) is not None and not np.isnan(tests[x][i])
                    for x in ("pt", "pt_control")
                )
            ):
                continue
            missing.append(t)
    return missing


def build_features(
    config: ExperimentConfig, data_dir: str | Path | None = None, *, labels: bool = True
) -> FeatureSet:
    """Read a study directory and build the feature table (training and scoring share this).

    Parameters
    ----------
    config : ExperimentConfig
        Baseline window, endpoint, landmark day, assumptions, single-cell settings.
    data_dir : path, optional
        Study directory; defaults to ``config.data``.
    labels : bool
        Also compute the follow-up endpoint and the response label (training). Scoring
        passes ``False``: no follow-up is needed then.

    Raises
    ------
    DataError
        Any problem in the input files, or an endpoint the data cannot give.
    """
    study = load_study(config.data if data_dir is None else data_dir, config.singlecell)
    return features_from_study(study, config, labels=labels)


def features_from_study(
    study: Study, config: ExperimentConfig, *, labels: bool = True
) -> FeatureSet:
    """:func:`build_features` on an already loaded :class:`~msc_response.dataset.Study`."""
    if labels:
        _check_endpoint_computable(study, config)
    patients, labs = study.patients, study.labs
    n = len(patients)
    test_names = [str(t) for t in labs["test"].cat.categories]
    codes = labs["test"].cat.codes.to_numpy()
    pidx, day, value = labs["pidx"].to_numpy(), labs["day"].to_numpy(), labs["value"].to_numpy()
    lo, hi = config.baseline_window
    base_vals, _ = pick_values(pidx, day, codes, value, n, len(test_names), lo, hi)
    has_baseline = np.zeros(n, dtype=bool)
    has_baseline[pidx[(day >= lo) & (day <= hi)]] = True

    assumptions: list[pd.DataFrame] = []
    ids = patients["patient_id"].to_numpy()

    def record(mask: np.ndarray, visit: str, text: str) -> None:
        if mask.any():  # one frame per rule: a site without a test may assume it for everyone
            assumptions.append(
                pd.DataFrame({"patient_id": ids[mask], "visit": visit, "assumption": text})
            )

    def columns(values: np.ndarray, visit: str, usable: np.ndarray) -> dict[str, np.ndarray]:
        cols = {t: values[:, j].copy() for j, t in enumerate(test_names)}
        for test, assumed in config.assume.items():
            col = cols.setdefault(test, np.full(n, np.nan))
            fill = np.isnan(col) & usable
            col[fill] = assumed
            record(fill, visit, f"{test} = {assumed:g} assumed (not recorded)")
        inr, pt, ptc = (cols.get(t) for t in ("inr", "pt", "pt_control"))
        if pt is not None and ptc is not None:
            uses_pt = (
                usable
                & (np.isnan(inr) if inr is not None else True)
                & ~np.isnan(pt)
                & ~np.isnan(ptc)
            )
            record(uses_pt, visit, "Child-Pugh coagulation from PT over control (INR missing)")
        return cols

    base = columns(base_vals, "baseline", has_baseline)
    base_scores = _wide_scores(base, patients)

    reasons = np.full(n, None, dtype=object)
    reasons[~has_baseline] = f"no baseline measurement in days {lo}..{hi}"
    table = pd.DataFrame({"patient_id": ids})
    if "arm" in patients:
        table["arm"] = patients["arm"].astype(str).where(patients["arm"].notna(), None).to_numpy()

    feats: dict[str, np.ndarray] = {
        "age_years": patients["age_years"].to_numpy(dtype=float),
        "female": (patients["sex"] == "F").to_numpy(dtype=float),
    }
    for t in test_names:
        feats[f"baseline_{slug(t)}"] = base[t]
    for s in BASELINE_SCORES:
        feats[f"baseline_{s}"] = base_scores[s].to_numpy(dtype=float)
    feats.update(_cell_features(study, config, n))
    feats.update(_regimen_features(patients))

    score = config.endpoint.score
    if labels:
        ep = config.endpoint
        fu_vals, fu_days = pick_values(pidx, day, codes, value, n, len(test_names),
                                       ep.followup_day - ep.window_days, ep.followup_day + ep.window_days,
                                       target=ep.followup_day)  # fmt: skip
        has_fu = ~np.all(np.isnan(fu_vals), axis=1)
        fu = columns(fu_vals, f"day {ep.followup_day}", has_fu)
        fu_scores = _wide_scores(fu, patients)
        b_end = _endpoint_values(score, base, base_scores)
        f_end = _endpoint_values(score, fu, fu_scores)
        for i in np.flatnonzero((reasons == None) & np.isnan(b_end)):  # noqa: E711
            reasons[i] = (
                f"baseline {score} not computable: missing {', '.join(_missing_components(score, base, i))}"
            )
        no_fu = (reasons == None) & ~has_fu  # noqa: E711
        reasons[no_fu] = (
            f"no follow-up measurement in days {ep.followup_day - ep.window_days}..{ep.followup_day + ep.window_days}"
        )
        for i in np.flatnonzero((reasons == None) & np.isnan(f_end)):  # noqa: E711
            reasons[i] = (
                f"follow-up {score} not computable: missing {', '.join(_missing_components(score, fu, i))}"
            )
        change = labels_mod.endpoint_change(b_end, f_end)
        endpoint_cols = [idx for idx, t in enumerate(test_names) if t in ENDPOINT_TESTS[score]]
        used_day = (
            np.nanmax(fu_days[:, endpoint_cols], axis=1, initial=-np.inf)
            if endpoint_cols
            else np.full(n, np.nan)
        )
        label_cols = {
            "endpoint_baseline": b_end,
            "endpoint_followup": f_end,
            "endpoint_change": change,
            "followup_day_used": np.where(np.isfinite(used_day), used_day, np.nan),
            "response": labels_mod.response(change, ep.direction, ep.min_change),
        }
    else:
        label_cols = {}

    feature_columns = list(feats)
    table = pd.concat([table, pd.DataFrame(feats), pd.DataFrame(label_cols)], axis=1)
    keep = reasons == None  # noqa: E711
    if labels:
        table["response"] = table["response"].astype("Int64")
    exclusions = pd.DataFrame({"patient_id": ids[~keep], "reason": reasons[~keep].astype(str)})
    assumptions_df = (
        pd.concat(assumptions, ignore_index=True)
        if assumptions
        else pd.DataFrame(columns=["patient_id", "visit", "assumption"])
    )
    assumptions_df = assumptions_df[assumptions_df["patient_id"].isin(ids[keep])].reset_index(
        drop=True
    )
    included = table[keep].reset_index(drop=True)
    flow = patient_flow(n, exclusions, included if labels else None)
    derived = None
    if study.cells_derived and study.cells is not None:
        derived = study.cells.assign(patient_id=ids[study.cells["pidx"].to_numpy()]).drop(
            columns="pidx"
        )
        derived = derived[["patient_id", "day", "population", "parent", "fraction"]]
    return FeatureSet(
        included, feature_columns, exclusions, assumptions_df, flow, dict(study.lab_units), derived
    )


def patient_flow(n_input: int, exclusions: pd.DataFrame, labelled: pd.DataFrame | None) -> dict:
    """Counts for the flow box: input, each exclusion reason, included, responders."""
    by_reason = exclusions["reason"].value_counts().sort_index()
    flow = {
        "patients_in_input": int(n_input),
        "excluded": {str(k): int(v) for k, v in by_reason.items()},
        "n_excluded": int(len(exclusions)),
        "included": int(n_input - len(exclusions)),
    }
    if labelled is not None:
        r = int(labelled["response"].sum())
        flow.update(responders=r, non_responders=int(len(labelled) - r))
    return flow


def _cell_features(study: Study, config: ExperimentConfig, n: int) -> dict[str, np.ndarray]:
    cells = study.cells
    if cells is None or cells.empty:
        return {}
    pops = sorted(cells["population"].unique())
    pop_codes = pd.Categorical(cells["population"], categories=pops).codes
    pidx, day, frac = (cells[c].to_numpy() for c in ("pidx", "day", "fraction"))
    lo, hi = config.baseline_window
    base, _ = pick_values(pidx, day, pop_codes, frac, n, len(pops), lo, hi)
    out = {}
    for j, pop in enumerate(pops):
        out[f"baseline_{slug(pop)}_fraction"] = base[:, j]
    if config.landmark_day is not None:
        land, _ = pick_values(pidx, day, pop_codes, frac, n, len(pops), 1, config.landmark_day)
        for j, pop in enumerate(pops):
            out[f"landmark_{slug(pop)}_fraction"] = land[:, j]
            out[f"change_{slug(pop)}_fraction"] = land[:, j] - base[:, j]
    return out


def _regimen_features(patients: pd.DataFrame) -> dict[str, np.ndarray]:
    if "dose_per_infusion" not in patients or "n_infusions" not in patients:
        return {}
    interval = patients["interval_days"] if "interval_days" in patients else None
    return regimen_features(patients["dose_per_infusion"], patients["n_infusions"], interval)


def sidecar(out: str | Path, suffix: str) -> Path:
    """``features.parquet`` -> ``features<suffix>`` in the same folder."""
    out = Path(out)
    return out.with_name(out.stem + suffix)


def write_feature_set(fs: FeatureSet, out: str | Path) -> list[Path]:
    """Write the table, the exclusions, the assumptions and the flow (each atomically)."""
    written = [
        write_table(fs.table, out),
        write_table(fs.exclusions, sidecar(out, ".excluded.csv")),
        write_table(fs.assumptions, sidecar(out, ".assumptions.csv")),
        write_json({"flow": fs.flow, "feature_columns": fs.feature_columns, "lab_units": fs.lab_units},
                   sidecar(out, ".flow.json")),
    ]  # fmt: skip
    if fs.derived_cells is not None:
        written.append(write_table(fs.derived_cells, sidecar(out, ".cells_from_h5ad.csv")))
    return written
