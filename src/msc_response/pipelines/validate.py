"""``msc-response validate``: a registered model on a labelled cohort it never saw.

Features and labels come from the project's one feature builder with the config stored
with the model; the numbers are :func:`msc_response.reporting.external.external_performance`; the page has the
training report's layout (the cohort's sections, then the validation): the model's
provenance (version, aliases at validation time, training run, its n and data digest),
internal (.632+ / cross-validated, from the training run) and external numbers side by
side, the operating point at the model's threshold, and the sample size judged by the
criteria for validating a model (Riley et al., Stat Med 2021:
:func:`msc_response.modeling.validation.riley_validation_n`). Every number, interval and count is written to
``validation.json`` beside the page and logged as the MLflow metrics of the validation
run (experiment ``<model>-validation``), linked to the model version's logged model and
to the cohort's features (no ids, no rows). With
``recalibrate``, a logistic recalibration is estimated and registered as a new version
of the same model, linked to the one it recalibrates (once per version and cohort: the
same recalibration again reuses that version).

Every validation is its own record: its run (named for the model version, the cohort's
folder and the digest of its features; tagged with the cohort's path), its page
(``reports/<model>/validation/<run id>/`` by default) and its tag on the model version
(``external_validation.<run id>``); none replaces another. ``--out`` follows the rule of
every output folder (:func:`msc_response.io.check_output_folder`): new, empty or an
earlier validation page, never inside the cohort (nor is the default folder). The run
starts first (ending runs of killed validations, see
:func:`msc_response.tracking.job_run`); the page is written inside it and removed if the
run fails, and only the page itself is logged.

Everything that can be wrong with the input is checked before anything is written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import plotting, processes, tracking
from ..errors import DataError, Problem
from ..features import features_from_study
from ..io import check_output_folder, write_json
from ..modeling.calibration import linear_predictor
from ..modeling.fitted import FittedModel, write_spec
from ..modeling.metrics import VALIDATED, label
from ..modeling.predict import missing_inputs
from ..modeling.validation import riley_validation_n
from ..registry.load import RECALIBRATION_DIGEST_TAG, load_model, record_decision, unusable
from ..registry.registration import features_dataset, log_features, log_pyfunc
from ..reporting import external, figures
from ..reporting import study_sections as sections
from ..reporting.model_sections import add_operating_point
from ..reporting.page import Page
from ..reporting.subgroups import MIN_PER_CLASS, for_display, subgroup_performance
from ..study import load_study
from .report import remove_report_leftovers, reports_root

VALIDATION_JSON = "validation.json"


@dataclass(frozen=True)
class Provenance:
    """Where the validated model came from, and what the cohort is (the page's provenance block)."""

    model: str
    version: str
    aliases: tuple[str, ...]
    training_run: str
    training_n: int | None
    training_events: int | None
    training_digest: str
    cohort: str
    cohort_digest: str
    trained_on_simulated_data: bool
    cohort_simulated: bool
    internal: dict[str, float]  # the training run's validated_* metrics

    def as_dict(self) -> dict:
        return {"model": self.model, "version": self.version, "aliases_at_validation": list(self.aliases),
                "training_run": self.training_run, "training_n": self.training_n,
                "training_events": self.training_events, "training_data_digest": self.training_digest,
                "cohort": self.cohort, "cohort_data_digest": self.cohort_digest,
                "trained_on_simulated_data": self.trained_on_simulated_data,
                "cohort_simulated": self.cohort_simulated}  # fmt: skip

    def rows(self) -> dict[str, str]:
        """What the page shows, one line each."""
        sim = lambda b: "yes (SIMULATED)" if b else "no"  # noqa: E731
        n = (
            "unknown"
            if self.training_n is None
            else f"{self.training_n} patients, {self.training_events} responders"
        )
        return {"model": f"{self.model} version {self.version}",
                "aliases at validation time": ", ".join(self.aliases) or "(none)",
                "training run (MLflow)": self.training_run, "training n": n,
                "training data digest": self.training_digest or "(not logged)",
                "validation cohort": self.cohort, "validation data digest": self.cohort_digest,
                "trained on simulated data": sim(self.trained_on_simulated_data),
                "validation cohort simulated": sim(self.cohort_simulated)}  # fmt: skip


def provenance(model, fs, y, data: Path, root=None) -> Provenance:
    """The model version's aliases now, its training run's n, digest and validated metrics."""
    client = tracking.client(root)
    version = client.get_model_version(model.name, model.version)
    run = client.get_run(version.run_id) if version.run_id else None
    m = run.data.metrics if run is not None else {}
    digests = (
        sorted({d.dataset.digest for d in run.inputs.dataset_inputs}) if run is not None else []
    )
    X = fs.table[model.feature_columns].astype(float)
    internal = {
        k.removeprefix(f"{VALIDATED}_"): float(v)
        for k, v in m.items()
        if k.startswith(f"{VALIDATED}_")
    }
    return Provenance(
        model.name, str(model.version), tuple(sorted(version.aliases or [])), version.run_id or "",
        int(m["n_patients"]) if "n_patients" in m else None, int(m["n_events"]) if "n_events" in m else None,
        ", ".join(digests), data.name, features_dataset(X, y).digest,
        bool(model.spec.get("trained_on_simulated_data")), bool(fs.simulated), internal,
    )  # fmt: skip


def sample_size(ev: external.ExternalValidation, p, threshold: float):
    """Riley et al. (2021)'s minimum n for validating the model, from this cohort's prevalence,
    AUROC, distribution of predictions and operating point; ``(None, why)`` when not computable."""
    c = ev.auroc.estimate
    if not (np.isfinite(c) and 0.5 <= c < 1):
        return (
            None,
            f"the cohort's AUROC ({c:.3f}) is outside the 0.5-1 range the criteria are defined for",
        )
    return riley_validation_n(
        ev.outcome.estimate, c, lp=linear_predictor(p), threshold=threshold
    ), None


def sample_size_note(ev: external.ExternalValidation, ss, why: str | None) -> str:
    if ss is None:
        return f"Riley's minimum sample size for validation not computed: {why}."
    crit = ", ".join(f"{SAMPLE_SIZE_LABELS[k]} {v}" for k, v in ss.criteria.items())
    verdict = (f"{ev.n} patients is {ss.min_n - ev.n} short of it: the intervals below are wider than those "
               "criteria ask for; read them as they are, not as a precise validation."
               if ev.n < ss.min_n else f"{ev.n} patients meets it.")  # fmt: skip
    return (f"Minimum sample size for validating a model (Riley et al., Stat Med 2021;40:4230-51), from this "
            f"cohort's prevalence {ev.outcome.estimate:.3f}, AUROC {ev.auroc.estimate:.3f} and distribution of "
            f"predictions: {ss.min_n} (largest of: {crit}; target 95% interval widths O/E 0.2, calibration "
            f"slope 0.2, C 0.1, standardised net benefit 0.2). {verdict}")  # fmt: skip


SAMPLE_SIZE_LABELS = {"oe": "O/E", "calibration_slope": "calibration slope", "c_statistic": "C statistic",
                      "net_benefit": "net benefit at the threshold"}  # fmt: skip


@dataclass
class ValidationRun:
    """What :func:`validate_registered_model` did: the numbers, the page, the MLflow run, a new version."""

    model_uri: str
    name: str
    version: str
    result: external.ExternalValidation
    page: Path
    run_id: str
    recalibration: external.Recalibration | None = None
    recalibrated_version: str | None = None
    recalibration_reused: bool = False  # the same recalibration was registered before
    cohort: str = ""


def _cohort(model, data: Path):
    """The cohort's study, labelled features and predictions; a DataError for every unusable cohort."""
    config = model.spec.config
    study = load_study(data, config.singlecell)
    tests = {str(t) for t in study.labs["test"].cat.categories}
    has_cells = study.cells is not None and len(study.cells) > 0
    missing = missing_inputs(model.feature_spec, tests, has_cells, Path(study.files["labs"]).name)
    if missing:
        raise DataError(missing)
    fs = features_from_study(study, config, labels=True, bad_rows="error")
    ep = config.endpoint
    if fs.table.empty:
        why = "; ".join(f"{k}: {v}" for k, v in fs.flow["excluded"].items())
        raise DataError([Problem(Path(study.files["labs"]).name, None, None,
                                 f"no patient of the cohort can be labelled for the model's endpoint "
                                 f"({ep.score}, day {ep.followup_day}): {why}")])  # fmt: skip
    y = fs.table["response"].to_numpy(dtype=int)
    if y.sum() in (0, len(y)):
        what = "no responders" if y.sum() == 0 else "no non-responders"
        raise DataError([Problem("features", None, "response",
                                 f"endpoint {ep.score!r}: {what} among {len(y)} labelled patients; the model "
                                 "cannot be validated on one outcome class")])  # fmt: skip
    p = model.fitted.predict_proba(fs.table)
    return config, study, fs, y, p


def validate_registered_model(model_uri: str, data: str | Path, *, out: str | Path | None = None,
                              recalibrate: bool = False, root: str | Path | None = None,
                              n_boot: int | None = None) -> ValidationRun:  # fmt: skip
    """Validate the model at ``model_uri`` on the labelled cohort in ``data`` (see the module docs).

    Raises
    ------
    ConfigError
        The model cannot be loaded.
    DataError
        The cohort is bad, lacks what the model needs, has no follow-up for the model's
        endpoint, has a single outcome class, or cannot be recalibrated. Nothing is
        written or logged then.
    """
    data = Path(os.path.abspath(data))  # "." is named by its folder
    if out is not None:
        check_page_folder(Path(out), data)
    model = load_model(model_uri)
    pages = reports_root(root) / model.name / VALIDATION_PAGES
    if out is None:  # a new folder per run inside it: never inside the cohort either
        check_page_folder(pages, data, option="the default page folder", previous=lambda _: True)
    config, study, fs, y, p = _cohort(model, data)
    ev = external.external_performance(y, p, thresholds=config.model.net_benefit_thresholds, n_boot=n_boot,
                                       seed=config.model.seed, decision_threshold=model.threshold)  # fmt: skip
    prov = provenance(model, fs, y, data, root)
    ss, why_no_ss = sample_size(ev, p, model.threshold)
    numbers = validation_numbers(ev, prov, ss)
    recal = None
    if recalibrate:
        try:
            recal = external.logistic_recalibration(y, p)
        except ValueError as err:
            raise DataError([Problem("features", None, "response", str(err))]) from None

    def write_page(run_id: str) -> Path:
        page = write_validation_report(model, config, study, fs, y, p, ev,
                                       Path(out) if out is not None else pages / run_id, data_dir=data,
                                       recalibration=recal, provenance=prov, sample_size=(ss, why_no_ss))  # fmt: skip
        write_json({"metrics": numbers, "provenance": prov.as_dict(), "problems": dict(ev.problems),
                    "sample_size": None if ss is None else {"criteria": ss.criteria, "targets": ss.targets,
                                                            "inputs": ss.inputs},
                    "sample_size_not_computed": why_no_ss}, page.parent / VALIDATION_JSON)  # fmt: skip
        return page

    run = _log(
        model, fs, y, ev, write_page, data, recal, root, pages if out is None else None, numbers
    )
    run.model_uri = model_uri
    return run


#: The folder of the default validation pages under ``reports/<model>/``: one per run.
VALIDATION_PAGES = "validation"
#: What a validation page folder holds (an earlier one may be replaced by a new page).
PAGE_FILES = frozenset({"index.html", VALIDATION_JSON})


def is_validation_page(folder: Path) -> bool:
    """Whether ``folder`` holds an earlier validation page and nothing else (hidden work
    directories of killed writes aside)."""
    names = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    if not names <= PAGE_FILES or "index.html" not in names:
        return False
    try:
        head = (folder / "index.html").read_text(encoding="utf-8", errors="replace")[:4000]
    except OSError:
        return False
    return re.search(r"<title>(SIMULATED - )?External validation: ", head) is not None


def check_page_folder(
    folder: Path, data: Path, *, option: str = "out", previous=is_validation_page
) -> None:
    """The page folder may be written: the rule of every output folder, before any work."""
    check_output_folder(
        folder, inputs=[data], option=option, previous=previous, kind="an earlier validation page"
    )


def validation_table(
    ev: external.ExternalValidation, internal: dict[str, float] | None = None
) -> pd.DataFrame:
    """Every external metric with its interval (or why it has none); beside it, with
    ``internal`` (the training run's ``validated_*`` metrics), the internal validation's."""
    rows = []
    for name, value in ev.values.items():
        lo, hi = ev.intervals.get(name, (np.nan, np.nan))
        row = {"metric": label(name)}
        if internal is not None:
            row.update({"internal": internal.get(name, np.nan), "internal 95% CI low": internal.get(f"{name}_ci_low", np.nan),
                        "internal 95% CI high": internal.get(f"{name}_ci_high", np.nan)})  # fmt: skip
        row.update({"external": value, "external 95% CI low": lo, "external 95% CI high": hi,
                    "note": ev.problems.get(name, "")})  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


def validation_numbers(ev: external.ExternalValidation, prov: Provenance, ss) -> dict[str, float]:
    """Every number, interval and count of the validation, flat: ``validation.json``'s
    ``metrics`` and the validation run's MLflow metrics (NaN left out: not a number to log)."""
    out = {"n_patients": float(ev.n), "n_events": float(ev.outcome.x), "n_boot": float(ev.n_boot),
           "external_mean_predicted": ev.mean_predicted,
           "external_prevalence": ev.outcome.estimate, "external_prevalence_ci_low": ev.outcome.low,
           "external_prevalence_ci_high": ev.outcome.high}  # fmt: skip
    for name, value in ev.values.items():
        lo, hi = ev.intervals.get(name, (np.nan, np.nan))
        out.update(
            {
                f"external_{name}": value,
                f"external_{name}_ci_low": lo,
                f"external_{name}_ci_high": hi,
            }
        )
    if ev.operating_point is not None:
        out.update(ev.operating_point.numbers("external_"))
    out.update({f"internal_{k}": v for k, v in prov.internal.items()})
    if prov.training_n is not None:
        out.update(
            {
                "training_n_patients": float(prov.training_n),
                "training_n_events": float(prov.training_events),
            }
        )
    if ss is not None:
        out["riley_validation_min_n"] = float(ss.min_n)
        out.update({f"riley_validation_n_{k}": float(v) for k, v in ss.criteria.items()})
    return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(v)}


