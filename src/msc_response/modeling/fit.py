"""``fit``: validate every model of an experiment honestly and refit the primary one, in memory.

No MLflow and no files: :func:`fit` returns a :class:`TrainingResult` holding the
validation of every candidate and baseline, the refit primary model, the columns dropped
before modelling, the comparison of the primary model with the best baseline, and plot
methods in the style of scikit-learn's Display objects. Logging and registering it is
:func:`msc_response.registry.registration.log_and_register`.

Steps
    1. Check the outcome (both classes, at least 2 patients in the smaller one).
    2. Screen the feature columns (constant or duplicate columns are dropped and recorded).
    3. Riley's minimum sample size for the kept columns: a shortfall is a warning.
    4. Validate every model on the same cross-validation splits and the same bootstrap
       samples (:mod:`.validation`).
    5. Compare the primary model with the best baseline (:mod:`.gate`) and refit it on
       every patient.

The primary model is named in the config (``model.primary``) before any data are seen;
the other candidates are validated and reported as exploratory, never chosen on these
data (choosing the best of several on the same folds is optimistic).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import plotting, processes, progress
from ..confidence import Z
from ..config import ExperimentConfig
from ..errors import DataError, MscResponseWarning, Problem
from . import curves, explain, gate, metrics, validation
from .fitted import FittedModel
from .models import (
    FLEXIBLE_MIN_MINORITY,
    ModelSpec,
    flexible,
    make_estimator,
    model_specs,
    screen_columns,
    storable,
)
from .summary import training_summary


@dataclass(frozen=True)
class ValidationPlan:
    """How much validation one training does: the same for every model of it."""

    folds: int
    repeats: int
    n_boot: int
    seed: int
    thresholds: tuple[float, ...]
    n_jobs: int = 1

    @classmethod
    def for_data(cls, config: ExperimentConfig, n: int) -> ValidationPlan:
        """Full effort at trial size, lighter when n is large (each refit then costs more)."""
        m = config.model
        repeats = m.repeats or (10 if n < 500 else 2 if n < 5000 else 1)
        n_boot = m.bootstrap or (200 if n < 500 else 100 if n < 5000 else 50)
        return cls(m.folds, repeats, n_boot, m.seed, tuple(m.net_benefit_thresholds), m.n_jobs)

    @property
    def splits(self) -> validation.Splits:
        return validation.Splits(self.folds, self.repeats, self.seed)


@dataclass
class ModelValidation:
    """Everything measured about one model (see :mod:`.validation` for the methods)."""

    spec: ModelSpec
    oof: np.ndarray  # repeats x n, cross-validated probabilities
    cv: validation.Estimate
    bootstrap: validation.Bootstrap

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def roc_auc(self) -> float:
        """The validated AUROC (.632+)."""
        return self.bootstrap.roc_auc_632plus

    @property
    def optimism(self) -> validation.Optimism | None:
        """Harrell's optimism correction, None where it is not applicable."""
        return self.bootstrap.optimism

    def estimates(self) -> dict[str, float]:
        """Every validated metric: the AUROC by .632+, the others cross-validated."""
        return {**self.cv.values, metrics.ROC_AUC: self.roc_auc}

    def intervals(self) -> dict[str, tuple[float, float]]:
        """95% interval of every validated metric, inside the values the metric can take.

        +/- 1.96 x the SD out of bag on the scale that maps the metric's range
        (:data:`.metrics.RANGES`) onto the real line (logit for the AUROC, Brier, ICI,
        E50 and E90; log(1 - x) for the scaled Brier; as is for the unbounded ones): the
        bounds never leave the range and are never clipped; an estimate on the end of its
        range has none (NaN).
        """
        out = {}
        for name, value in self.estimates().items():
            se = (
                self.bootstrap.roc_auc_se
                if name == metrics.ROC_AUC
                else self.bootstrap.oob_sd(name)
            )
            out[name] = metrics.wald_within(value, se, metrics.RANGES.get(name, (-np.inf, np.inf)))
        return out

    @property
    def problems(self) -> dict[str, str]:
        return self.cv.problems


