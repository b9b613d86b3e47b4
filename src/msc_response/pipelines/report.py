"""The report of a training run: written at the end of ``train`` and by ``msc-response report``.

:func:`write_training_report` writes the page from a :class:`TrainingResult` (study
sections, model sections, the paper's view of the cohort, the model card).
:func:`publish_training_report` writes it to ``reports/<experiment>/<run>/index.html``
and logs it to the run (the page holds no patient id: counts, summaries and plots only).
:func:`report_run` remakes the report of a logged run from the store and the study: the
run's config (stored with its model), the study it was trained on (checked against the
digest of the features the run logged), and the deterministic ``fit`` (seeds from the
config), so the page describes exactly that run.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from .. import progress, tracking
from ..errors import ConfigError, DataError, MscResponseWarning, Problem
from ..features import build_features
from ..io import remove_leftovers
from ..modeling.fit import fit
from ..modeling.models import screen_columns
from ..registry.load import load_model
from ..registry.registration import features_dataset
from ..reporting import model_sections
from ..reporting import study_sections as sections
from ..reporting.benefit_sections import add_benefit_section
from ..reporting.page import Page
from ..study import Study, load_study
from .benefit import benefit_summary

REPORTS = Path("reports")
ARTIFACT_DIR = "report"


def write_training_report(result, features, study: Study | str | Path, out_dir: str | Path, *,
                          registered: dict | None = None, benefit=None,
                          data_dir: str | Path | None = None) -> Path:  # fmt: skip
    """Write the report of ``result`` (a TrainingResult) to ``out_dir/index.html``; returns its path.

    ``study`` is the study the features came from, or its directory; ``data_dir``, the
    directory a given Study was read from (by default its patients file's folder);
    ``registered`` (model name, version, aliases, run) is shown in the model card when given;
    ``benefit`` (a BenefitValidation, randomised studies) adds the benefit section.
    """
    if data_dir is not None:
        data_dir = Path(data_dir)
    elif not isinstance(study, Study):
        data_dir = Path(study)
    elif study.files.get("patients") is not None and Path(study.files["patients"]).parent != Path(
        "."
    ):
        data_dir = Path(study.files["patients"]).parent
    if not isinstance(study, Study):
        study = load_study(data_dir, result.config.singlecell)
    config = result.config
    ctx = sections.StudyContext.build(config, study, features, data_dir)
    n_params = len(result.feature_columns)
    page = Page(f"Training report: {config.name}", simulated=result.simulated or study.simulated,
                subtitle=f"{len(result.y)} patients, {int(result.y.sum())} responders; primary model "
                         f"{config.model.primary}",
                config=config.to_dict(), feature_spec=features.feature_spec, n_jobs=config.model.n_jobs)  # fmt: skip
    for add in (sections.add_data_source, sections.add_eligibility, sections.add_outcome,
                sections.add_predictors, sections.add_assumptions, sections.add_flow, sections.add_table1):  # fmt: skip
        add(page, ctx)
    sections.add_missing(
        page, ctx, tuple(dict.fromkeys(mv.spec.kind for mv in result.models.values()))
    )
    sections.add_sample_size(page, ctx, n_params)
    model_sections.add_model_sections(page, result, ctx)
    if benefit is not None:
        add_benefit_section(page, benefit)
    sections.add_paper_view(page, ctx)
    card = {"primary model": config.model.primary, "kind": result.fitted.kind,
            "predictors used": len(result.fitted.feature_columns)}  # fmt: skip
    if registered:
        card.update(registered)
    sections.add_model_card(page, ctx, extra=card, n_parameters=n_params)
    return page.write(out_dir)


def reports_root(root: str | Path | None = None) -> Path:
    """Where reports go: ``reports/`` of the project whose local MLflow store is in use.

    With ``root`` (the project folder ``train`` was given), ``root/reports``; with a local
    SQLite store in a folder named ``mlruns`` (the project's layout, or a test's), beside
    that folder; otherwise (a tracking server, another store) ``reports/`` in the working
    directory.
    """
    if root is not None:
        return Path(root) / REPORTS
    uri = tracking.tracking_uri()
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if db.parent.name == "mlruns":
            return db.parent.parent / REPORTS
    return REPORTS


def report_dir(experiment: str, run_id: str, root: str | Path | None = None) -> Path:
    return reports_root(root) / experiment / run_id


def remove_report_leftovers(folder: Path) -> list[Path]:
    """Remove what killed page writes left in the report folders under ``folder``.

    Only the product's own work directories (``.index.html.msc-tmp-PID-START-*``) whose
    process has ended (:func:`msc_response.io.remove_leftovers`); a report folder left
    empty by that goes too. Returns what was removed.
    """
    removed = []
    if not folder.is_dir():
        return removed
    for run_folder in sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()):
        gone = remove_leftovers(run_folder / "index.html")
        if gone and not any(run_folder.iterdir()):
            run_folder.rmdir()
        removed += gone
    return removed


#: The training run's tag saying whether its report was logged ("pending" until it is).
REPORT_TAG = "msc_response.report"


def publish_training_report(
    result,
    features,
    study,
    summary: dict,
    *,
    root: str | Path | None = None,
    benefit=None,
    data_dir: str | Path | None = None,
) -> Path:
    """Write the report of a logged training to ``reports/<experiment>/<run>/`` and log it to the run.

    The run is tagged :data:`REPORT_TAG` ``pending`` first and ``logged`` once the page is
    in the store: a run whose report a kill cut short says so (``report --run`` remakes
    it). Leftovers of killed writes in the experiment's report folders are removed first.
    ``study`` and ``data_dir`` as in :func:`write_training_report`.
    """
    registered = {"registered model": f"{summary['registered_model']} version {summary['version']}",
                  "aliases": ", ".join(summary.get("aliases", [])),
                  "decision": summary.get("champion_decision", ""), "MLflow run": summary["run_id"]}  # fmt: skip
    out = report_dir(result.config.name, summary["run_id"], root)
    remove_report_leftovers(out.parent)
    client = tracking.client(root)
    client.set_tag(summary["run_id"], REPORT_TAG, "pending (the report was not written: remake it "
                   "with msc-response report --run)")  # fmt: skip
    path = write_training_report(
        result, features, study, out, registered=registered, benefit=benefit, data_dir=data_dir
    )
    tracking.log_files([path], ARTIFACT_DIR, run_id=summary["run_id"], root=root)
    client.set_tag(summary["run_id"], REPORT_TAG, "logged")
    return path


def _training_run(client, experiment: str, run_id: str | None):
    """The parent training run ``run_id`` of ``experiment``, or its latest one."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ConfigError(f"experiment: no experiment {experiment!r} in the tracking store")
    if run_id is not None:
        from mlflow.exceptions import MlflowException

        try:
            run = client.get_run(run_id)
        except MlflowException:
            raise ConfigError(f"run: no run {run_id!r} in the tracking store") from None
        if (
            run.info.experiment_id != exp.experiment_id
            or run.data.tags.get(tracking.TAG_STAGE) != "train"
        ):
            raise ConfigError(f"run: {run_id!r} is not a training run of experiment {experiment!r}")
        return run
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{tracking.TAG_STAGE}` = 'train'",
                              order_by=["attributes.start_time DESC"], max_results=1)  # fmt: skip
    if not runs:
        raise ConfigError(f"experiment: {experiment!r} has no training runs")
    return runs[0]


def report_run(experiment: str, run_id: str | None = None, *, data: str | Path | None = None,
               root: str | Path | None = None) -> Path:  # fmt: skip
    """Remake the report of a training run (the latest by default); returns the page's path.

    Raises
    ------
    ConfigError
        No such experiment, no training run, a run without a registered model.
    DataError
        The study is missing, or is not the data the run was trained on.
    """
    client = tracking.client(root)
    run = _training_run(client, experiment, run_id)
    tracking.fail_abandoned_runs(run.info.experiment_id, root)  # as every run of the experiment
    run_id = run.info.run_id
    versions = client.search_model_versions(f"run_id = '{run_id}'")
    if not versions:
        raise ConfigError(
            f"run: {run_id!r} of {experiment!r} has no registered model (it did not finish)"
        )
    mv = client.get_model_version(
        versions[0].name, versions[0].version
    )  # a search leaves out aliases
    model = load_model(f"models:/{mv.name}/{mv.version}")
    config = model.spec.config
    data_dir = Path(data if data is not None else config.data)
    with progress.task(f"building features from {data_dir}"):
        study = load_study(data_dir, config.singlecell)
        features = build_features(config, study, labels=True)
    _check_same_data(run, features, data_dir)  # before the refit, which takes a while
    with warnings.catch_warnings():  # said when the run was trained; the page lists them again
        warnings.simplefilter("ignore", MscResponseWarning)
        result = fit(config, features)  # simulated as the study says (its simulation.json)
    summary = {"registered_model": mv.name, "version": mv.version, "aliases": list(mv.aliases or []),
               "champion_decision": run.data.tags.get(tracking.TAG_CHAMPION_DECISION, ""), "run_id": run_id}  # fmt: skip
    benefit = benefit_summary(config, features, study.patients)[1] if config.benefit else None
    with progress.task("writing the report"):
        return publish_training_report(result, features, study, summary, root=root, benefit=benefit)


def _check_same_data(run, features, data_dir: Path) -> None:
    """The features rebuilt from ``data_dir`` are the ones the run logged (same digest)."""
    kept, _ = screen_columns(features.table[features.feature_columns].astype(float))
    X, y = features.table[kept].astype(float), features.table["response"].to_numpy(dtype=int)
    logged = {d.dataset.digest for d in run.inputs.dataset_inputs}
    digest = features_dataset(X, y).digest
    if logged and digest not in logged:
        raise DataError([Problem(data_dir.name, None, None,
                                 f"these are not the data run {run.info.run_id!r} was trained on (feature digest "
                                 f"{digest} is not the run's {sorted(logged)}); pass the run's study with --data")])  # fmt: skip