def write_validation_report(model, config, study, fs, y, p, ev, out_dir: Path, *, data_dir: Path,
                            recalibration=None, provenance: Provenance | None = None,
                            sample_size=(None, "not computed")) -> Path:  # fmt: skip
    """The validation page: the cohort's sections, provenance, internal beside external numbers,
    the operating point, ROC (with band), calibration and decision curve, all labelled external."""

    simulated = study.simulated or model.spec.trained_on_simulated_data
    ctx = sections.StudyContext.build(config, study, fs, data_dir)
    page = Page(f"External validation: {model.name} version {model.version} on {data_dir.name}",
                simulated=simulated, subtitle=f"{ev.n} labelled patients, {ev.outcome.text()} responders",
                config=model.spec["config"], feature_spec=model.feature_spec, warning=model.warning())  # fmt: skip
    if provenance is not None:
        page.section("Provenance").definitions(provenance.rows())
    for add in (sections.add_data_source, sections.add_eligibility, sections.add_outcome, sections.add_flow,
                sections.add_table1):  # fmt: skip
        add(page, ctx)
    sections.add_missing(page, ctx, (model.spec.kind,))
    ss, why_no_ss = sample_size
    ss_note = sample_size_note(ev, ss, why_no_ss)
    s = page.section("External validation")
    s.paragraph(f"Model {model.name} version {model.version} ({model.spec.model_name}), "
                "with the config stored with it, on a cohort it never saw. Features and labels come from the "
                "same code as in training. External AUROC interval: DeLong's, on the logit scale; other external "
                f"intervals: 2.5th-97.5th percentiles over {ev.n_boot} bootstrap resamples of the patients. "
                "Internal: the training run's validation (AUROC .632+ bootstrap, other metrics cross-validated; "
                "see its report).")  # fmt: skip
    s.note(ss_note, warning=ss is not None and ev.n < ss.min_n)
    s.definitions({"external AUROC": ev.auroc.text(), "responders": ev.outcome.text(),
                   "mean predicted probability": f"{ev.mean_predicted:.3f}"})  # fmt: skip
    s.table(validation_table(ev, provenance.internal if provenance is not None else None),
            "Internal (training) and external (this cohort) performance")  # fmt: skip
    s.figure(plotting.plot_roc(ev.roc_curve, f"{model.name} (external AUROC {ev.auroc.estimate:.2f})",
                             title="ROC (external validation)", band=ev.roc_band),
             "external ROC curve with a bootstrap 95% band")  # fmt: skip
    s.figure(plotting.plot_calibration(ev.calibration_curve, model.name, y=y, p=p,
                                     title="Calibration (external validation)"),
             "external smoothed calibration curve with its 95% band")  # fmt: skip
    s.figure(plotting.plot_decision(ev.decision_curve, model.name, title="Decision curve (external validation)"),
             "external decision curve with a bootstrap 95% band")  # fmt: skip
    shown = ev.decision_curve[
        ev.decision_curve["threshold"].round(2).isin([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    ]
    s.table(
        shown.rename(columns={"lower": "95% band low", "upper": "95% band high"}),
        "Net benefit (external)",
        digits=3,
    )
    if ev.operating_point is not None:
        add_operating_point(s, ev.operating_point, model.name, "external")
    g = page.section("Performance by subgroup")
    groups = fs.table[["patient_id"] + (["arm"] if "arm" in fs.table else [])].merge(
        study.patients[[c for c in ("patient_id", "sex", "etiology") if c in study.patients]],
        on="patient_id",
    )
    sub = subgroup_performance(groups, y, p)
    g.paragraph(
        f"'too few' where a group has fewer than {MIN_PER_CLASS} responders or non-responders."
    )
    g.figure(figures.plot_subgroups(sub), "subgroup AUROCs")
    g.table(for_display(sub), digits=3)
    if recalibration is not None:
        r = page.section("Logistic recalibration")
        r.paragraph(f"logit(p_recalibrated) = {recalibration.intercept:.4f} + {recalibration.slope:.4f} x logit(p): "
                    f"intercept 95% CI {recalibration.intercept_ci[0]:.3f} to {recalibration.intercept_ci[1]:.3f}, "
                    f"slope {recalibration.slope_ci[0]:.3f} to {recalibration.slope_ci[1]:.3f} (Wald). "
                    "Registered as a new version of the same model; the ranking of patients, and so the "
                    "AUROC, is unchanged.")  # fmt: skip
    sections.add_paper_view(page, ctx)
    sections.add_model_card(page, ctx, extra={"model": f"{model.name} version {model.version}"},
                            validation_note=ss_note)  # fmt: skip
    return page.write(out_dir)


def _log(
    model, fs, y, ev, write_page, data: Path, recal, root, pages: Path | None, numbers: dict
) -> ValidationRun:
    """The validation's run: tags, metrics, features; the page written and logged inside it
    (``pages``: the folder of the default pages, where killed writes' leftovers are removed)."""
    import mlflow

    client = tracking.client(root)
    version = client.get_model_version(model.name, model.version)
    X = fs.table[model.feature_columns].astype(float)
    cohort = data.name
    dataset = features_dataset(X, y, f"{cohort}-features")
    page = None
    with tracking.using(root):
        name = f"validate v{model.version} on {cohort} ({dataset.digest})"
        with tracking.job_run(f"{model.name}-validation", name, root) as (run, _):
            run_id = run.info.run_id
            try:
                mlflow.set_tags({tracking.TAG_STAGE: "validate", "model_name": model.name,
                                 "model_version": model.version, "model_uri": f"models:/{model.name}/{model.version}",
                                 "cohort": cohort, "cohort.path": str(data), "cohort.digest": dataset.digest,
                                 "data.simulated": str(bool(fs.simulated)).lower()})  # fmt: skip
                log_features(dataset, "validation")
                mlflow.log_metrics(
                    numbers,
                    model_id=getattr(version, "model_id", None) or None,
                    dataset=dataset,
                )
                mlflow.log_dict({name: why for name, why in ev.problems.items()}, "problems.json")
                processes.checkpoint("validate:run")
                if pages is not None:
                    remove_report_leftovers(pages)
                page = write_page(run_id)
                tracking.log_files([page], "report")
                new_version, reused = None, False
                if recal is not None:
                    new_version, reused = _register_recalibrated(
                        model, recal, X, run_id, data, dataset.digest, ev.n
                    )
                    mlflow.set_tag("recalibrated_version", new_version)
            except BaseException:
                if page is not None:
                    _remove_page(page)
                raise
    client.set_model_version_tag(model.name, model.version, f"external_validation.{run_id}",
                                 f"cohort {cohort} ({data}; features digest {dataset.digest}): AUROC {ev.auroc.text()}")  # fmt: skip
    return ValidationRun(
        "", model.name, model.version, ev, page, run_id, recal, new_version, reused, cohort
    )


def _remove_page(page: Path) -> None:
    """A page whose run failed goes, with its validation.json (and its folder, when nothing
    else is in it)."""
    page.unlink(missing_ok=True)
    (page.parent / VALIDATION_JSON).unlink(missing_ok=True)
    try:
        page.parent.rmdir()
    except OSError:
        pass  # something else is in it (an earlier validation.json): kept


def _register_recalibrated(model, recal, X: pd.DataFrame, run_id: str, data: Path, digest: str,
                           n: int) -> tuple[str, bool]:  # fmt: skip
    """Log the recalibrated model (same model file, spec with the recalibration) and register it.

    Returns the version and whether it was registered before: the same version
    recalibrated on the same cohort (same features digest) is one version, not two.
    """
    client = tracking.client()
    for earlier in client.search_model_versions(f"name = '{model.name}'"):
        t = earlier.tags or {}
        if (t.get("recalibrates") == model.version and t.get(RECALIBRATION_DIGEST_TAG) == digest
                and unusable("", t) is None):  # fmt: skip
            return str(earlier.version), True
    cohort = data.name
    spec = dict(model.spec.raw)
    spec["recalibration"] = {"intercept": recal.intercept, "slope": recal.slope, "recalibrates_version": model.version,
                             "cohort": cohort, "n_patients": n, "validation_run": run_id}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        art = Path(tmp)
        model_file = art / Path(model.model_file).name
        shutil.copyfile(model.model_file, model_file)
        spec_path = write_spec(spec, art / "model_spec.json")
        info = log_pyfunc(FittedModel.load(spec, model_file), model_file, spec_path, X,
                          name="recalibrated_model", registered_model_name=model.name)  # fmt: skip
    version = str(info.registered_model_version)
    tags = {"recalibrates": model.version, "recalibration_intercept": f"{recal.intercept:.6f}",
            "recalibration_slope": f"{recal.slope:.6f}", "recalibration_cohort": cohort,
            "recalibration_cohort_path": str(data), RECALIBRATION_DIGEST_TAG: digest,
            "validation_run": run_id, "model": model.spec.model_name}  # fmt: skip
    for k, v in tags.items():
        client.set_model_version_tag(model.name, version, k, v)
    client.update_model_version(model.name, version, description=(
        f"Version {model.version} recalibrated on cohort {cohort} (n={n}): logit(p') = "
        f"{recal.intercept:.4f} + {recal.slope:.4f} x logit(p)."))  # fmt: skip
    record_decision(client, model.name, version, f"not promoted: a recalibration of version {model.version} "
                    "(no alias; promote it by hand after review)")  # fmt: skip
    return version, False


def summary(run: ValidationRun) -> dict:
    """A JSON-safe summary of a validation (what the CLI prints)."""
    ev = run.result
    return json.loads(json.dumps({
        "model": f"models:/{run.name}/{run.version}", "n_patients": ev.n, "responders": ev.outcome.text(),
        "auroc": ev.auroc.text(), "page": str(run.page), "validation_json": str(run.page.parent / VALIDATION_JSON),
        "operating_point": ev.operating_point.text() if ev.operating_point is not None else None,
        "run_id": run.run_id, "recalibrated_version": run.recalibrated_version,
    }))  # fmt: skip