def validate_model(
    spec: ModelSpec,
    X: pd.DataFrame,
    y: np.ndarray,
    *,
    config: ExperimentConfig,
    plan: ValidationPlan,
) -> ModelValidation:
    """Cross-validate and bootstrap one model on ``X[spec.features]`` (no tracking)."""
    return validate_models([spec], X, y, config=config, plan=plan)[0][spec.name]


def validate_models(specs: list[ModelSpec], X: pd.DataFrame, y: np.ndarray, *, config: ExperimentConfig,
                    plan: ValidationPlan, refit_spec: ModelSpec | None = None,
                    advance=None) -> tuple[dict[str, ModelValidation], FittedModel | None]:  # fmt: skip
    """:func:`validate_model` of each of ``specs`` (in their order), and with ``refit_spec`` that
    model fit on every patient (:func:`refit`, in this process; else None).

    Every fit of every model is one task of one queue for ``plan.n_jobs`` workers, the slowest
    models' first (:func:`_slowest_first`), so the workers end together: a queue per model and
    per method left one worker idle at the end of each (at 100,000 patients, most of a
    ``logistic_rcs`` fit each time). Each fit keeps its own seed, so the numbers are those of
    fitting the models one after the other. ``advance()`` is called as each model is done.
    """
    y = np.asarray(y, dtype=int)
    n_minority = int(min(y.sum(), len(y) - y.sum()))
    parts = {}
    for spec in specs:
        Xs = X[list(spec.features)].to_numpy(dtype=float)

        def make(seed, spec=spec):
            return make_estimator(spec, config, seed, n_minority)

        cv_fits, cv_finish = validation.out_of_fold_fits(make, Xs, y, plan.splits)
        boot_fits, boot_finish = validation.bootstrap_fits(make, Xs, y, n_boot=plan.n_boot, seed=plan.seed,
                                                           kind=spec.kind, thresholds=plan.thresholds)  # fmt: skip
        parts[spec.name] = (spec, boot_fits, boot_finish, cv_fits, cv_finish)

    order = _slowest_first(specs)
    results = validation.run_fits(
        [fit for spec in order for fit in parts[spec.name][1] + parts[spec.name][3]], plan.n_jobs
    )
    models = {}
    for spec in order:  # each model's numbers made here while the workers fit the next ones
        _, boot_fits, boot_finish, cv_fits, cv_finish = parts[spec.name]
        boot = boot_finish([next(results) for _ in boot_fits])
        oof = cv_finish([next(results) for _ in cv_fits])
        models[spec.name] = ModelValidation(
            spec, oof, validation.summarise(y, oof, plan.thresholds), boot
        )
        if advance is not None:
            advance()
    # the refit here after the workers are done: in a worker (BLAS on one thread) its last bits
    # differed at 5,000 patients from this process's; here meanwhile, its two BLAS threads
    # against the two workers took 6.7 s instead of 2.5 s at 100,000 patients
    fitted = None if refit_spec is None else refit(refit_spec, X, y, config=config)
    return {spec.name: models[spec.name] for spec in specs}, fitted


def _slowest_first(specs: list[ModelSpec]) -> list[ModelSpec]:
    """``specs`` in the order their fits go to the workers: the penalised candidates (each fit
    an inner search of 27 fits), LightGBM, then the one-or-two-feature baselines; ties as given."""

    def rank(spec: ModelSpec) -> int:
        if spec.role == "baseline":
            return 2
        return 1 if spec.kind == "lightgbm" else 0

    return sorted(specs, key=rank)


def refit(
    spec: ModelSpec, X: pd.DataFrame, y: np.ndarray, *, config: ExperimentConfig
) -> FittedModel:
    """The model of ``spec`` fit on every patient (what is registered and served)."""
    y = np.asarray(y, dtype=int)
    est = make_estimator(spec, config, config.model.seed, int(min(y.sum(), len(y) - y.sum())))
    cols = list(spec.features)
    est.fit(X[cols], y)
    return FittedModel.from_estimator(spec.kind, cols, storable(est))


