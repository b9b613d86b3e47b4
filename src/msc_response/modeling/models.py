"""Candidate models and baselines, each a scikit-learn estimator on a named set of features.

Candidates
    ``lightgbm``: gradient-boosted trees configured for tiny data (shallow trees, few
    leaves, small leaves allowed; the defaults cannot split a few dozen patients).
    ``logistic_l2``: L2-penalised logistic regression on standardised features, its
    penalty chosen by inner cross-validation (so outer validation around it is nested).
    ``logistic_rcs`` (the default primary): the same penalised logistic regression on
    restricted cubic splines of the continuous features, skewed labs logged
    (:mod:`msc_response.modeling.splines`: the field's default, and why), with the linear
    term of the endpoint's own baseline score left unpenalised, so that it contains the
    baseline-score model (:func:`make_estimator` says why).
Baselines
    ``baseline_score``: logistic regression on the endpoint's baseline score alone.
    ``baseline_regimen``: logistic regression on the dosing regimen alone.

Columns that carry no information of their own (constant, or an exact affine copy of an
earlier column, such as ``interval_days`` = 3.5 x (``n_infusions`` - 1) in the trial) are
screened out before any model sees them (:func:`screen_columns`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from numpy.linalg import LinAlgError
from scipy.linalg import cho_factor, cho_solve
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ..config import ExperimentConfig
from ..domain import REGIMEN_FEATURES
from .splines import SplineExpansion

#: Inverse penalties searched by the inner cross-validation of ``logistic_l2`` and ``logistic_rcs``.
C_GRID = np.logspace(-3, 1, 9)

#: An unpenalised column is multiplied by this after standardisation, which divides its share
#: of the L2 penalty by its square (1e-6: nothing, at any ``C`` of :data:`C_GRID`), so the
#: fits stay scikit-learn's ``LogisticRegression``; its coefficient is scaled back after.
UNPENALISED_SCALE = 1e3

#: ``logistic_rcs`` is fitted as ``logistic_rcs`` only when the smaller outcome class has at
#: least this many patients; below, as ``logistic_l2`` (:func:`flexible`).
FLEXIBLE_MIN_MINORITY = 15


@dataclass(frozen=True)
class ModelSpec:
    """A model to validate: its name, kind, role and input columns."""

    name: str
    kind: str  # "lightgbm" or "logistic"
    role: str  # "candidate" or "baseline"
    features: tuple[str, ...]


def endpoint_baseline_feature(config: ExperimentConfig) -> str:
    """The feature holding the endpoint's own baseline value."""
    return f"baseline_{config.endpoint.score}"


