"""One patient's explanation: each feature's contribution to the log-odds, as a waterfall.

Contributions come from the model itself (:meth:`FittedModel.contributions`: LightGBM's
native TreeSHAP, or coefficient x centred value for the logistic model), so the base
value plus every contribution is exactly the model's log-odds for that patient.

Feature values are shown in the site's units: the features use canonical units
(bilirubin and creatinine in mg/dL, albumin in g/dL); where the site wrote the value
the feature came from in another accepted unit (umol/L, g/L), the value is converted
back to that unit (:func:`msc_response.units.convert`) and the canonical value is shown
beside it. Every other feature is shown in its own unit (feature spec).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

from .. import units
from ..errors import ConfigError, DataError, Problem
from ..feature_labels import feature_labels
from ..io import atomic_path
from ..plotting import new_axes
from .figures import PALETTE
from .page import Page, png_data_uri

#: Contributions drawn one by one; the rest are summed into one bar.
TOP = 12


@dataclass
class Explanation:
    """A patient's prediction taken apart.

    ``table`` has one row per model feature, largest absolute contribution first:
    ``feature``, ``value`` (the model's unit), ``unit``, ``shown`` (the value as the site
    wrote it, with the model's value beside it where converted), ``contribution``
    (log-odds).
    """

    patient_id: str
    base: float
    table: pd.DataFrame
    model: str
    simulated: bool
    #: what a reader must be told about the model (its status, simulated training data)
    warning: str | None = None
    #: the model's experiment config (plain data) and feature spec: the page's provenance
    #: and the features' labels
    config: dict | None = None
    feature_spec: list[dict] = field(default_factory=list)

    @property
    def logit(self) -> float:
        return float(self.base + self.table["contribution"].sum())

    @property
    def probability(self) -> float:
        return float(expit(self.logit))


def _fmt(v: float) -> str:
    return "missing" if not np.isfinite(v) else f"{v:.4g}"


def site_lab_units(
    labs_raw: pd.DataFrame, patient_id: str, window: tuple[int, int]
) -> dict[str, tuple[str, float]]:
    """Per known test, the unit and value of the patient's latest row in ``window`` as written.

    ``labs_raw`` is the labs table as read from the file (``patient_id``, ``day``, ``test``,
    ``value``, ``unit``), before any conversion.
    """
    lo, hi = window
    rows = labs_raw[(labs_raw["patient_id"].astype(str) == patient_id)]
    day = pd.to_numeric(rows["day"], errors="coerce")
    rows = rows[(day >= lo) & (day <= hi)].assign(_day=day)
    out = {}
    for test, part in rows.groupby(rows["test"].astype(str), sort=False, observed=True):
        if test not in units.KNOWN_TESTS:
            continue
        last = part.sort_values("_day", kind="stable").iloc[-1]
        value = pd.to_numeric(pd.Series([last["value"]]), errors="coerce").iloc[0]
        out[test] = (str(last["unit"]), float(value))
    return out


def shown_values(
    values: pd.Series, feature_spec: list[dict], written: dict[str, tuple[str, float]]
) -> pd.DataFrame:
    """``unit`` and ``shown`` of each feature: in the site's unit where the site wrote another one.

    A lab feature is converted back only when the value written in the site's unit
    converts to the feature's value (so the row is the one the feature came from);
    otherwise it is shown in the feature's unit.
    """
    spec = {f["name"]: f for f in feature_spec}
    unit_col, shown = [], []
    for name, v in values.items():
        f = spec.get(name, {})
        unit = f.get("unit") or ""
        text = "missing" if not np.isfinite(v) else f"{_fmt(v)} {unit}".strip()
        if f.get("kind") == "lab" and f.get("source") in written and np.isfinite(v):
            site_unit, site_value = written[f["source"]]
            canonical = units.CANONICAL_UNITS.get(f["source"])
            if site_unit != canonical and site_unit in units.accepted_units(f["source"]):
                back = float(units.convert(v, f["source"], canonical, site_unit))
                if np.isclose(back, site_value, rtol=1e-6, atol=1e-9):
                    text = f"{_fmt(back)} {site_unit} (model: {_fmt(v)} {unit})"
                    unit = site_unit
        shown.append(text)
        unit_col.append(unit)
    return pd.DataFrame({"unit": unit_col, "shown": shown}, index=values.index)


def explain_patient(
    model, features, patient_id: str, *, written: dict | None = None
) -> Explanation:
    """The explanation of ``patient_id`` among ``features`` (a FeatureSet) by ``model`` (a LoadedModel).

    Raises
    ------
    DataError
        The patient is not among the features (unknown, or excluded with a reason).
    """
    table = features.table
    hit = np.flatnonzero(table["patient_id"].astype(str).to_numpy() == patient_id)
    if len(hit) == 0:
        excluded = features.exclusions[features.exclusions["patient_id"].astype(str) == patient_id]
        why = (f"patient_id {patient_id!r} cannot be explained: {excluded['reason'].iloc[0]}"
               if len(excluded) else f"patient_id {patient_id!r} is not in the study")  # fmt: skip
        raise DataError([Problem("patients", None, "patient_id", why)])
    X = table.iloc[hit[:1]].reindex(columns=model.feature_columns).astype(float)
    contrib, base = model.fitted.contributions(X)
    values = X.iloc[0]
    shown = shown_values(values, model.feature_spec, written or {})
    out = pd.DataFrame({"feature": model.feature_columns, "value": values.to_numpy(),
                        "unit": shown["unit"].to_numpy(), "shown": shown["shown"].to_numpy(),
                        "contribution": contrib[0]})  # fmt: skip
    order = np.argsort(-np.abs(out["contribution"].to_numpy()), kind="stable")
    out = out.iloc[order].reset_index(drop=True)
    simulated = model.spec.trained_on_simulated_data or bool(getattr(features, "simulated", False))
    return Explanation(patient_id, float(base[0]), out, f"{model.name} v{model.version}", simulated,
                       model.warning(), model.spec.get("config"), model.feature_spec)  # fmt: skip


def waterfall_steps(expl: Explanation, top: int = TOP) -> pd.DataFrame:
    """The bars of the waterfall: ``label``, ``start``, ``end`` (log-odds), largest first, the
    remaining features summed into one bar, ending at the patient's log-odds."""
    t = expl.table
    head, rest = t.iloc[:top], t.iloc[top:]
    names = feature_labels(expl.feature_spec)
    labels = []
    for f, v, unit, shown in head[["feature", "value", "unit", "shown"]].itertuples(index=False):
        # the label has the feature's unit: a value in that unit is shown as a number only
        same_unit = f in names and shown == f"{_fmt(v)} {unit}".strip()
        labels.append(f"{names.get(f, f)} = {_fmt(v) if same_unit else shown}")
    deltas = list(head["contribution"])
    if len(rest):
        labels.append(f"{len(rest)} other features")
        deltas.append(float(rest["contribution"].sum()))
    start = expl.base + np.concatenate([[0.0], np.cumsum(deltas)[:-1]])
    return pd.DataFrame({"label": labels, "start": start, "end": start + np.asarray(deltas)})


def plot_waterfall(expl: Explanation, ax=None, *, top: int = TOP):
    """Draw the waterfall of :func:`waterfall_steps`: base value at the top, the log-odds at the bottom.

    The base value and the patient's log-odds are marked and named; each bar's number sits
    at its outer end, inside the frame, and no bar touches the frame.
    """
    steps = waterfall_steps(expl, top)
    n = len(steps)
    ax = new_axes(ax, figsize=(10, 0.42 * n + 2.2))
    y = np.arange(n)[::-1]
    up = (steps["end"] >= steps["start"]).to_numpy()
    ax.barh(y, steps["end"] - steps["start"], left=steps["start"], color=np.where(up, PALETTE[5], PALETTE[0]),
            height=0.6)  # fmt: skip
    ends = np.concatenate([steps["start"], steps["end"], [expl.base, expl.logit]])
    lo, hi = float(ends.min()), float(ends.max())
    pad = 0.22 * (hi - lo or 1.0)  # room for the numbers at the bar ends, inside the frame
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(-1.2, n + 0.1)  # room for the two marker labels
    for yi, s, rising in zip(y, steps.itertuples(), up, strict=True):
        delta = s.end - s.start
        ax.text(max(s.start, s.end) if rising else min(s.start, s.end), yi,
                f" {delta:+.3f} " , va="center", ha="left" if rising else "right", fontsize=7.5)  # fmt: skip
    ax.axvline(expl.base, color="grey", ls="--", lw=1)
    ax.axvline(expl.logit, color="black", lw=1)
    # the base value named above the first bar, the patient's log-odds below the last
    for x, yl, text, colour in ((expl.base, n - 0.45, f"base value {expl.base:.2f}", "dimgrey"),
                                (expl.logit, -0.75, f"this patient {expl.logit:.2f}", "black")):  # fmt: skip
        ax.text(x, yl, text, ha="center", va="center", fontsize=7.5, color=colour,
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": colour, "lw": 0.6})  # fmt: skip
    ax.set_yticks(y, steps["label"], fontsize=8)
    ax.set_xlabel(f"log-odds of response (base {expl.base:.3f}; this patient {expl.logit:.3f}, "
                  f"probability {expl.probability:.3f})")  # fmt: skip
    ax.set_title(
        f"Why {expl.model} predicts {expl.probability:.2f} for patient {expl.patient_id}",
        fontsize=10,
    )
    ax.grid(axis="x", alpha=0.3)
    return ax


def write_explanation(expl: Explanation, out: str | Path) -> Path:
    """Write the waterfall as ``.png``, or an HTML page with it and every contribution (atomically)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".html"):
        raise ConfigError(f"out: expected a .png or .html file, got {str(out)!r}")
    ax = plot_waterfall(expl)
    if suffix == ".png":
        png_data_uri(ax, simulated=expl.simulated)  # labels and lays out the figure
        with atomic_path(out) as tmp:
            ax.figure.savefig(tmp, format="png", dpi=110)
            tmp.chmod(0o644)
        return out
    page = Page(f"Explanation of patient {expl.patient_id}", simulated=expl.simulated,
                subtitle=f"{expl.model}: probability {expl.probability:.3f} (log-odds {expl.logit:.3f})",
                config=expl.config, feature_spec=expl.feature_spec, warning=expl.warning)  # fmt: skip
    s = page.section("Contributions")
    s.paragraph("Each bar is a feature's contribution to the log-odds of response (LightGBM: TreeSHAP; "
                "logistic regression: coefficient x centred, standardised value). The base value plus every "
                "contribution is the model's log-odds. Contributions describe the model, not causes.")  # fmt: skip
    s.figure(ax, f"waterfall of the contributions for patient {expl.patient_id}")
    s.table(expl.table[["feature", "shown", "contribution"]].rename(columns={"shown": "value (site's unit)"}),
            f"Every feature; base value {expl.base:.4f}", digits=4)  # fmt: skip
    s.note("Values are shown as the site wrote them: a lab value written in SI units (umol/L, g/L) is "
           "converted back from the model's canonical unit (mg/dL, g/dL), which is given beside it.")  # fmt: skip
    return page.write(out.parent, out.name)
