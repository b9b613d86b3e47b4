"""The paper's view of a cohort: who improved, by arm, on each endpoint the trial reported.

Shi et al. (Signal Transduct Target Ther 2025;10:238) reported, by group, the share of
patients whose Child-Pugh score fell, whose MELD fell and whose albumin rose, and the
MX1+ monocyte course after infusion. This module gives the same numbers for any study,
each proportion with its exact (Clopper-Pearson) 95% interval and each mean with its t
interval (:mod:`.intervals`):

* :func:`endpoint_labels`: the labels of each endpoint of :data:`PAPER_ENDPOINTS`, built
  by the project's one feature builder (:func:`~msc_response.features.features_from_study`)
  with the endpoint swapped into the experiment's config; plus the sensitivity endpoint.
* :func:`responders_by_arm`, :func:`change_by_arm`: x/n and mean change per arm, per
  regimen group (single dose, repeated doses) and overall.
* :func:`class_shifts`, :func:`component_changes`: Child-Pugh class at baseline against
  follow-up; which of the five Child-Pugh items moved.
* :func:`cell_course`: a cell fraction (MX1+ monocytes) by study day, by arm and by
  responder status.

Numbers only: drawing is :mod:`.figures`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import scores
from ..config import Endpoint, ExperimentConfig
from ..domain import TRIAL_ARMS
from ..errors import DataError
from ..features import FeatureSet, features_from_study, visit_values
from ..labels import endpoint_change, response
from ..study import Study
from .intervals import UNIT_RANGE, mean, proportion

#: Label of patients whose arm is not recorded.
NO_ARM = "(arm not recorded)"
ALL = "all patients"
SINGLE = "single dose (pooled)"
REPEATED = "repeated doses (pooled)"

#: The Child-Pugh items (PT stands in for INR).
CHILD_PUGH_ITEMS = scores.CHILD_PUGH_ITEMS


@dataclass(frozen=True)
class PaperEndpoint:
    """One endpoint of the paper's view: what it is called and how it is labelled."""

    key: str
    title: str
    endpoint: Endpoint | None  # None: derived from another endpoint (the sensitivity endpoint)
    unit: str


def paper_endpoints(config: ExperimentConfig) -> list[PaperEndpoint]:
    """The trial's reported endpoints at the config's follow-up day, and the sensitivity endpoint.

    Child-Pugh fall >= 1 point, MELD fall >= 1 point, albumin rise >= 0.1 g/dL (as the
    simulator's truth and the trial summary count them), and the sensitivity endpoint of
    Child-Pugh (:func:`sensitivity_response`).
    """
    day, window = config.endpoint.followup_day, config.endpoint.window_days
    ep = lambda score, direction, change: Endpoint(score, direction, change, day, window)  # noqa: E731
    return [
        PaperEndpoint("child_pugh", f"Child-Pugh fall >= 1 point by day {day}",
                      ep("child_pugh", "decrease", 1.0), "points"),
        PaperEndpoint("child_pugh_sensitivity",
                      f"Child-Pugh fall >= 2 points or a better Child-Pugh class by day {day} (sensitivity)",
                      None, "points"),
        PaperEndpoint("meld", f"MELD fall >= 1 point by day {day}", ep("meld", "decrease", 1.0), "points"),
        PaperEndpoint("albumin", f"albumin rise >= 0.1 g/dL by day {day}",
                      ep("albumin", "increase", 0.1), "g/dL"),
    ]  # fmt: skip


def sensitivity_definition(endpoint: Endpoint) -> str:
    """In words: the sensitivity endpoint of ``endpoint`` (see :func:`sensitivity_response`)."""
    verb = "fall" if endpoint.direction == "decrease" else "rise"
    text = f"{endpoint.score} {verb} >= {2 * endpoint.min_change:g}"
    if endpoint.score == "child_pugh":
        text += " points, or a better Child-Pugh class (C to B, B to A, C to A)"
    return text + f" by day {endpoint.followup_day}"


