"""The sections of the training report that read a :class:`~msc_response.modeling.fit.TrainingResult`.

Every number comes from the result where it holds it (validated metrics and their
intervals, the paired comparison with the best baseline, the curves through the result's
own plot methods); what it does not hold is computed in this package (prediction
instability from the result's bootstrap predictions, subgroup AUROCs, the logistic
equation), each with its interval or the reason it has none.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd

from ..modeling import metrics
from ..modeling.explain import global_importance
from ..modeling.fit import refit
from ..modeling.models import flexible
from ..modeling.validation import METHOD
from ..plotting import patient_sample, sample_words
from . import figures
from .equation import logistic_equation
from .operating_point import OperatingPoint, operating_point
from .page import Page
from .paper_view import regimen_groups
from .stability import instability
from .study_sections import StudyContext
from .subgroups import MIN_PER_CLASS, for_display, subgroup_performance

#: The cell-fraction feature the report shows the dependence on, and what colours it.
DEPENDENCE_FEATURE = "baseline_mx1_monocytes_fraction"
DEPENDENCE_COLOUR = ("dose_per_infusion_1e8", "cumulative_dose_1e8")


def _ordered(result) -> list[str]:
    order = {"primary": 0, "exploratory": 1, "baseline": 2}
    return sorted(
        result.models, key=lambda n: (order[result.status(n)], list(result.models).index(n))
    )


def metrics_table(result, name: str) -> pd.DataFrame:
    """Every validated metric of one model with its 95% interval, or why there is none."""
    mv = result.models[name]
    est, ci = mv.estimates(), mv.intervals()
    rows = []
    for metric, value in est.items():
        lo, hi = ci.get(metric, (np.nan, np.nan))
        why = mv.problems.get(metric, "")
        if np.isfinite(value) and not (np.isfinite(lo) and np.isfinite(hi)) and not why:
            why = ("no interval: the estimate is at the end of its range" if value in metrics.RANGES.get(metric, ())
                   else "no interval: too few estimable bootstrap replicates")  # fmt: skip
        rows.append({"metric": metrics.label(metric), "estimate": value, "95% CI low": lo,
                     "95% CI high": hi, "note": why})  # fmt: skip
    opt = mv.optimism
    rows.append({"metric": "AUROC, Harrell optimism-corrected", "estimate": np.nan if opt is None else
                 opt.corrected[metrics.ROC_AUC], "95% CI low": np.nan, "95% CI high": np.nan,
                 "note": "not applicable: Harrell's bootstrap is for regression models, not trees" if opt is None
                 else ("not a result (no interval): a check beside the .632+ headline; in simulated "
                       "trials of 33 patients it overstated the fresh AUROC by +0.13 on average "
                       "(benchmarks/bench_honest_validation.py)")})  # fmt: skip
    return pd.DataFrame(rows)


def _with_interval(mv, metric: str, digits: int = 3) -> str:
    """``"0.612 (0.421 to 0.803)"``, or why the metric is not estimable."""
    v = mv.estimates().get(metric, np.nan)
    if not np.isfinite(v):
        return "not estimable: " + mv.problems.get(metric, "see the model's section")
    lo, hi = mv.intervals().get(metric, (np.nan, np.nan))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{v:.{digits}f} (no interval)"
    return f"{v:.{digits}f} ({lo:.{digits}f} to {hi:.{digits}f})"


def overview_table(result) -> pd.DataFrame:
    """One row per model: status, validated AUROC with interval, Brier, calibration slope, ICI."""
    rows = []
    for name in _ordered(result):
        mv = result.models[name]
        cell = lambda metric, mv=mv: _with_interval(mv, metric)  # noqa: E731
        rows.append({"model": name, "status": result.status(name), "predictors": len(mv.spec.features),
                     "AUROC (.632+, 95% CI)": cell(metrics.ROC_AUC), "Brier": cell(metrics.BRIER),
                     "calibration intercept": cell(metrics.CALIBRATION_INTERCEPT),
                     "calibration slope": cell(metrics.CALIBRATION_SLOPE), "ICI": cell(metrics.ICI)})  # fmt: skip
    return pd.DataFrame(rows)


def add_validation_overview(page: Page, result) -> None:
    s = page.section("Models and their internal validation")
    primary = result.config.model.primary
    s.paragraph(f"The primary model ({primary}) was named in the experiment's config before any data were "
                "seen; the other candidates are reported as exploratory and were not chosen on these data "
                "(choosing the best of several on the same folds is optimistic). Baselines: the endpoint's "
                "baseline score alone and the dosing regimen alone.")  # fmt: skip
    s.paragraph(f"Method: {METHOD}. Folds {result.plan.folds}, repeats {result.plan.repeats}, bootstrap "
                f"replicates {result.plan.n_boot}, seed {result.plan.seed}. The apparent (training) "
                "performance is not a result and is not shown.")  # fmt: skip
    s.table(overview_table(result), "Validated performance of every model")
    if result.dropped_columns:
        s.table(pd.DataFrame(sorted(result.dropped_columns.items()), columns=["column", "why dropped"]),
                "Columns dropped before modelling (not counted as candidate parameters)")  # fmt: skip
    cmp = result.baseline_comparison
    if cmp is not None:
        s.paragraph(
            f"Against the best baseline (paired bootstrap on identical samples): {cmp.describe()}."
        )
    for w in result.warnings:
        s.note(w, warning=True)
    add_comparison_figures(s, result)
    add_operating_point(
        s, model_operating_point(result, primary), f"{primary} (primary)", "cross-validated"
    )
    s.note(OOF_OPERATING_POINT_NOTE, warning=True)


#: Measured by benchmarks/bench_honest_validation.py (200 simulated 33-patient trials).
OOF_OPERATING_POINT_NOTE = (
    "These exact intervals treat the cross-validated calls as fixed: against the calls of the model refit on "
    "all patients, on fresh simulated patients, they covered the truth in only 73% (sensitivity) and 83% "
    "(specificity) of 200 simulated 33-patient trials for logistic_l2 (PPV and NPV 97%; LightGBM 94-96%; "
    "logistic_rcs 77% sensitivity in 60 trials), because "
    "refitting moves a model whose predictions sit near the threshold. Read them as too narrow "
    "(benchmarks/bench_honest_validation.py)."
)


def model_operating_point(result, name: str) -> OperatingPoint:
    """The operating point of a model's out-of-fold predictions (mean over the repeats: each
    patient once) at the config's decision threshold."""
    return operating_point(
        result.y, np.nanmean(result.models[name].oof, axis=0), result.config.model.threshold
    )


