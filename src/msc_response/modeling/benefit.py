"""Benefit models for randomised data: who gains from MSC over standard care (in memory).

The PATH statement (Kent DM et al., Ann Intern Med 2020;172:35-45) names two approaches:

Risk modelling (the pre-specified primary, as PATH recommends)
    A baseline-risk model is fitted on every patient **blind to treatment** (L2-penalised
    logistic regression of the outcome on the baseline covariates, penalty by inner
    cross-validation: :class:`~msc_response.modeling.models.PenalisedLogisticCV`); its
    linear predictor ``lp`` is the risk score. The effect is then modelled on it:
    ``risk_constant``: ``logit P(y) = a + b lp + c T`` (a constant relative effect; the
    absolute benefit still varies with risk); ``risk_interaction``: ``+ d T lp`` (the
    relative effect may vary with risk).
Effect modelling (exploratory: PATH asks for strong reasons and validation)
    ``effect_penalised``: L2-penalised logistic regression on the covariates, ``T`` and
    every ``T x covariate`` interaction; ``t_learner``: one LightGBM classifier per arm;
    ``x_learner`` (Kunzel et al., PNAS 2019): the T-learner's imputed individual effects
    regressed on the covariates per arm (LightGBM) and combined with the known allocation
    share as the propensity (randomised: it is known, not estimated).

``causal_forest``: econml's generalised random forest (Athey, Tibshirani, Wager, Ann
    Stat 2019; ``econml.grf.CausalForest``, honest splitting) for the effect on the
    risk-difference scale, beside a LightGBM model of the control arm for ``p0``.

Every model predicts ``p0`` (response under standard care), ``p1`` (under the MSC
regimen) and the benefit ``p1 - p0`` (a risk difference; positive = MSC helps). These
are effects only because the data were randomised: fitting refuses data that are not
(:func:`require_randomised`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ..config import BENEFIT_MODELS, LIGHTGBM_DEFAULTS
from ..domain import slug
from ..errors import ConfigError
from .calibration import logistic_glm
from .models import PenalisedLogisticCV

#: The pre-specified primary benefit model (PATH: risk modelling first).
PRIMARY = BENEFIT_MODELS[0]
#: Feature kinds that may enter a benefit model: baseline only. Regimen features are the
#: treatment itself; on-treatment cell features (landmark, change) are outcomes of it.
BASELINE_KINDS = ("patient", "lab", "score", "cells")


@dataclass
class BenefitModel:
    """A fitted benefit model: ``predict(X)`` gives ``(p0, p1)``."""

    kind: str
    parts: dict = field(repr=False)
    columns: list[str] = field(default_factory=list)

    def predict(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Response probabilities under standard care (``p0``) and under MSC (``p1``)."""
        x = X[self.columns]
        k = self.kind
        if k.startswith("risk"):
            lp = self.parts["risk"].decision_function(x)
            b = self.parts["coef"]
            d = b[3] if k == "risk_interaction" else 0.0
            return expit(b[0] + b[1] * lp), expit(b[0] + b[1] * lp + b[2] + d * lp)
        if k == "effect_penalised":
            xs = self.parts["prep"].transform(x)
            model = self.parts["model"]
            return (predict_proba(model, _interaction_design(xs, np.zeros(len(xs)))),
                    predict_proba(model, _interaction_design(xs, np.ones(len(xs)))))  # fmt: skip
        p0 = predict_proba(self.parts["control"], x)
        if k == "causal_forest":
            tau = self.parts["forest"].predict(self.parts["prep"].transform(x)).ravel()
            return p0, np.clip(p0 + tau, 0.0, 1.0)
        p1 = predict_proba(self.parts["treated"], x)
        if k == "x_learner":
            g = self.parts["share_treated"]
            tau = g * self.parts["tau0"].predict(x) + (1 - g) * self.parts["tau1"].predict(x)
            p1 = np.clip(p0 + tau, 0.0, 1.0)
        return p0, p1

    def benefit(self, X: pd.DataFrame) -> np.ndarray:
        """Predicted benefit ``p1 - p0`` (risk difference)."""
        p0, p1 = self.predict(X)
        return p1 - p0

    def risk_score(self, X: pd.DataFrame) -> np.ndarray | None:
        """The baseline-risk linear predictor (risk models only; else None)."""
        if "risk" not in self.parts:
            return None
        return self.parts["risk"].decision_function(X[self.columns])