def sensitivity_response(endpoint: Endpoint, baseline, followup) -> np.ndarray:
    """The sensitivity endpoint: twice the minimal change, or (Child-Pugh) a better class.

    A 1-point Child-Pugh change is within measurement noise; a fall of 2 points or a class
    change is not. 1.0 / 0.0, NaN where either value is missing.

    Examples
    --------
    >>> ep = Endpoint("child_pugh", "decrease", 1.0)
    >>> sensitivity_response(ep, [10, 10, 9, 8], [9, 8, 8, 8]).tolist()
    [1.0, 1.0, 0.0, 0.0]
    """
    b, f = np.asarray(baseline, float), np.asarray(followup, float)
    out = response(endpoint_change(b, f), endpoint.direction, 2 * endpoint.min_change)
    if endpoint.score == "child_pugh" and endpoint.direction == "decrease":
        cb, cf = scores.child_pugh_class(b), scores.child_pugh_class(f)
        better = np.array(
            [x is not None and y is not None and y < x for x, y in zip(cb, cf, strict=True)]
        )
        out = np.where(np.isnan(out), np.nan, np.maximum(out, better.astype(float)))
    return out


def regimen_groups(patients: pd.DataFrame) -> pd.DataFrame:
    """``patient_id``, ``arm`` (as written, or :data:`NO_ARM`) and ``group`` (single/repeated)."""
    arm = patients["arm"] if "arm" in patients else pd.Series([None] * len(patients))
    arm = arm.astype(object).where(arm.notna(), NO_ARM)
    if "n_infusions" in patients:
        n_inf = patients["n_infusions"].to_numpy(dtype=float)
        group = np.where(np.isnan(n_inf), None, np.where(n_inf > 1, REPEATED, SINGLE))
    else:
        group = np.full(len(patients), None)
    return pd.DataFrame({"patient_id": patients["patient_id"].to_numpy(),
                         "arm": arm.astype(str).to_numpy(), "group": group})  # fmt: skip


def arm_order(arms) -> list[str]:
    """The trial's arms in the trial's order, then any other arm sorted, the unrecorded last."""
    present = list(dict.fromkeys(str(a) for a in arms))
    trial = [a.name for a in TRIAL_ARMS if a.name in present]
    others = sorted(a for a in present if a not in trial and a != NO_ARM)
    return trial + others + ([NO_ARM] if NO_ARM in present else [])


def endpoint_labels(config: ExperimentConfig, study: Study) -> dict[str, pd.DataFrame | str]:
    """Per paper endpoint: a table of labels, or the reason it cannot be labelled in this study.

    Each table has ``patient_id``, ``arm``, ``group``, ``baseline``, ``followup``,
    ``change`` and ``response`` (0/1) for the patients the feature builder includes for
    that endpoint (patients with bad rows are excluded, as ``--exclude-bad-patients``
    does). An endpoint the study can never give (MELD without creatinine) is a string.
    """
    groups = regimen_groups(study.patients)
    out: dict[str, pd.DataFrame | str] = {}
    for pe in paper_endpoints(config):
        if pe.endpoint is None:
            continue
        cfg = dataclasses.replace(config, endpoint=pe.endpoint)
        try:
            fs = features_from_study(study, cfg, labels=True, bad_rows="exclude")
        except DataError as err:
            out[pe.key] = "; ".join(p.message for p in err.problems)
            continue
        out[pe.key] = _label_table(fs, groups)
    cp = out.get("child_pugh")
    if isinstance(cp, pd.DataFrame):
        sens = cp.copy()
        sens["response"] = sensitivity_response(
            Endpoint("child_pugh", "decrease", 1.0), sens["baseline"], sens["followup"]
        ).astype(int)
        out["child_pugh_sensitivity"] = sens
    else:
        out["child_pugh_sensitivity"] = cp if isinstance(cp, str) else "Child-Pugh not labelled"
    return {pe.key: out[pe.key] for pe in paper_endpoints(config) if pe.key in out}


def _label_table(fs: FeatureSet, groups: pd.DataFrame) -> pd.DataFrame:
    t = fs.table
    table = pd.DataFrame({
        "patient_id": t["patient_id"].to_numpy(),
        "baseline": t["endpoint_baseline"].to_numpy(dtype=float),
        "followup": t["endpoint_followup"].to_numpy(dtype=float),
        "change": t["endpoint_change"].to_numpy(dtype=float),
        "response": t["response"].to_numpy(dtype=int),
    })  # fmt: skip
    return groups.merge(table, on="patient_id", how="inner", validate="one_to_one")