def add_operating_point(s, op: OperatingPoint, who: str, how: str) -> None:
    """The 2x2 table and sensitivity, specificity, PPV and NPV with exact intervals."""
    s.subheading(f"Operating point of {who} at threshold {op.threshold:.2f}")
    s.paragraph(f"A patient with a {how} predicted probability of at least {op.threshold:.2f} (the config's "
                "model.threshold, the same rule as predicted_response in score) is called a responder. Exact "
                "(Clopper-Pearson) 95% intervals; PPV and NPV depend on this cohort's share of responders.")  # fmt: skip
    s.table(op.table(), f"{who}: predicted against observed response")
    s.table(op.measures_table(), f"{who}: sensitivity, specificity, PPV and NPV", digits=3)


def add_comparison_figures(s, result) -> None:
    """One ROC (the primary model's with its band), one calibration and one decision curve
    figure with every model."""
    names = _ordered(result)
    primary = result.config.model.primary
    ax = None
    for i, name in enumerate(names):  # four overlapping bands hide each other: the primary's only
        ax = result.plot_roc(ax=ax, model=name, reference=i == 0, band=name == primary)
    s.figure(ax, "ROC curves of every model, the primary with its 95% band",
             f"The .632+ ROC curve of each model (its area is the validated AUROC); {primary} with a pointwise "
             "95% band from the out-of-bag curves of the bootstrap replicates (each model's band is in its "
             "details).")  # fmt: skip
    ax = None
    for i, name in enumerate(names):
        ax = result.plot_calibration(ax=ax, model=name, band=False, reference=i == 0)
    s.figure(ax, "smoothed calibration curves of every model",
             "Smoothed calibration of the cross-validated predictions; each model's 95% band is in its details.")  # fmt: skip
    ax = None
    for i, name in enumerate(names):
        ax = result.plot_decision_curve(ax=ax, model=name, band=False, reference=i == 0)
    s.figure(ax, "decision curves of every model",
             "Net benefit of the cross-validated predictions against treating all and treating none; each "
             "model's bootstrap 95% band is in its details.")  # fmt: skip