def screen_columns(X: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    """Columns worth modelling, and each dropped column with the reason.

    Dropped: a column with at most one distinct value (missing counts as a value), and a
    column that is an exact affine copy of an earlier kept column (same missing rows,
    ``x = a + b * other`` with ``b != 0``): it adds no information to any model here and
    would count twice as a candidate parameter.
    """
    kept: list[str] = []
    dropped: dict[str, str] = {}
    for col in X.columns:
        x = X[col].to_numpy(dtype=float)
        if pd.Series(x).nunique(dropna=False) <= 1:
            value = float(x[0]) if len(x) else None
            dropped[col] = (
                "missing in every patient"
                if value is not None and np.isnan(value)
                else f"constant ({value!r} in every patient)"
            )
            continue
        copy_of = next((k for k in kept if _affine_copy(x, X[k].to_numpy(dtype=float))), None)
        if copy_of is not None:
            dropped[col] = f"duplicate of {copy_of!r} (an exact linear function of it)"
            continue
        kept.append(col)
    return kept, dropped


def _affine_copy(x: np.ndarray, other: np.ndarray) -> bool:
    missing = np.isnan(x)
    if not np.array_equal(missing, np.isnan(other)):
        return False
    x, other = x[~missing], other[~missing]
    if np.ptp(other) == 0 or np.ptp(x) == 0:
        return False
    b, a = np.polyfit(other, x, 1)
    return bool(np.allclose(x, a + b * other, rtol=1e-9, atol=1e-9 * np.abs(x).max()))


def model_specs(config: ExperimentConfig, feature_columns: list[str]) -> list[ModelSpec]:
    """Candidates from the config, then the baselines the data allow."""
    specs = [
        ModelSpec(
            c, "lightgbm" if c == "lightgbm" else "logistic", "candidate", tuple(feature_columns)
        )
        for c in config.model.candidates
    ]
    score_feature = endpoint_baseline_feature(config)
    if score_feature in feature_columns:
        specs.append(ModelSpec("baseline_score", "logistic", "baseline", (score_feature,)))
    regimen = tuple(f for f in REGIMEN_FEATURES if f in feature_columns)
    if regimen:
        specs.append(ModelSpec("baseline_regimen", "logistic", "baseline", regimen))
    return specs


def make_estimator(spec: ModelSpec, config: ExperimentConfig, seed: int, n_minority: int):
    """A fresh, unfitted estimator for ``spec`` (every random draw seeded by ``seed``)."""
    if spec.kind == "lightgbm":
        from lightgbm import LGBMClassifier

        return LGBMClassifier(
            **config.model.lightgbm,
            random_state=seed,
            n_jobs=1,
            verbose=-1,
            deterministic=True,
            force_row_wise=True,
        )
    impute = SimpleImputer(strategy="median", keep_empty_features=True)
    if spec.role == "candidate":
        unpenalised = unpenalised_columns(spec, config) if flexible(spec, n_minority) else ()
        lr = PenalisedLogisticCV(
            inner_folds=max(2, min(3, n_minority)), seed=seed, unpenalised=unpenalised
        )
    else:
        lr = LogisticRegression(C=1.0, solver="newton-cholesky", max_iter=1000)
    steps = [("impute", impute), ("scale", StandardScaler()), ("model", lr)]
    if flexible(spec, n_minority):
        steps.insert(1, ("expand", SplineExpansion(spec.features)))
    return Pipeline(steps)


def flexible(spec: ModelSpec, n_minority: int) -> bool:
    """``spec`` is ``logistic_rcs`` and the cohort can carry its extra parameters.

    Harrell's limit (*Regression Modeling Strategies*, 2nd ed., section 4.4): a cohort whose
    smaller outcome class has ``m`` patients supports about ``m / 15`` candidate parameters
    estimated without shrinkage. ``logistic_rcs`` spends parameters beyond a penalised
    linear model - its unpenalised baseline value (one) and its spline terms - so below
    ``m = 15`` (:data:`FLEXIBLE_MIN_MINORITY`: not even that one) it is fitted as
    ``logistic_l2`` (raw features, linear, every term penalised). The limit is Harrell's
    published constant, fixed before the benchmark below was run on it. Why it is needed:
    at the default 33-patient trial (m about 12) ``logistic_rcs`` predicted fresh patients
    worse than ``logistic_l2`` (-0.048 AUROC) and its .632+ AUROC ran optimistic (its
    out-of-bag AUROC was unbiased, so the .632+ share of the apparent AUROC only added
    optimism); docs/default-model.md gives the measurements. ``n_minority`` is the whole
    cohort's, so every resample of one cohort fits the same form.
    """
    return spec.name == "logistic_rcs" and n_minority >= FLEXIBLE_MIN_MINORITY


def unpenalised_columns(spec: ModelSpec, config: ExperimentConfig) -> tuple[int, ...]:
    """Columns of ``spec``'s design matrix left out of the penalty: ``logistic_rcs`` only.

    ``logistic_rcs`` does not penalise the linear term of the endpoint's own baseline value
    (its spline terms are penalised with the rest). The rule is fixed by the design, not by
    any data: the label is a change from that value, which therefore predicts it in every
    study (regression to the mean, and the floor and ceiling of the score), and the
    baseline-score model - logistic regression on that value alone - is the comparator the
    promotion gate must beat. One shared penalty shrinks the strongest known predictor as
    hard as every noise column; left unpenalised, the model at its largest penalty is the
    baseline-score model (on the log scale for a skewed lab), and inner cross-validation
    adds the other features only as far as they predict held-out patients. (``rms::lrm``
    likewise takes separate penalties by kind of term, ``penalty=list(simple=,
    nonlinear=, ...)``.) The spline expansion puts every feature's linear term first, in
    feature order, so the position is known before the knots are.
    """
    anchor = endpoint_baseline_feature(config)
    if spec.name != "logistic_rcs" or anchor not in spec.features:
        return ()
    return (spec.features.index(anchor),)


def storable(estimator):
    """The fitted estimator as plain scikit-learn/LightGBM objects (what is saved and served).

    A :class:`PenalisedLogisticCV` step is replaced by the ``LogisticRegression`` it refit
    with the chosen penalty, so the stored pipeline holds scikit-learn types only.
    """
    if isinstance(estimator, Pipeline) and isinstance(estimator[-1], PenalisedLogisticCV):
        return Pipeline([*estimator.steps[:-1], ("model", estimator[-1].model_)])
    return estimator


def predict_proba(estimator, X) -> np.ndarray:
    """Probability of response (class 1)."""
    return estimator.predict_proba(X)[:, 1]


class PenalisedLogisticCV(ClassifierMixin, BaseEstimator):
    """L2-penalised logistic regression whose penalty is chosen by inner cross-validation.

    The same model as scikit-learn's ``LogisticRegressionCV(Cs=C_GRID, scoring="neg_log_loss")``
    (objective ``C * sum(log loss) + ||w||^2 / 2``, intercept unpenalised; the ``C`` with the
    lowest mean held-out log loss over stratified inner folds; refit on all rows), but the
    inner fits are a few Newton steps in NumPy: at 30 patients scikit-learn's per-call
    checks cost 20 times the arithmetic, and validation refits this model thousands of
    times. The final fit with the chosen ``C`` is scikit-learn's ``LogisticRegression``.

    Columns in ``unpenalised`` (positions) are multiplied by :data:`UNPENALISED_SCALE` in
    every fit, inner and final, which takes them out of the penalty; the final model's
    coefficients are scaled back, so it predicts from the columns as given.

    After ``fit``: ``C_`` (the chosen penalty), ``cv_loss_`` (the held-out mean log loss at
    each ``C`` of :data:`C_GRID`, summed over the inner folds: what ``C_`` minimises) and
    ``model_``.
    """

    def __init__(self, inner_folds: int = 3, seed: int = 0, unpenalised: tuple[int, ...] = ()):
        self.inner_folds = inner_folds
        self.seed = seed
        self.unpenalised = unpenalised

    def fit(self, X, y):
        weight = np.ones(np.shape(X)[1])
        weight[list(self.unpenalised)] = UNPENALISED_SCALE
        X = np.asarray(X, dtype=float) * weight
        y = np.asarray(y, dtype=int)
        # folds from the rows of this fit, not the whole cohort's: a bootstrap resample or an
        # outer fold can hold a single member of the smaller class (a traceback on a cohort of
        # 5, found on a public Synthea extract); with no class to hold out, no inner split can
        # choose the penalty, and the strongest one is taken (the most conservative choice)
        n_splits = min(self.inner_folds, int(np.bincount(y, minlength=2).min()))
        loss = np.zeros(len(C_GRID))
        splits = ()
        if n_splits < 2:
            loss[1:] = np.inf
        else:
            inner = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=self.seed)
            splits = inner.split(X, y)
        for train, test in splits:
            loss += _held_out_losses(X, y, train, test)
        self.cv_loss_ = loss
        self.C_ = float(C_GRID[int(np.argmin(loss))])
        self.model_ = LogisticRegression(C=self.C_, solver="newton-cholesky", max_iter=1000)
        self.model_.fit(X, y)
        self.model_.coef_ = self.model_.coef_ * weight  # the same predictions from unscaled X
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(np.asarray(X, dtype=float))

    def decision_function(self, X):
        return self.model_.decision_function(np.asarray(X, dtype=float))