@dataclass
class TrainingResult:
    """The outcome of :func:`fit`: numbers, the refit primary model, and plot methods."""

    config: ExperimentConfig
    features: object  # msc_response.features.FeatureSet
    feature_columns: list[str]  # kept for modelling
    dropped_columns: dict[str, str]  # column -> why it was dropped
    plan: ValidationPlan
    models: dict[str, ModelValidation]
    fitted: FittedModel
    baseline_comparison: gate.Comparison | None
    riley: dict
    simulated: bool
    warnings: list[str] = field(default_factory=list)
    #: curves and rendered figures, each computed once (the run and the page show the same)
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    #: figures being drawn by worker processes (:meth:`render_figures`): their results to come
    _pending: object | None = field(default=None, init=False, repr=False, compare=False)

    def _once(self, key: tuple, make):
        if key not in self._memo and self._pending is not None:
            self._collect_figures()  # the workers may be making it (and the curves it needs)
        if key not in self._memo:
            self._memo[key] = make()
        value = self._memo[key]
        return value.copy() if isinstance(value, pd.DataFrame) else value

    @property
    def primary(self) -> ModelValidation:
        return self.models[self.config.model.primary]

    @property
    def X(self) -> pd.DataFrame:
        return self.features.table[self.feature_columns].astype(float)

    @property
    def y(self) -> np.ndarray:
        return self.features.table["response"].to_numpy(dtype=int)

    @property
    def below_riley(self) -> bool:
        return len(self.y) < self.riley["min_n"]

    def status(self, name: str) -> str:
        """``"primary"`` (pre-specified), ``"exploratory"`` (other candidates) or ``"baseline"``."""
        if name == self.config.model.primary:
            return "primary"
        return "exploratory" if self.models[name].spec.role == "candidate" else "baseline"

    def summary(self) -> dict:
        """A JSON-safe summary of the training (what the CLI prints and MLflow records)."""
        return training_summary(self)

    # -- drawing (numbers from .curves, drawn by msc_response.plotting; nothing global changes) --
    def _model(self, model: str | None) -> ModelValidation:
        return self.models[model or self.config.model.primary]

    def roc_curve(self, model: str | None = None) -> pd.DataFrame:
        """The .632+ ROC curve: its area is the validated AUROC (see :func:`curves.mean_roc_curve`)."""
        return self._once(("roc", self._model(model).name), lambda: self._roc_curve(model))

    def _roc_curve(self, model: str | None) -> pd.DataFrame:
        boot = self._model(model).bootstrap
        y = self.y
        pairs = [(y, boot.apparent_predictions)]
        for b, p in enumerate(boot.predictions):
            mask = boot.left_out(b)
            pairs.append((y[mask], p[mask]))
        w = boot.weight
        weights = [1 - w] + [w / len(boot.predictions)] * len(boot.predictions)
        return curves.mean_roc_curve(pairs, weights)

    def roc_band(self, model: str | None = None) -> pd.DataFrame:
        """Pointwise 95% band of the ROC curve: percentiles over the bootstrap replicates of
        each replicate's out-of-bag ROC curve (the spread the AUROC's interval comes from)."""
        return self._once(("roc_band", self._model(model).name), lambda: self._roc_band(model))

    def _roc_band(self, model: str | None) -> pd.DataFrame:
        boot = self._model(model).bootstrap
        tprs = []
        for b, p in enumerate(boot.predictions):
            mask = boot.left_out(b)
            tprs.append(curves.roc_at(self.y[mask], p[mask], curves.ROC_BAND_GRID))
        return curves.roc_band(tprs)

    def plot_roc(
        self, ax=None, *, model: str | None = None, band: bool = True, reference: bool = True
    ):
        """The .632+ ROC curve labelled with its area (the validated AUROC), with the out-of-bag
        95% band unless ``band`` is False; returns the Axes. Call it again on the same ``ax``
        with ``reference=False`` to compare models."""
        mv = self._model(model)
        curve = self.roc_curve(model)
        label = f"{mv.name} (.632+ AUROC {curves.area(curve):.2f})"
        return plotting.plot_roc(curve, label, ax=ax, title="ROC (.632+ bootstrap)",
                                 band=self.roc_band(model) if band else None, reference=reference)  # fmt: skip

    def plot_calibration(
        self, ax=None, *, model: str | None = None, band: bool = True, reference: bool = True
    ):
        """Smoothed cross-validated calibration curve with its 95% band; returns the Axes."""
        mv = self._model(model)
        est = mv.cv.values
        label = (f"{mv.name}: intercept {est[metrics.CALIBRATION_INTERCEPT]:.2f}, slope "
                 f"{est[metrics.CALIBRATION_SLOPE]:.2f}, ICI {est[metrics.ICI]:.3f}")  # fmt: skip
        curve = self.calibration_curve(model)
        rug = (
            np.nanmean(mv.oof, axis=0) if band else None
        )  # one rug per figure is readable, several are not
        return plotting.plot_calibration(
            curve, label, ax=ax, y=self.y, p=rug, band=band, reference=reference
        )

    def calibration_curve(self, model: str | None = None) -> pd.DataFrame:
        """The smoothed cross-validated calibration curve with its 95% band (:func:`curves.calibration_curve`)."""
        mv = self._model(model)
        return self._once(
            ("calibration", mv.name), lambda: curves.calibration_curve(self.y, mv.oof)
        )

    def plot_decision_curve(self, ax=None, *, model: str | None = None, band: bool = True,
                            reference: bool = True):  # fmt: skip
        """Cross-validated decision curve with a bootstrap 95% band; returns the Axes."""
        mv = self._model(model)
        return plotting.plot_decision(
            self.decision_curve(model), mv.name, ax=ax, band=band, reference=reference
        )

    def decision_curve(self, model: str | None = None) -> pd.DataFrame:
        """Net benefit by threshold (cross-validated) with its 95% band (+/- 1.96 SD out of bag)."""
        return self._once(
            ("decision", self._model(model).name), lambda: self._decision_curve(model)
        )

    def _decision_curve(self, model: str | None) -> pd.DataFrame:
        mv = self._model(model)
        curve = curves.decision_curve(self.y, mv.oof)
        se = _oob_net_benefit_sd(self.y, mv.bootstrap, curve["threshold"].to_numpy())
        return curve.assign(lower=curve["model"] - Z * se, upper=curve["model"] + Z * se)

    def plot_shap(self, ax=None, *, kind: str = "beeswarm", max_display: int = 15):
        """SHAP beeswarm (or ``kind="bar"``) of the refit primary model on the training patients;
        the beeswarm's jitter is seeded by the config's seed (the same picture every time).

        The beeswarm draws at most :data:`~msc_response.plotting.MAX_PATIENT_DOTS` patients:
        beyond, a random sample of them seeded by the config's seed (:meth:`shap_sample`),
        said in its title; the bar chart's mean |SHAP| is over every patient."""
        contrib, base = self.shap_values()
        X = self.X[self.fitted.feature_columns]
        rows = self.shap_sample() if kind == "beeswarm" else None
        if rows is not None:
            contrib, base, X = contrib[rows], base[rows], X.iloc[rows]
        with plotting.fixed_global_random(self.config.model.seed):
            ax = explain.plot_shap(contrib, base, X, ax=ax, kind=kind, max_display=max_display)
        if rows is not None:
            ax.set_title(f"Each dot a patient: {plotting.sample_words(len(self.y), self.config.model.seed)}",
                         fontsize=9)  # fmt: skip
        return ax

    def shap_sample(self) -> np.ndarray | None:
        """The patients (rows) the SHAP beeswarm draws; None: every one (see :meth:`plot_shap`)."""
        return plotting.patient_sample(len(self.y), self.config.model.seed)

    def shap_values(self) -> tuple[np.ndarray, np.ndarray]:
        """Contributions (log-odds) of the refit primary model for the training patients, and the base."""
        return self._once(("shap",), lambda: self.fitted.contributions(self.X))

    #: What :meth:`figure_png` draws: the method and its keyword arguments.
    FIGURES = {
        "roc": ("plot_roc", {}),
        "calibration": ("plot_calibration", {}),
        "decision_curve": ("plot_decision_curve", {}),
        "shap_beeswarm": ("plot_shap", {"kind": "beeswarm"}),
        "shap_bar": ("plot_shap", {"kind": "bar"}),
    }

    def figure_png(self, kind: str, model: str | None = None) -> bytes:
        """A figure of one model (``kind``, see :data:`FIGURES`; the SHAP ones are of the primary)
        as PNG bytes, rendered once: the training run logs and the report shows the same bytes."""
        key, draw = self._figure(kind, model)
        return self._once(key, lambda: plotting.png_bytes(draw(), simulated=self.simulated))

    def _figure(self, kind: str, model: str | None):
        method, kwargs = self.FIGURES[kind]
        if method != "plot_shap":
            kwargs = {**kwargs, "model": self._model(model).name}
        return ("png", kind, kwargs.get("model")), lambda: getattr(self, method)(**kwargs)

    def render_figures(self, *, wait: bool = True) -> None:
        """Every figure of :meth:`figure_png` (each model's and the SHAP ones), drawn and
        rendered by ``model.n_jobs`` worker processes (the same bytes as one by one here).

        With ``wait=False`` the workers go on while the caller does other work (the training
        run's MLflow calls); the first figure or curve asked for then waits for them all, and
        the curves the workers computed for their figures are kept too (made once). With one
        job everything is made here, now.
        """
        # one task per model, and one for both SHAP figures (first: it imports shap)
        groups = [[(kind, None) for kind in ("shap_beeswarm", "shap_bar")]]
        groups += [[(kind, name) for kind in self.FIGURES if not kind.startswith("shap")]
                   for name in self.models]  # fmt: skip
        groups = [[(kind, model) for kind, model in group if self._figure(kind, model)[0] not in self._memo]
                  for group in groups]  # fmt: skip
        groups = [group for group in groups if group]
        if self.plan.n_jobs == 1 or len(groups) < 2:
            for kind, model in (figure for group in groups for figure in group):
                self.figure_png(kind, model)
            return
        from joblib import delayed

        # a copy travels to the workers: the workers' pickling thread never sees this memo change
        sent = dataclasses.replace(self)
        sent._memo = dict(self._memo)
        results = processes.parallel(self.plan.n_jobs, return_as="generator", pre_dispatch="all")(
            delayed(_figures_in_worker)(sent, group) for group in groups
        )
        self._pending = results
        if wait:
            self._collect_figures()

    def _collect_figures(self) -> None:
        results, self._pending = self._pending, None
        for made in results:
            for key, value in made.items():
                self._memo.setdefault(key, value)