def _refit(result, name: str):
    if name == result.config.model.primary:
        return result.fitted
    return refit(result.models[name].spec, result.X, result.y, config=result.config)


def add_model_section(page: Page, result, name: str) -> None:
    mv = result.models[name]
    section = page.section(f"Model: {name} ({result.status(name)})")
    section.table(metrics_table(result, name), f"{name}: validated metrics with 95% intervals")
    s = section.details(f"Details of {name}: curves with their bands, net benefit, operating point"
                        + (", equation" if mv.spec.kind == "logistic" else ""))  # fmt: skip
    # the training run logs the same pictures (rendered once: TrainingResult.figure_png)
    s.figure(result.figure_png("roc", name), f".632+ ROC curve of {name} with its 95% band")
    s.figure(result.figure_png("calibration", name), f"smoothed calibration curve of {name} with its 95% band",
             "Smoothed (restricted cubic spline) calibration of the cross-validated predictions, pointwise "
             "95% band; ticks: predictions of responders (top) and non-responders (bottom).")  # fmt: skip
    dc = result.decision_curve(name)
    s.figure(result.figure_png("decision_curve", name), f"decision curve of {name}",
             "Net benefit of the cross-validated predictions, with a bootstrap 95% band, against treating "
             "all and treating none.")  # fmt: skip
    shown = dc[dc["threshold"].round(2).isin([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])]
    s.table(shown.rename(columns={"lower": "95% band low", "upper": "95% band high"}),
            "Net benefit at selected thresholds", digits=3)  # fmt: skip
    add_operating_point(s, model_operating_point(result, name), name, "cross-validated")
    if name == "logistic_rcs" and flexible(
        mv.spec, int(min(result.y.sum(), len(result.y) - result.y.sum()))
    ):
        s.subheading("The full equation")
        s.paragraph("Not applicable: the model is a penalised logistic regression on restricted cubic splines "
                    "of the continuous features (skewed labs logged), so a feature has no single coefficient; "
                    "the SHAP section shows what each feature contributes.")  # fmt: skip
    elif mv.spec.kind == "logistic":
        eq = logistic_equation(_refit(result, name), result.features.feature_spec)
        s.subheading("The full equation")
        s.paragraph(eq.text())
        imputed = eq.terms["imputed"].map(lambda v: f"{v:.4g}")  # a median in the feature's unit
        s.table(eq.terms.assign(imputed=imputed), "Coefficients per unit of each feature (log-odds); 'imputed' replaces a missing "
                "value (the training median). Penalised estimates: no standard errors are given, as they "
                "would ignore the penalty's choice.", digits=5)  # fmt: skip