#: From this many rows of an inner fit on, a Newton step may reuse the Hessian of an earlier
#: point (see :func:`_ridge_logistic`); below it every step computes its own, which costs less
#: than the extra steps would (at trial size the steps' fixed costs dominate).
REUSE_HESSIAN_ROWS = 2000

#: A reused Hessian is kept while each step cuts the objective by at most this fraction of the
#: previous step's cut (fast linear convergence); otherwise the next step gets a fresh one.
REUSE_RATE = 0.05


def _held_out_losses(X, y, train, test) -> np.ndarray:
    """Mean held-out log loss of the fit on rows ``train`` at each ``C`` of :data:`C_GRID`, on rows
    ``test`` (small to large ``C``, each fit starting from the last, with the Hessian carried
    along the path)."""
    design = _with_intercept(X, train)  # built once per fold, not once per C
    held_out = _with_intercept(X, test)
    y_train, y_test = np.asarray(y[train], dtype=float), np.asarray(y[test], dtype=float)
    work = np.empty_like(design)  # the Hessians' scratch, one for the whole path
    coef, gram = np.zeros(design.shape[1]), None
    losses = np.empty(len(C_GRID))
    for j, C in enumerate(C_GRID):
        coef, gram = _ridge_logistic(design, y_train, C, coef, gram, work)
        eta = held_out @ coef
        losses[j] = _log_loss_sum(eta, y_test) / len(y_test)
    return losses