def _figures_in_worker(result: TrainingResult, figures: list[tuple]) -> dict:
    """In a worker: the PNGs of ``figures`` ((kind, model) pairs) and the curves (and SHAP
    values) made for them, keyed as in the memo of :class:`TrainingResult`."""
    for kind, model in figures:
        result.figure_png(kind, model)
    return result._memo


def _oob_net_benefit_sd(y, boot: validation.Bootstrap, thresholds) -> np.ndarray:
    rows = []
    for b, p in enumerate(boot.predictions):
        mask = boot.left_out(b)
        rows.append(metrics.net_benefit(y[mask], p[mask], thresholds))
    return np.std(np.array(rows), axis=0, ddof=1)


def check_outcome(table: pd.DataFrame, config: ExperimentConfig) -> None:
    """Stop with a DataError when the endpoint cannot be learned (one class, or too few)."""
    y = table["response"].to_numpy(dtype=int) if len(table) else np.array([], dtype=int)
    n, events = len(y), int(y.sum())
    what = None
    if n == 0:
        what = "no eligible patients"
    elif events == 0:
        what = f"no responders among {n} eligible patients"
    elif events == n:
        what = f"no non-responders among {n} eligible patients"
    elif min(events, n - events) < 2:
        what = f"only {min(events, n - events)} patient in the smaller outcome class of {n}; validation needs at least 2"
    if what:
        problem = f"endpoint {config.endpoint.score!r}: {what}; nothing to learn"
        raise DataError([Problem("features", None, "response", problem)])