def predict_proba(model, X) -> np.ndarray:
    return model.predict_proba(X)[:, 1]


def _interaction_design(xs: np.ndarray, treated: np.ndarray) -> np.ndarray:
    t = np.asarray(treated, dtype=float)[:, None]
    return np.column_stack([xs, t, xs * t])


def _logistic(seed: int, y: np.ndarray) -> PenalisedLogisticCV:
    minority = int(min(np.sum(y == 1), np.sum(y == 0)))
    return PenalisedLogisticCV(inner_folds=max(2, min(3, minority)), seed=seed)


def _prep() -> Pipeline:
    return Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                     ("scale", StandardScaler())])  # fmt: skip


def _lightgbm(classifier: bool, seed: int, n: int):
    from lightgbm import LGBMClassifier, LGBMRegressor  # heavy: loaded on first use

    # leaves of at least ~2% of the arm (the tiny-data defaults overfit 500 patients)
    params = {
        **LIGHTGBM_DEFAULTS,
        "min_child_samples": max(LIGHTGBM_DEFAULTS["min_child_samples"], n // 50),
    }
    cls = LGBMClassifier if classifier else LGBMRegressor
    return cls(
        **params, random_state=seed, n_jobs=1, verbose=-1, deterministic=True, force_row_wise=True
    )


def check_inputs(X: pd.DataFrame, treated, y) -> tuple[np.ndarray, np.ndarray]:
    """Treatment and outcome as 0/1 arrays; raises ConfigError naming what is wrong."""
    t = np.asarray(treated)
    yy = np.asarray(y)
    if len(t) != len(X) or len(yy) != len(X):
        raise ConfigError(f"treated, y: expected {len(X)} values each, got {len(t)} and {len(yy)}")
    for name, v in (("treated", t), ("y", yy)):
        if not np.isin(v, (0, 1)).all():
            raise ConfigError(f"{name}: expected 0/1 values, got {sorted(set(v.tolist()))[:5]!r}")
    for arm in (0, 1):
        in_arm = yy[t == arm]
        if len(in_arm) < 4 or in_arm.min() == in_arm.max():
            raise ConfigError(
                f"treated: the {'MSC' if arm else 'control'} arm needs at least 4 patients with both "
                f"outcomes to model benefit, got {len(in_arm)} patients, {int(in_arm.sum())} responders"
            )
    return t.astype(int), yy.astype(int)


def fit_benefit_model(kind: str, X: pd.DataFrame, treated, y, seed: int = 0) -> BenefitModel:
    """Fit the benefit model ``kind`` (one of :data:`BENEFIT_MODELS`) on randomised data."""
    if kind not in BENEFIT_MODELS:
        raise ConfigError(f"benefit model: expected one of {list(BENEFIT_MODELS)}, got {kind!r}")
    t, y = check_inputs(X, treated, y)
    columns = list(X.columns)
    x = X[columns]
    if kind.startswith("risk"):
        # the risk model never sees the treatment (PATH): fitted on both arms together
        risk = Pipeline([*_prep().steps, ("model", _logistic(seed, y))]).fit(x, y)
        lp = risk.decision_function(x)
        design = [np.ones(len(y)), lp, t] + ([t * lp] if kind == "risk_interaction" else [])
        fit = logistic_glm(np.column_stack(design), y)
        if fit.problem:
            raise ConfigError(
                f"benefit model {kind!r}: the effect model on the risk score failed: {fit.problem}"
            )
        return BenefitModel(kind, {"risk": risk, "coef": fit.coef, "cov": fit.cov}, columns)
    if kind == "effect_penalised":
        prep = _prep().fit(x)
        model = _logistic(seed, y).fit(_interaction_design(prep.transform(x), t), y)
        return BenefitModel(kind, {"prep": prep, "model": model}, columns)
    if kind == "causal_forest":
        from econml.grf import CausalForest  # heavy: loaded on first use

        prep = _prep().fit(x)  # the forest takes no missing values
        forest = CausalForest(n_estimators=400, min_samples_leaf=max(5, len(y) // 50), honest=True,
                              inference=False, max_features=1.0, random_state=seed, n_jobs=1)  # fmt: skip
        forest.fit(prep.transform(x), t, y)
        control = _lightgbm(True, seed, int((t == 0).sum())).fit(x[t == 0], y[t == 0])
        return BenefitModel(kind, {"prep": prep, "forest": forest, "control": control}, columns)
    arms = {}
    for arm, name in ((0, "control"), (1, "treated")):
        rows = t == arm
        arms[name] = _lightgbm(True, seed, int(rows.sum())).fit(x[rows], y[rows])
    parts = dict(arms)
    if kind == "x_learner":
        c, tr = t == 0, t == 1
        d1 = y[tr] - predict_proba(arms["control"], x[tr])  # treated: observed - imputed control
        d0 = predict_proba(arms["treated"], x[c]) - y[c]  # control: imputed treated - observed
        parts["tau1"] = _lightgbm(False, seed, int(tr.sum())).fit(x[tr], d1)
        parts["tau0"] = _lightgbm(False, seed, int(c.sum())).fit(x[c], d0)
        parts["share_treated"] = float(tr.mean())  # the propensity, known by design
    return BenefitModel(kind, parts, columns)


def require_randomised(randomised: bool | None, source: str) -> None:
    """Stop when the data are not known to be randomised: benefit needs a control arm
    assigned by chance, else a difference between arms mixes the cells' effect with
    who was chosen for them (and a single-arm trial has no control at all)."""
    if randomised is not True:
        raise ConfigError(
            f"benefit: {source} does not say the study was randomised (randomised: {randomised!r}). "
            "Benefit (how much more likely a patient is to improve with MSC than without) can only be "
            "estimated from a randomised comparison with a control arm; a single-arm trial predicts "
            "improvement after MSC, which mixes the cells' effect with the natural course of the disease "
            "and regression to the mean. Remove the 'benefit' section, or set 'benefit.randomised: true' "
            "only if the patients were randomised between the arms."
        )


#: The baseline MX1+ feature whose interaction with treatment is tested.
MX1_FEATURE = "baseline_mx1_monocytes_fraction"


@dataclass
class BenefitData:
    """What a benefit model needs from a randomised study, row-aligned.

    ``treated`` is 1 for every patient not in the control arm; ``arm`` keeps each patient's
    own arm (the treatment column as written), so that a study that randomised several
    regimens can be compared one regimen at a time (:meth:`versus_control`).
    """

    patient_id: np.ndarray
    X: pd.DataFrame
    treated: np.ndarray
    y: np.ndarray | None
    mx1: np.ndarray | None
    arm: np.ndarray | None = None

    @property
    def regimens(self) -> list[str]:
        """The treated arms' names, sorted (one for a two-arm trial)."""
        if self.arm is None:
            return []
        return sorted({str(a) for a in self.arm[self.treated == 1]})

    def comparisons(self) -> list[tuple[str | None, BenefitData]]:
        """What is compared: ``[(None, self)]`` for a two-arm trial, else each regimen
        against the control arm (:meth:`versus_control`; regimens whose column names would
        clash refused by :func:`check_regimens`)."""
        regimens = self.regimens
        if len(regimens) <= 1:
            return [(None, self)]
        check_regimens(regimens)
        return [(r, self.versus_control(r)) for r in regimens]

    def versus_control(self, regimen: str) -> BenefitData:
        """The control arm and the patients randomised to ``regimen``: a two-arm comparison
        (concurrent controls, the same randomisation)."""
        rows = (self.treated == 0) | (self.arm == regimen)
        return BenefitData(
            self.patient_id[rows], self.X[rows].reset_index(drop=True), self.treated[rows],
            None if self.y is None else self.y[rows], None if self.mx1 is None else self.mx1[rows],
            self.arm[rows],
        )  # fmt: skip


def benefit_data(feature_set, patients: pd.DataFrame, treatment_column: str, control_value: str,
                 *, labels: bool = True) -> BenefitData:  # fmt: skip
    """Baseline covariates, treatment (1 = not ``control_value``) and outcome of each patient
    of ``feature_set`` (from :func:`~msc_response.features.build_features`).

    Only baseline features enter (:data:`BASELINE_KINDS`); raises ConfigError when the
    treatment column is missing or names no control patient.
    """
    if treatment_column not in patients.columns:
        raise ConfigError(f"benefit.treatment_column: {treatment_column!r} is not a column of the patients "
                          f"table (columns: {sorted(patients.columns)})")  # fmt: skip
    empty = patients[treatment_column].isna()
    if empty.any():  # else "nan" would be a regimen of its own, or counted as treated
        raise ConfigError(f"benefit.treatment_column: {treatment_column!r} is empty for {int(empty.sum())} "
                          "patient(s); every randomised patient needs an arm")  # fmt: skip
    arm = patients.set_index(patients["patient_id"].astype(str))[treatment_column].astype(str)
    ids = feature_set.table["patient_id"].astype(str).to_numpy()
    values = arm.reindex(ids).to_numpy()
    if not (values == str(control_value)).any():
        seen = sorted(pd.unique(arm))[:10]
        raise ConfigError(f"benefit.control_value: {control_value!r} names no patient in column "
                          f"{treatment_column!r} (values: {seen})")  # fmt: skip
    columns = [s["name"] for s in feature_set.feature_spec if s["kind"] in BASELINE_KINDS]
    X = feature_set.table[columns].reset_index(drop=True)
    y = feature_set.table["response"].to_numpy(dtype=int) if labels else None
    mx1 = X[MX1_FEATURE].to_numpy(dtype=float) if MX1_FEATURE in X.columns else None
    values = np.asarray(values, dtype=object)
    return BenefitData(ids, X, (values != str(control_value)).astype(int), y, mx1, values)


def refits(X: pd.DataFrame, t: np.ndarray, y: np.ndarray, *, kind: str, seed: int,
           n_boot: int) -> list[BenefitModel]:  # fmt: skip
    """The benefit model refitted on ``n_boot`` bootstrap samples drawn within each arm (a
    sample without both outcomes in an arm is skipped)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(25,)))
    models = []
    arms = [np.flatnonzero(t == a) for a in (0, 1)]
    for b in range(n_boot):
        rows = np.concatenate([rng.choice(a, len(a)) for a in arms])
        try:
            models.append(fit_benefit_model(kind, X.iloc[rows], t[rows], y[rows], seed + b + 1))
        except ConfigError:  # a resample without both outcomes in an arm
            continue
    return models


def benefit_columns(regimen: str | None = None) -> tuple[str, str, str]:
    """The columns of one comparison: ``p0``, ``p1`` and the benefit (its interval adds
    ``_low``/``_high``). A two-arm trial: ``p_response_standard_care``, ``p_response_msc``,
    ``predicted_benefit``. A trial that randomised several regimens: one comparison per
    regimen against the shared control arm, each named by the regimen's slug
    (``p_response_standard_care_vs_msc_2_0e8_x3``, ``p_response_msc_2_0e8_x3``,
    ``predicted_benefit_msc_2_0e8_x3``), the slug of ``probability_under_*`` and of the
    simulator's ``true_benefit__*``."""
    if regimen is None:
        return "p_response_standard_care", "p_response_msc", "predicted_benefit"
    s = slug(regimen)
    return f"p_response_standard_care_vs_{s}", f"p_response_{s}", f"predicted_benefit_{s}"


def benefit_table(
    p0, p1, draws: list[np.ndarray], n_boot: int, regimen: str | None = None
) -> pd.DataFrame:
    """``p0``, ``p1``, the predicted benefit and its 95% percentile interval over the refits'
    benefits ``draws`` (NaN when fewer than ``max(20, n_boot / 2)`` refits succeeded), named
    by :func:`benefit_columns` of ``regimen``."""
    c0, c1, cb = benefit_columns(regimen)
    out = pd.DataFrame({c0: p0, c1: p1, cb: p1 - p0})
    if len(draws) >= max(20, n_boot // 2):
        out[f"{cb}_low"], out[f"{cb}_high"] = np.quantile(np.vstack(draws), [0.025, 0.975], axis=0)
    else:
        out[f"{cb}_low"] = out[f"{cb}_high"] = np.nan
    return out


def check_regimens(regimens: list[str]) -> None:
    """Several regimens need distinct column names; ConfigError naming the two that clash."""
    seen: dict[str, str] = {}
    for r in regimens:
        if slug(r) in seen:
            raise ConfigError(f"benefit.treatment_column: regimens {seen[slug(r)]!r} and {r!r} give the same "
                              f"column name {benefit_columns(r)[2]!r}; name each regimen distinctly")  # fmt: skip
        seen[slug(r)] = r


def predict_benefit(X: pd.DataFrame, treated, y, X_new: pd.DataFrame, *, kind: str = PRIMARY, seed: int = 0,
                    n_boot: int = 100, regimen: str | None = None) -> pd.DataFrame:  # fmt: skip
    """Predicted benefit of new patients from a model fitted on randomised ``X``, with a 95%
    percentile interval from ``n_boot`` refits on bootstrap samples drawn within each arm.

    The interval is for the model's prediction (refitting variability), not for the
    patient's own benefit, which no model of baseline covariates observes.
    """
    t, yy = check_inputs(X, treated, y)
    p0, p1 = fit_benefit_model(kind, X, t, yy, seed).predict(X_new)
    draws = [m.benefit(X_new) for m in refits(X, t, yy, kind=kind, seed=seed, n_boot=n_boot)]
    return benefit_table(p0, p1, draws, n_boot, regimen)


def predict_benefit_by_regimen(data: BenefitData, X_new: pd.DataFrame, *, kind: str = PRIMARY,
                               seed: int = 0, n_boot: int = 100) -> pd.DataFrame:  # fmt: skip
    """:func:`predict_benefit` of each randomised regimen against the control arm (fitted on
    the control arm and that regimen's patients), side by side; a two-arm trial gives the
    two-arm columns (:func:`benefit_columns`)."""
    parts = [predict_benefit(d.X, d.treated, d.y, X_new, kind=kind, seed=seed, n_boot=n_boot, regimen=r)
             for r, d in data.comparisons()]  # fmt: skip
    return parts[0] if len(parts) == 1 else pd.concat(parts, axis=1)


# ----------------------------------------------------------------------------------------
# a fitted risk model as plain numbers (JSON, no pickle), for the scoring job

#: The ``format`` of an exported benefit model (``fit-benefit``'s JSON).
EXPORT_FORMAT = "msc-response benefit model 1"
#: The models that export: a risk model is a handful of numbers; the others are not.
EXPORTABLE = ("risk_constant", "risk_interaction")


def _risk_numbers(model: BenefitModel) -> dict:
    """``lp = offset + sum_j weight_j x_j`` (x_j missing: ``median_j``) and the effect
    coefficients on ``lp``: the risk pipeline (median imputation, standardisation,
    logistic regression) folded into one linear predictor."""
    pipe = model.parts["risk"]
    medians = pipe.named_steps["impute"].statistics_
    scaler = pipe.named_steps["scale"]
    logistic = pipe.named_steps["model"].model_
    w = logistic.coef_[0] / scaler.scale_
    return {"median": medians.tolist(), "weight": w.tolist(),
            "offset": float(logistic.intercept_[0] - w @ scaler.mean_),
            "effect": [float(c) for c in model.parts["coef"]]}  # fmt: skip


def export_benefit_model(X: pd.DataFrame, treated, y, *, kind: str = PRIMARY, seed: int = 0,
                         n_boot: int = 100) -> dict:  # fmt: skip
    """The risk model ``kind`` fitted on randomised data and its ``n_boot`` within-arm refits,
    as JSON-safe numbers (:func:`apply_exported` predicts from them)."""
    if kind not in EXPORTABLE:
        raise ConfigError(f"benefit.primary: only {list(EXPORTABLE)} can be saved for the scoring job "
                          f"(plain numbers, no pickle), got {kind!r}; use score-benefit instead")  # fmt: skip
    t, yy = check_inputs(X, treated, y)
    model = fit_benefit_model(kind, X, t, yy, seed)
    return {"format": EXPORT_FORMAT, "kind": kind, "columns": list(X.columns), "n_boot": n_boot,
            "model": _risk_numbers(model),
            "refits": [_risk_numbers(m) for m in refits(X, t, yy, kind=kind, seed=seed, n_boot=n_boot)]}  # fmt: skip


def export_by_regimen(
    data: BenefitData, *, kind: str = PRIMARY, seed: int = 0, n_boot: int = 100
) -> dict:
    """:func:`export_benefit_model` of a randomised study: the two-arm document, or with
    several regimens one model and its refits per regimen against the control arm
    (``regimens``: name, patients, model, refits), all on the same baseline columns."""
    pairs = data.comparisons()
    if pairs[0][0] is None:
        return export_benefit_model(
            data.X, data.treated, data.y, kind=kind, seed=seed, n_boot=n_boot
        )
    doc = None
    per_regimen = []
    for r, d in pairs:
        doc = export_benefit_model(d.X, d.treated, d.y, kind=kind, seed=seed, n_boot=n_boot)
        per_regimen.append({"name": r, "n_patients": int(len(d.y)), "n_treated": int(d.treated.sum()),
                            "model": doc.pop("model"), "refits": doc.pop("refits")})  # fmt: skip
    return {**doc, "regimens": per_regimen}


def comparisons(doc: dict) -> list[tuple[str | None, dict, list[dict]]]:
    """``(regimen, model, refits)`` of each comparison in an exported benefit model (regimen
    None: the two-arm document)."""
    if "regimens" in doc:
        return [(c["name"], c["model"], c["refits"]) for c in doc["regimens"]]
    return [(None, doc["model"], doc["refits"])]


def _apply_numbers(
    numbers: dict, x: np.ndarray, interaction: bool
) -> tuple[np.ndarray, np.ndarray]:
    x = np.where(np.isnan(x), np.asarray(numbers["median"]), x)
    lp = numbers["offset"] + x @ np.asarray(numbers["weight"])
    b = numbers["effect"]
    p0 = expit(b[0] + b[1] * lp)
    return p0, expit(b[0] + b[1] * lp + b[2] + (b[3] * lp if interaction else 0.0))


def apply_exported(doc: dict, X: pd.DataFrame) -> pd.DataFrame:
    """:func:`benefit_table` of the patients ``X`` from an exported benefit model; raises
    ConfigError when ``X`` lacks a column the model uses."""
    missing = [c for c in doc["columns"] if c not in X.columns]
    if missing:
        raise ConfigError(
            f"benefit model: the scored patients lack baseline features it uses: {missing}"
        )
    x = X[doc["columns"]].to_numpy(dtype=float)
    interaction = doc["kind"] == "risk_interaction"
    parts = []
    for regimen, numbers, refit_numbers in comparisons(doc):
        p0, p1 = _apply_numbers(numbers, x, interaction)
        draws = []
        for refit in refit_numbers:
            q0, q1 = _apply_numbers(refit, x, interaction)
            draws.append(q1 - q0)
        parts.append(benefit_table(p0, p1, draws, doc["n_boot"], regimen))
    return pd.concat(parts, axis=1)


def _several_ok(regimens) -> bool:
    return (
        isinstance(regimens, list)
        and len(regimens) > 1
        and all(
            isinstance(c, dict) and all(k in c for k in ("name", "model", "refits"))
            for c in regimens
        )
    )


def check_exported(doc, source: str) -> dict:
    """``doc`` if it is an exported benefit model; else ConfigError naming ``source``."""
    ok = (isinstance(doc, dict) and doc.get("format") == EXPORT_FORMAT and doc.get("kind") in EXPORTABLE
          and all(k in doc for k in ("columns", "n_boot", "provenance"))
          and (all(k in doc for k in ("model", "refits")) or _several_ok(doc.get("regimens"))))  # fmt: skip
    if not ok:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ConfigError(f"{source}: not a benefit model written by 'msc-response fit-benefit' "
                          f"(format {EXPORT_FORMAT!r} expected, got {found!r})")  # fmt: skip
    return doc


def with_predicted_benefit(table: pd.DataFrame, features: pd.DataFrame, doc: dict) -> pd.DataFrame:
    """``table`` (scored patients, ``patient_id`` column) with the exported benefit model's
    columns (:func:`apply_exported` of each patient's row of ``features``) appended."""
    ids = features["patient_id"].astype(str).to_numpy()
    benefit = apply_exported(doc, features).set_axis(ids)
    return pd.concat(
        [table.reset_index(drop=True),
         benefit.loc[table["patient_id"].astype(str).to_numpy()].reset_index(drop=True)], axis=1,
    )  # fmt: skip
