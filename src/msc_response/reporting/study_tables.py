"""The report's tables of the study: patient flow by arm, Table 1, missing values, sample size.

Numbers only (DataFrames and dicts); :mod:`.page` turns them into HTML. Table 1 describes
the sample (medians, quartiles, counts): it estimates nothing, so it carries no
intervals, and says so. The sample size is set against Riley's minimum
(:func:`~msc_response.modeling.validation.riley_min_n`), with the outcome proportion's
exact interval.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..features import FeatureSet
from ..modeling.validation import riley_min_n
from ..study import Study
from .intervals import proportion
from .paper_view import NO_ARM, arm_order, regimen_groups

TOTAL = "total"

#: What each kind of model does with a missing value (see ``modeling/models.py``).
MISSING_HANDLING = {
    "lightgbm": "LightGBM: a missing value follows the branch learned for missing values at each split",
    "logistic": "logistic regression: the median of the training patients is imputed "
                "(inside each cross-validation fold), then standardised",
}  # fmt: skip

TABLE1_NOTE = (
    "Table 1 describes the patients (median [quartiles]; n (%)); it estimates nothing, so "
    "it has no intervals. 'missing' counts patients without the value."
)


def flow_by_arm(study: Study, features: FeatureSet) -> pd.DataFrame:
    """Patients per arm at each step of the flow: in the input, excluded (by reason), included,
    responders and non-responders. Rows are steps, columns arms in trial order and ``total``."""
    groups = regimen_groups(study.patients)[["patient_id", "arm"]]
    arms = arm_order(groups["arm"])
    steps: list[tuple[str, pd.Series]] = [("patients in input", groups["arm"])]
    excl = features.exclusions.merge(groups, on="patient_id", how="left")
    for category in sorted(excl["category"].unique()):
        steps.append((f"excluded: {category}", excl.loc[excl["category"] == category, "arm"]))
    included = features.table[["patient_id"]].merge(groups, on="patient_id", how="left")
    steps.append(("included", included["arm"]))
    if "response" in features.table:
        resp = features.table["response"].to_numpy(dtype=int) == 1
        steps.append(("responders", included.loc[resp, "arm"]))
        steps.append(("non-responders", included.loc[~resp, "arm"]))
    rows = {}
    for step, arm in steps:
        counts = arm.fillna(NO_ARM).value_counts()
        rows[step] = {a: int(counts.get(a, 0)) for a in arms} | {TOTAL: int(len(arm))}
    return pd.DataFrame.from_dict(rows, orient="index", columns=[*arms, TOTAL]).rename_axis("step")


def _describe_continuous(v: pd.Series) -> str:
    v = v.dropna()
    if v.empty:
        return "-"
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return f"{med:.3g} [{q1:.3g}-{q3:.3g}]"


def _describe_level(v: pd.Series, level) -> str:
    known = v.dropna()
    k = int((known == level).sum())
    return f"{k} ({100 * k / len(known):.0f}%)" if len(known) else "-"


def _levels(v: pd.Series) -> list | None:
    """The levels of a categorical-looking column (text, or a few whole numbers), else None."""
    known = v.dropna()
    if known.empty:
        return None
    if not pd.api.types.is_numeric_dtype(known):
        return sorted(known.astype(str).unique())
    values = np.unique(known.to_numpy(dtype=float))
    if len(values) <= 5 and np.all(values == np.round(values)):
        return list(values)
    return None


def table1(study: Study, features: FeatureSet) -> pd.DataFrame:
    """Baseline characteristics of the included patients: all, responders, non-responders.

    Rows: sex, age, etiology, arm, then every feature column of the feature spec (in the
    feature unit), a categorical-looking one (a grade, a flag) by level. Columns ``characteristic``,
    ``unit``, ``all``, ``responders``, ``non-responders``, ``missing``.
    """
    t = features.table
    extra = study.patients[[c for c in ("patient_id", "sex", "etiology") if c in study.patients]]
    data = t.merge(extra, on="patient_id", how="left", validate="one_to_one")
    groups = {"all": data}
    if "response" in data:
        y = data["response"].to_numpy(dtype=int)
        groups |= {"responders": data[y == 1], "non-responders": data[y == 0]}
    units = {f["name"]: f["unit"] for f in features.feature_spec}
    columns = [("sex", "sex", "")] if "sex" in data else []
    columns.append(("age_years", "age", "years"))
    columns += [(c, c, "") for c in ("etiology", "arm") if c in data]
    columns += [(c, c, units.get(c) or "") for c in features.feature_columns
                if c not in ("age_years", "female")]  # fmt: skip
    rows = []
    header = {name: f"n = {len(g)}" for name, g in groups.items()}
    rows.append({"characteristic": "patients", "unit": "", **header, "missing": ""})
    for col, label, unit in columns:
        v = data[col]
        missing = int(v.isna().sum())
        levels = _levels(v)
        if levels is None:
            rows.append({"characteristic": label, "unit": unit, "missing": missing,
                         **{g: _describe_continuous(part[col]) for g, part in groups.items()}})  # fmt: skip
            continue
        as_text = not pd.api.types.is_numeric_dtype(v.dropna())
        for i, level in enumerate(levels):
            shown = level if as_text else f"{level:g}"
            rows.append({"characteristic": f"{label} = {shown}", "unit": unit,
                         "missing": missing if i == 0 else "",
                         **{g: _describe_level(part[col].astype(str) if as_text else part[col], level)
                            for g, part in groups.items()}})  # fmt: skip
    return pd.DataFrame(rows, columns=["characteristic", "unit", *groups, "missing"])


def missingness(features: FeatureSet, model_kinds=("lightgbm", "logistic")) -> pd.DataFrame:
    """Missing values per predictor among the included patients, and what each model does.

    Columns ``predictor``, ``unit``, ``missing``, ``n``, ``percent``, then one column per
    model kind saying how it handles them (only where anything is missing).
    """
    t = features.table
    units = {f["name"]: f["unit"] for f in features.feature_spec}
    rows = []
    for c in features.feature_columns:
        k = int(t[c].isna().sum())
        row = {"predictor": c, "unit": units.get(c) or "", "missing": k, "n": len(t),
               "percent": 100 * k / len(t) if len(t) else np.nan}  # fmt: skip
        for kind in model_kinds:
            row[kind] = MISSING_HANDLING[kind] if k else "nothing missing"
        rows.append(row)
    return pd.DataFrame(rows)


def sample_size(features: FeatureSet, n_parameters: int | None = None) -> dict:
    """Patients, events, the outcome proportion (exact interval), events per candidate
    parameter, and Riley's minimum sample size with its three criteria.

    ``n_parameters`` defaults to the number of feature columns (each a parameter).
    """
    y = features.table["response"].to_numpy(dtype=int)
    n, events = len(y), int(y.sum())
    p = n_parameters if n_parameters is not None else len(features.feature_columns)
    out = {"n": n, "events": events, "non_events": n - events, "outcome": proportion(events, n),
           "n_parameters": p,
           "events_per_parameter": events / p if p else float("nan"),
           "minority_per_parameter": min(events, n - events) / p if p else float("nan")}  # fmt: skip
    if 0 < events < n and p >= 1:
        out["riley"] = riley_min_n(events / n, p)
        out["shortfall"] = max(0, out["riley"]["min_n"] - n)
    else:
        out["riley"] = None
        out["why_no_riley"] = "the outcome has a single class"
    return out