def _by_arm_rows(labels: pd.DataFrame):
    """(label, rows) for each arm in trial order, each regimen group, and all patients."""
    for arm in arm_order(labels["arm"]):
        yield "arm", arm, labels[labels["arm"] == arm]
    for group in (SINGLE, REPEATED):
        rows = labels[labels["group"] == group]
        if len(rows) and rows["arm"].nunique() > 1:  # a group of one arm repeats that arm
            yield "group", group, rows
    yield "all", ALL, labels


def responders_by_arm(labels: pd.DataFrame) -> pd.DataFrame:
    """Responders x/n per arm, regimen group and overall, with exact 95% intervals.

    Columns ``level`` (arm, group, all), ``arm``, ``responders``, ``n``, ``proportion``,
    ``ci_low``, ``ci_high``.
    """
    rows = []
    for level, name, part in _by_arm_rows(labels):
        pr = proportion(int(part["response"].sum()), len(part))
        rows.append({"level": level, "arm": name, "responders": pr.x, "n": pr.n,
                     "proportion": pr.estimate, "ci_low": pr.low, "ci_high": pr.high})  # fmt: skip
    return pd.DataFrame(rows)


def change_by_arm(labels: pd.DataFrame) -> pd.DataFrame:
    """Mean change (follow-up minus baseline) per arm, group and overall, with t intervals.

    Columns ``level``, ``arm``, ``n``, ``mean``, ``ci_low``, ``ci_high``, ``median``,
    ``why_no_interval``.
    """
    rows = []
    for level, name, part in _by_arm_rows(labels):
        m = mean(part["change"])
        rows.append({"level": level, "arm": name, "n": m.n, "mean": m.mean, "ci_low": m.low,
                     "ci_high": m.high, "median": float(part["change"].median()) if m.n else np.nan,
                     "why_no_interval": m.why_not or ""})  # fmt: skip
    return pd.DataFrame(rows)


def class_shifts(child_pugh: pd.DataFrame) -> pd.DataFrame:
    """Counts of baseline Child-Pugh class (rows) against follow-up class (columns)."""
    base = pd.Categorical(scores.child_pugh_class(child_pugh["baseline"]), categories=list("ABC"))
    fu = pd.Categorical(scores.child_pugh_class(child_pugh["followup"]), categories=list("ABC"))
    table = pd.crosstab(pd.Series(base, name="baseline class"), pd.Series(fu, name="follow-up class"),
                        dropna=False)  # fmt: skip
    return table.reindex(index=list("ABC"), columns=list("ABC"), fill_value=0).astype(int)


def class_shift_summary(child_pugh: pd.DataFrame) -> pd.DataFrame:
    """Patients whose Child-Pugh class got better, stayed, got worse: x/n with exact intervals."""
    order = {"A": 0, "B": 1, "C": 2}
    base = [order.get(c, np.nan) for c in scores.child_pugh_class(child_pugh["baseline"])]
    fu = [order.get(c, np.nan) for c in scores.child_pugh_class(child_pugh["followup"])]
    d = np.asarray(fu, float) - np.asarray(base, float)
    n = int(np.isfinite(d).sum())
    rows = []
    for what, mask in (("better class", d < 0), ("same class", d == 0), ("worse class", d > 0)):
        pr = proportion(int(mask.sum()), n)
        rows.append({"shift": what, "patients": pr.x, "n": n, "proportion": pr.estimate,
                     "ci_low": pr.low, "ci_high": pr.high})  # fmt: skip
    return pd.DataFrame(rows)


def child_pugh_points(values: dict[str, np.ndarray], cholestatic: np.ndarray) -> pd.DataFrame:
    """The points of each Child-Pugh item (coagulation from INR, or PT over control without INR)."""
    n = len(cholestatic)
    get = lambda t: values.get(t, np.full(n, np.nan))  # noqa: E731
    return pd.DataFrame(scores.child_pugh_items(
        get("bilirubin"), get("albumin"), get("inr"), get("ascites"), get("encephalopathy"),
        pt=get("pt"), pt_control=get("pt_control"), cholestatic=cholestatic,
    ))  # fmt: skip