def _with_intercept(X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``[1, X[rows]]`` (a column of ones first) written into one new array: the numbers of
    ``np.column_stack([np.ones(len(rows)), X[rows]])`` without its two copies of the rows."""
    out = np.empty((len(rows), X.shape[1] + 1))
    out[:, 0] = 1.0
    np.take(X, rows, axis=0, out=out[:, 1:], mode="clip")  # "clip": no buffering; rows are valid
    return out


def _log_loss_sum(eta: np.ndarray, y: np.ndarray) -> float:
    """``-sum(y log p + (1 - y) log(1 - p))`` for ``p = expit(eta)``: ``log(1 + e^eta) - y eta``."""
    return float(np.sum(np.logaddexp(0.0, eta) - y * eta))


def _gram(design: np.ndarray, eta: np.ndarray, work: np.ndarray) -> np.ndarray:
    """``design' W design`` with ``W = p (1 - p)``, as ``Z' Z`` for ``Z = sqrt(W) design`` (one
    symmetric product, BLAS ``syrk``: a third less time than ``design' (W design)``). ``Z`` is
    written into ``work`` (an array shaped as ``design``): a fresh array of that size per
    Hessian cost more than the product itself at 100,000 patients (the page faults of a new
    mapping: the weighting of a 53,000 x 73 design took 58 ms into a fresh array, 4 ms into
    scratch, against 8.5 ms for the product; one measurement)."""
    p = expit(eta)
    z = np.multiply(design, np.sqrt(p * (1 - p))[:, None], out=work)
    return z.T @ z


def _ridge_logistic(
    design: np.ndarray,
    y: np.ndarray,
    C: float,
    start: np.ndarray,
    gram: np.ndarray | None = None,
    work: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise ``C * sum(log loss) + ||w||^2 / 2`` by Newton steps with step halving.

    ``design`` holds a column of ones first (the intercept, unpenalised). Returns
    ``[intercept, w...]`` and the last ``design' W design`` computed, which the next fit
    along the penalty path may start from (``gram``); ``work``, an array shaped as ``design``,
    is the scratch of computing it (:func:`_gram`; made here when not given). The penalty makes the problem
    strictly convex, so the minimum exists even under separation.

    The fit ends as a Newton fit does: when a step computed from the Hessian *at the point
    it starts from* lowers the objective by less than ``1e-10 (1 + |objective|)`` (a
    Newton step that small leaves an error of its square). Before that, on a design of
    :data:`REUSE_HESSIAN_ROWS` rows or more, a step may reuse the last Hessian (the
    gradient is always exact, so every step still heads for the same minimum) while the
    objective's cuts shrink at least :data:`REUSE_RATE` fold per step: at 100,000
    patients computing the Hessian is most of a step's cost and consecutive points of the
    penalty path differ little (measured: 36 Hessians instead of ~100 per penalty search,
    held-out losses equal to 1.4e-11).
    """
    ridge = np.full(design.shape[1], 1.0 / C)
    ridge[0] = 0.0
    jitter = 1e-10  # the same at every step

    def objective(b, eta):
        return _log_loss_sum(eta, y) + 0.5 * np.sum(ridge * b * b)

    reuse = len(design) >= REUSE_HESSIAN_ROWS

    def factor(g):  # a solver for the Hessian: factorised once where it is reused
        matrix = g + np.diag(ridge + jitter)
        if reuse:
            try:
                return partial(cho_solve, cho_factor(matrix, check_finite=False))
            except LinAlgError:  # not numerically positive definite (near separation)
                pass
        return partial(np.linalg.solve, matrix)

    work = np.empty_like(design) if work is None else work
    beta = start.copy()
    eta = design @ beta
    value = objective(beta, eta)
    fresh = gram is None or not reuse
    if fresh:
        gram = _gram(design, eta, work)
    hessian, cut = factor(gram), np.inf
    for _ in range(50 if not reuse else 200):
        step = hessian(design.T @ (expit(eta) - y) + ridge * beta)
        t = 1.0
        while True:
            trial = beta - t * step
            eta_trial = design @ trial
            new = objective(trial, eta_trial)
            if new <= value + 1e-12 or t < 1e-8:
                break
            t /= 2
        last_cut, small = value - new, value - new < 1e-10 * (1 + abs(new))
        beta, eta, value = trial, eta_trial, new
        if small and fresh:
            break
        fresh = not reuse or small or t < 1.0 or last_cut > REUSE_RATE * cut
        if fresh:
            gram = _gram(design, eta, work)
            hessian = factor(gram)
        cut = last_cut
    return beta, gram