def add_stability(page: Page, result) -> None:
    s = page.section("Stability of individual predictions")
    s.paragraph("Riley & Collins (Biom J 2023): each bootstrap replicate refits the whole procedure and "
                "predicts every patient; the instability plot sets those predictions against the model fit "
                "on all patients, and the mean absolute prediction error (MAPE) averages, over patients, "
                "the mean |bootstrap - original| difference. The interval beside the MAPE is the 2.5th-97.5th "
                "percentile range of that difference over replicates.")  # fmt: skip
    rows = []
    for name in _ordered(result):
        b = result.models[name].bootstrap
        inst = instability(b.apparent_predictions, b.predictions)
        rows.append({"model": name, "status": result.status(name), "MAPE": inst.mape,
                     "range low": inst.mape_range[0], "range high": inst.mape_range[1],
                     "largest patient MAPE": inst.max_patient_mape, "replicates": inst.n_models})  # fmt: skip
        if name == result.config.model.primary:
            n, seed = len(result.y), result.config.model.seed
            dots = patient_sample(n, seed)
            s.figure(partial(figures.plot_instability, b.apparent_predictions, b.predictions, mape=inst.mape, rows=dots),
                     f"prediction instability plot of {name}",
                     None if dots is None else f"The dots show {sample_words(n, seed)}; the percentile "
                     "lines are over every patient.")  # fmt: skip
    s.table(pd.DataFrame(rows), "Mean absolute prediction error of every model", digits=3)


def add_shap(page: Page, result) -> None:
    s = page.section("SHAP: what the primary model uses")
    s.paragraph("Contributions to the log-odds of the model fit on all patients, on those patients "
                "(LightGBM: TreeSHAP; logistic: coefficient x centred, standardised value). They describe "
                "the model, not causes.")  # fmt: skip
    X = result.X[result.fitted.feature_columns]
    contrib, _ = result.shap_values()
    rows, seed = result.shap_sample(), result.config.model.seed
    sampled = None if rows is None else f"Each dot is a patient: {sample_words(len(X), seed)}."
    s.figure(result.figure_png("shap_beeswarm"), "SHAP beeswarm of the primary model", sampled)
    imp = global_importance(contrib, result.fitted.feature_columns)
    s.table(imp.head(20), "Mean |SHAP| (log-odds), the 20 largest", digits=4)
    if DEPENDENCE_FEATURE in X.columns:
        colour = next((c for c in DEPENDENCE_COLOUR if c in result.features.table), None)
        j = list(X.columns).index(DEPENDENCE_FEATURE)
        c = result.features.table[colour].to_numpy() if colour else np.zeros(len(X))
        x, shown = X[DEPENDENCE_FEATURE].to_numpy(), contrib[:, j]
        if rows is not None:
            x, shown, c = x[rows], shown[rows], c[rows]
        s.figure(partial(figures.plot_dependence, x, shown, c, feature=DEPENDENCE_FEATURE,
                                         colour_label=colour or "(no dose recorded)"),
                 f"SHAP dependence on {DEPENDENCE_FEATURE}, coloured by {colour}", sampled)  # fmt: skip
    else:
        s.paragraph(f"The model does not use {DEPENDENCE_FEATURE}: no dependence plot.")


def add_subgroups(page: Page, result, ctx: StudyContext) -> None:
    s = page.section("Performance by subgroup")
    name = result.config.model.primary
    p = np.nanmean(result.models[name].oof, axis=0)
    groups = regimen_groups(ctx.study.patients)[["patient_id", "arm"]]
    extra = ctx.study.patients[
        [c for c in ("patient_id", "sex", "etiology") if c in ctx.study.patients]
    ]
    table = result.features.table[["patient_id"]].merge(groups, on="patient_id", how="left")
    table = table.merge(extra, on="patient_id", how="left")
    sub = subgroup_performance(table, result.y, p)
    s.paragraph(f"Cross-validated predictions of {name} (mean over repeats) within each group: responders "
                "(exact interval), mean predicted probability (t interval on the logit scale), AUROC (DeLong interval); 'too few' "
                f"where a group has fewer than {MIN_PER_CLASS} responders or non-responders.")  # fmt: skip
    s.figure(partial(figures.plot_subgroups, sub), "subgroup AUROCs")
    s.table(for_display(sub), digits=3)


def add_model_sections(page: Page, result, ctx: StudyContext) -> None:
    """Overview, one section per model, stability, SHAP, subgroups."""
    add_validation_overview(page, result)
    for name in _ordered(result):
        add_model_section(page, result, name)
    add_stability(page, result)
    add_shap(page, result)
    add_subgroups(page, result, ctx)