def warn(message: str) -> str:
    """Raise ``message`` as an :class:`MscResponseWarning` (statistical trouble) and return it."""
    warnings.warn(message, MscResponseWarning, stacklevel=3)
    return message


def fit(config: ExperimentConfig, features, *, simulated: bool | None = None) -> TrainingResult:
    """Validate every candidate and baseline of ``config`` on ``features`` and refit the primary.

    Parameters
    ----------
    config : ExperimentConfig
    features : FeatureSet
        From :func:`msc_response.features.build_features` with labels.
    simulated : bool, optional
        The data are simulated (carried into the summary and every plot label); by
        default what the features say (``FeatureSet.simulated``).

    Warns
    -----
    MscResponseWarning
        n below Riley's minimum sample size; a metric not estimable (separation, no
        convergence, predictions without spread).

    Raises
    ------
    DataError
        An endpoint with no responders or no non-responders (or only one in a class).
    """
    check_outcome(features.table, config)
    simulated = bool(getattr(features, "simulated", False)) if simulated is None else simulated
    raw = features.table[features.feature_columns].astype(float)
    kept, dropped = screen_columns(raw)
    X = raw[kept]
    y = features.table["response"].to_numpy(dtype=int)
    n, events = len(y), int(y.sum())
    plan = ValidationPlan.for_data(config, n)
    notes = []
    riley = validation.riley_min_n(events / n, len(kept))
    if n < riley["min_n"]:
        notes.append(warn(
            f"{n} patients is below Riley's minimum sample size of {riley['min_n']} for {len(kept)} "
            "candidate predictor parameters: every estimate is exploratory, with wide uncertainty; "
            "the model is registered as 'exploratory', never 'champion'"
        ))  # fmt: skip
    specs = model_specs(config, kept)
    m = min(events, n - events)
    if any(s.name == "logistic_rcs" and not flexible(s, m) for s in specs):
        notes.append(warn(
            f"logistic_rcs is fitted as logistic_l2 (linear, every term penalised): the smaller "
            f"outcome class has {m} patients, below the {FLEXIBLE_MIN_MINORITY} that one "
            "parameter beyond a penalised linear model needs (Harrell's m/15)"
        ))  # fmt: skip
    primary_spec = next(s for s in specs if s.name == config.model.primary)
    with progress.task(f"validating {len(specs)} models ({plan.repeats} x {plan.folds}-fold CV, "
                       f"{plan.n_boot} bootstrap samples)", len(specs)) as advance:  # fmt: skip
        models, fitted = validate_models(specs, X, y, config=config, plan=plan, refit_spec=primary_spec,
                                         advance=advance)  # fmt: skip
    for spec in specs:
        for metric, why in models[spec.name].problems.items():
            notes.append(warn(f"{spec.name}: {metrics.label(metric)} {why}"))
    primary = models[config.model.primary]
    baselines = [m for m in models.values() if m.spec.role == "baseline"]
    comparison = gate.against_baseline(primary, baselines)
    return TrainingResult(config, features, kept, dropped, plan, models, fitted, comparison,
                          riley, simulated, notes)  # fmt: skip