def item_points(config: ExperimentConfig, study: Study) -> dict[str, pd.DataFrame]:
    """Child-Pugh item points of every patient of ``study`` at ``baseline`` and ``followup``.

    Rows follow ``study.patients``; a ``patient_id`` column is added. Their sums are the
    Child-Pugh scores the labels use (a test checks it).
    """
    chol = scores.cholestatic_mask(study.patients.get("etiology"), study.patients.index)
    ids = study.patients["patient_id"].to_numpy()
    return {
        visit: child_pugh_points(visit_values(study, config, visit), chol).assign(patient_id=ids)
        for visit in ("baseline", "followup")
    }


def component_changes(
    config: ExperimentConfig, study: Study, child_pugh: pd.DataFrame
) -> pd.DataFrame:
    """Which Child-Pugh items moved between baseline and follow-up, among the labelled patients.

    Columns ``item``, ``better``, ``same``, ``worse``, ``n``, and the share of patients
    whose item improved (``proportion_better``, exact ``ci_low``/``ci_high``).
    """
    points = item_points(config, study)
    ids = child_pugh["patient_id"]
    base = points["baseline"].set_index("patient_id").loc[ids]
    fu = points["followup"].set_index("patient_id").loc[ids]
    rows = []
    for item in CHILD_PUGH_ITEMS:
        d = fu[item].to_numpy() - base[item].to_numpy()
        n = int(np.isfinite(d).sum())
        pr = proportion(int((d < 0).sum()), n)
        rows.append({"item": item, "better": pr.x, "same": int((d == 0).sum()), "worse": int((d > 0).sum()),
                     "n": n, "proportion_better": pr.estimate, "ci_low": pr.low, "ci_high": pr.high})  # fmt: skip
    return pd.DataFrame(rows)


def cell_course(
    study: Study, labels: pd.DataFrame | None, *, last_day: int, population: str | None = None
) -> pd.DataFrame:
    """Mean cell fraction by study day (days <= ``last_day``), by arm and by responder status.

    Columns ``population``, ``by`` (``arm`` or ``response``), ``group``, ``day``, ``n``,
    ``mean``, ``ci_low``, ``ci_high`` (t interval on the logit scale: a fraction stays in
    0-1). Responder status comes from ``labels`` (the
    patients it labels); an empty frame when the study has no cell fractions.
    """
    cols = ["population", "by", "group", "day", "n", "mean", "ci_low", "ci_high"]
    cells = study.cells
    if cells is None or cells.empty:
        return pd.DataFrame(columns=cols)
    cells = cells[cells["day"] <= last_day]
    if population is not None:
        cells = cells[cells["population"] == population]
    groups = regimen_groups(study.patients)
    frame = pd.DataFrame({
        "population": cells["population"].astype(str).to_numpy(),
        "patient_id": study.patients["patient_id"].to_numpy()[cells["pidx"].to_numpy()],
        "day": cells["day"].to_numpy(dtype=int), "fraction": cells["fraction"].to_numpy(dtype=float),
    }).merge(groups[["patient_id", "arm"]], on="patient_id")  # fmt: skip
    if labels is not None:
        status = labels.set_index("patient_id")["response"].map(
            {1: "responders", 0: "non-responders"}
        )
        frame["response"] = frame["patient_id"].map(status)
    rows = []
    for pop, part in frame.groupby("population", sort=True):
        for by in ("arm", "response"):
            if by not in part:
                continue
            order = arm_order(part["arm"]) if by == "arm" else ["responders", "non-responders"]
            for group in order:
                sub = part[part[by] == group]
                for day, values in sub.groupby("day", sort=True)["fraction"]:
                    m = mean(values, within=UNIT_RANGE)
                    rows.append({"population": pop, "by": by, "group": group, "day": int(day), "n": m.n,
                                 "mean": m.mean, "ci_low": m.low, "ci_high": m.high})  # fmt: skip
    return pd.DataFrame(rows, columns=cols)
