"""The ``msc-response`` command line: one thin command per verb.

Bad input (:class:`~msc_response.errors.DataError`, a bad config) prints every problem
and exits with status 2; nothing is written.

Results go to stdout; warnings, notes and progress to stderr. Progress (Rich) is shown
when stderr is a terminal, or with ``--progress`` (then as plain lines when it is not a
terminal). MLflow's own output (its INFO lines, "Successfully registered model", the
"Downloading artifacts" bars) is silenced while a command runs and its warnings are kept;
nothing of this changes MLflow for a program that imports the package.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import time
from contextvars import ContextVar
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console

from . import progress, tracking
from .errors import ConfigError, DataError, MscResponseWarning
from .study.problems import as_problems

app = typer.Typer(
    help="Predict response to mesenchymal stromal cell therapy in decompensated cirrhosis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
err_console = Console(stderr=True, soft_wrap=True)
console = Console()

EXIT_BAD_INPUT = 2


# The fixed choices of the options, as enums so that ``--help`` lists them. Their values
# are the library's (tests/test_cli.py checks them against it): the command line imports
# none of the heavy modules that hold them.
Design = StrEnum("Design", ["trial", "screening", "rct"])
TableFormat = StrEnum("TableFormat", ["csv", "parquet"])
Engine = StrEnum("Engine", ["local", "spark"])
SourceFormat = StrEnum("SourceFormat", ["sdtm", "fhir"])
Regimens = StrEnum("Regimens", ["all"])


#: ``--progress`` (True), ``--no-progress`` (False) or neither (None: when stderr is a terminal)
_PROGRESS_WANTED: ContextVar[bool | None] = ContextVar("progress_wanted", default=None)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"msc-response {version('msc-response')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    progress: bool | None = typer.Option(
        None,
        "--progress/--no-progress",
        help="Show progress on stderr (default: only when stderr is a terminal).",
    ),
) -> None:
    """Predict response to mesenchymal stromal cell therapy in decompensated cirrhosis.

    Every cohort the package simulates is SIMULATED and says so. Run `msc-response VERB -h`
    for a verb's options and an example.
    """
    _PROGRESS_WANTED.set(progress)  # set at every invocation: nothing carries over


class _LiveProgress:
    """Progress as Rich bars on a terminal (cleared when done)."""

    def __init__(self, stream: Console):
        from rich import progress as rp

        self._progress = rp.Progress(rp.SpinnerColumn(), rp.TextColumn("{task.description}"), rp.BarColumn(),
                                  rp.MofNCompleteColumn(), rp.TimeElapsedColumn(), console=stream,
                                  transient=True)  # fmt: skip
        self._open = 0

    def start(self, description: str, total: int | None):
        if self._open == 0:
            self._progress.start()
        self._open += 1
        return self._progress.add_task(description, total=total)

    def advance(self, handle, steps: int) -> None:
        self._progress.advance(handle, steps)

    def finish(self, handle) -> None:
        self._progress.remove_task(handle)
        self._open -= 1
        if self._open == 0:
            self._progress.stop()


class _LineProgress:
    """Progress as one line per step and its end, where bars cannot be drawn (a log file)."""

    def __init__(self, stream: Console):
        self._stream = stream
        self._tasks: dict[int, list] = {}

    def start(self, description: str, total: int | None):
        handle = len(self._tasks)
        self._tasks[handle] = [description, total, 0, time.perf_counter()]
        self._stream.print(f"{description} ...", highlight=False)
        return handle

    def advance(self, handle, steps: int) -> None:
        self._tasks[handle][2] += steps

    def finish(self, handle) -> None:
        description, total, done, t0 = self._tasks[handle]
        parts = f"{done}/{total}, " if total is not None else ""
        self._stream.print(f"{description}: done ({parts}{time.perf_counter() - t0:.1f} s)",
                           highlight=False)  # fmt: skip


def _reporter():
    """The progress display the command line was asked for (None: none)."""
    wanted = _PROGRESS_WANTED.get()
    if wanted is False or (wanted is None and not err_console.is_terminal):
        return None
    return _LiveProgress(err_console) if err_console.is_terminal else _LineProgress(err_console)


#: MLflow's variable for its "Downloading artifacts" bars (read when it downloads).
_MLFLOW_BARS = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@contextlib.contextmanager
def _quiet_mlflow():
    """No MLflow bars, INFO lines or "Successfully registered" notes in the command's output.

    MLflow writes its log records and those notes through one stream of its own; that
    stream's ``write`` is a no-op for the command, and MLflow's warnings and errors go to
    stderr through a handler of this block. Not ``stream.enabled = False``: MLflow's own
    silencing block (entered when it imports some modules lazily, e.g. while logging a
    model) sets ``enabled = True`` on its way out, and the INFO lines came back (seen in
    ``train``). Everything is put back afterwards (the variable for the bars too: a user's
    own setting is kept).
    """
    from mlflow.utils import logging_utils

    previous_bars = os.environ.get(_MLFLOW_BARS)
    os.environ[_MLFLOW_BARS] = "false" if previous_bars is None else previous_bars
    stream = logging_utils.MLFLOW_LOGGING_STREAM
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("mlflow")
    # an instance attribute shadows the class's method until it is deleted
    stream.write = stream.flush = lambda *args: None
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        del stream.write, stream.flush
        if previous_bars is None:
            os.environ.pop(_MLFLOW_BARS, None)


def _uses_mlflow(func):
    """For a verb that reads or writes MLflow: its output quiet (:func:`_quiet_mlflow`)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with _quiet_mlflow():
            return func(*args, **kwargs)

    return wrapper


def _print_warning(text: str | None) -> None:
    """A warning every user of a result must see, on stderr."""
    if text:
        err_console.print(f"[bold red]WARNING:[/] {text}", highlight=False)


#: The command-line option of each library parameter: library errors name the parameter
#: (``patients_per_chunk: expected >= 1``), the command line says the option it was given as.
OPTION_OF = {
    "out": "--out", "design": "--design", "n_patients": "--n-patients", "seed": "--seed",
    "fmt": "--format", "h5ad_patients": "--h5ad-patients", "explain": "--explain",
    "regimens": "--regimens", "engine": "--engine", "patients_per_chunk": "--patients-per-chunk",
    "jobs": "--jobs", "model": "--model", "source_format": "--from", "table_format": "--format",
    "index_date": "--index-date", "index_dates": "--index-dates", "index_event": "--index-event", "mapping": "--mapping", "summary": "--summary", "encoding": "--encoding",
    "parts": "--parts", "mx1_role": "--mx1-role", "ratio": "--ratio", "regimen": "--regimen",
}  # fmt: skip


def _as_option(message: str) -> str:
    param, sep, rest = message.partition(": ")
    return f"{OPTION_OF[param]}: {rest}" if sep and param in OPTION_OF else message


def _bad_input_exits(func):
    """Map bad input to exit code 2 with the problems printed; other errors are bugs.

    SIGTERM and SIGINT raise inside the command, so its temporary files are removed on the
    way out (exit 143 after SIGTERM).
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        # deferred: each verb imports only what it runs, so the CLI starts fast
        from .processes import signals_raise

        try:
            with signals_raise(), progress.reporting(_reporter()):
                return func(*args, **kwargs)
        except (DataError, ConfigError) as err:
            text = _as_option(str(err)) if isinstance(err, ConfigError) else err.console_text()
            err_console.print(f"[bold red]error:[/] {text}", markup=True, highlight=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except OSError as err:  # a full disk, a read-only folder: the place, not a traceback
            from .io import disk_error  # deferred: io imports pandas, which the CLI loads late

            clear = disk_error(err)
            if clear is None:
                raise
            err_console.print(f"[bold red]error:[/] {clear}", markup=True, highlight=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except Exception as err:
            if "mlflow" not in sys.modules:  # nothing tracked: not a server's failure
                raise
            lost = tracking.refused_artifact(err) or tracking.lost_server(err)
            if lost is None:
                raise
            err_console.print(f"[bold red]error:[/] {lost}", markup=True, highlight=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper


@contextlib.contextmanager
def _problem_list_beside(out: Path | None):
    """On a DataError with more row problems than shown, write the full list beside ``out``.

    It is the only file written on such an error; without ``out`` every problem is printed.
    """
    try:
        yield
    except DataError as err:
        if err.table is not None and err.hidden:
            if out is None:
                raise DataError(as_problems(err.table)) from None
            # deferred: each verb imports only what it runs, so the CLI starts fast
            from .features import write_problems
            from .io import PROBLEMS, sidecar

            path = write_problems(err.table, sidecar(out, PROBLEMS))
            err_console.print(
                f"every problem ({err.n_problems}) is listed in {path}", highlight=False
            )
        raise


@app.command(epilog="Example: msc-response scores examples/visits.csv outputs/visits_scored.csv")
@_bad_input_exits
def scores(
    input: Path = typer.Argument(..., help="Per-visit table, CSV or Parquet."),
    output: Path = typer.Argument(..., help="Output table, CSV or Parquet (by extension)."),
    encoding: str | None = typer.Option(
        None, "--encoding", help="Text encoding of a CSV input, e.g. latin-1 (default UTF-8)."
    ),
) -> None:
    """Compute Child-Pugh, MELD, MELD-Na and MELD 3.0 for every row of a visit table."""
    # deferred: each verb imports only what it runs, so the CLI starts fast
    from .io import check_outputs, table_format, write_table
    from .scores import with_scores
    from .study.visits import read_visit_table

    try:
        table_format(output)
    except ValueError as err:
        raise ConfigError(f"OUTPUT: {err}") from None
    check_outputs([output], inputs=[input], option="OUTPUT")
    raw, canonical = read_visit_table(input, encoding)
    result = with_scores(raw, canonical)
    write_table(result, output)
    console.print(f"scored {len(result)} row(s) -> {output}")


def _flow_box(flow: dict) -> str:
    """The patient flow as text lines (also printed by ``train``)."""
    lines = [f"patients in input: {flow['patients_in_input']}"]
    for reason, count in flow["excluded"].items():
        lines.append(f"  excluded ({reason}): {count}")
    lines.append(f"included: {flow['included']}")
    if "responders" in flow:
        lines.append(
            f"  responders: {flow['responders']}, non-responders: {flow['non_responders']}"
        )
    if flow.get("rows_with_problems"):
        lines.append(f"rows with problems (not used): {sum(flow['rows_with_problems'].values())}, "
                     f"of which rejecting nobody: {flow['rows_with_problems_outside_windows']} outside "
                     f"every window, {flow['rows_with_problems_in_tests_not_read']} in tests the config "
                     "does not read")  # fmt: skip
    return "\n".join(lines)


@app.command("build-features", epilog="Example: msc-response build-features --config "
             "experiments/child_pugh_day28.yaml --out outputs/features.parquet")  # fmt: skip
@_bad_input_exits
def build_features_cmd(
    config: Path = typer.Option(..., "--config", help="Experiment config (YAML)."),
    out: Path = typer.Option(..., "--out", help="Feature table with labels (.parquet or .csv)."),
    data: Path | None = typer.Option(
        None, "--data", help="Study directory (overrides the config's `data`)."
    ),
    exclude_bad_patients: bool = typer.Option(
        False,
        "--exclude-bad-patients",
        help="Exclude patients with bad rows (listed with reasons) instead of stopping.",
    ),
) -> None:
    """Build the feature table with labels, the exclusion list and the patient flow."""
    # deferred: each verb imports only what it runs, so the CLI starts fast
    from .config import load_config
    from .features import build_features, check_feature_outputs, write_feature_set
    from .io import table_format

    try:
        table_format(out)
    except ValueError as err:
        raise ConfigError(f"--out: {err}") from None
    cfg = load_config(config).with_data(data)
    check_feature_outputs(out, config, cfg.data)
    with _problem_list_beside(out):
        fs = build_features(
            cfg, labels=True, bad_rows="exclude" if exclude_bad_patients else "error"
        )
    written = write_feature_set(fs, out)
    console.print(_flow_box(fs.flow), highlight=False)
    for path in written:
        console.print(f"wrote {path}", highlight=False)


@app.command(epilog="Example: msc-response simulate --design screening --n-patients 2000 --seed 7 "
                     "--out data/screening")  # fmt: skip
@_bad_input_exits
def simulate(
    out: Path = typer.Option(
        ..., "--out", help="Study directory to write: new, empty, or a previous simulator output."
    ),
    design: Design = typer.Option(
        Design.trial, "--design", help="trial (the published arms), screening, or rct (randomised)."
    ),
    n_patients: int | None = typer.Option(
        None, "--n-patients", help="Patients (trial: scales all arms)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of every random draw."),
    fmt: TableFormat = typer.Option(
        TableFormat.csv, "--format", help="Table format (parquet for large N)."
    ),
    baseline_only: bool = typer.Option(
        False, "--baseline-only", help="Screening and baseline visits only."
    ),
    h5ad_patients: int = typer.Option(
        4, "--h5ad-patients", help="Patients also written to cells.h5ad."
    ),
    force: bool = typer.Option(
        False, "--force", help="Write into a directory holding other files (never replaced)."
    ),
    parts: int = typer.Option(
        0,
        "--parts",
        help="Parquet: each table as N part files by a hash of patient_id (Spark then scores without a shuffle); 0: one file.",
    ),
    mx1_role: str | None = typer.Option(
        None, "--mx1-role", help="rct: MX1+ predictive, prognostic, both (default) or neither."
    ),
    ratio: str | None = typer.Option(
        None,
        "--ratio",
        help="rct: allocation, control first (default 1:1; 1:1:1 with two regimens).",
    ),
    regimen: list[str] | None = typer.Option(
        None, "--regimen", help="rct: an MSC regimen DOSExN, e.g. 1.0e8x3 (repeat for several)."
    ),
) -> None:
    """Write a SIMULATED study directory with known truth (truth.csv, simulation.json)."""
    # deferred: each verb imports only what it runs, so the CLI starts fast
    from .simulator import write_simulation
    from .simulator.rct import design_from_options

    rct_design = design_from_options(design.value, mx1_role, ratio, regimen)
    meta = write_simulation(out, design=design.value, n_patients=n_patients, seed=seed, fmt=fmt.value,
                            baseline_only=baseline_only, h5ad_patients=h5ad_patients, force=force,
                            parts=parts, rct_design=rct_design)  # fmt: skip
    console.print(
        f"SIMULATED {meta['design']} cohort: {meta['n_patients']} patients -> {out}",
        highlight=False,
    )
    if "oracle_roc_auc" in meta:
        oracle = meta["oracle_roc_auc"]
        shown = (
            ", ".join(f"{k} {v:.3f}" for k, v in oracle.items())
            if isinstance(oracle, dict)
            else oracle
        )
        console.print(
            f"oracle AUROC (true probabilities on realised labels): {shown}", highlight=False
        )


@app.command("score-benefit", epilog="Example: msc-response score-benefit --config experiments/benefit.yaml "
                                         "--data data/rct-fresh --out outputs/benefit.csv")  # fmt: skip
@_bad_input_exits
def score_benefit(
    config: Path = typer.Option(
        ..., "--config", help="Experiment config with a 'benefit' section."
    ),
    train_data: Path | None = typer.Option(
        None, "--train-data", help="The randomised study to fit on (default: the config's data)."
    ),
    data: Path = typer.Option(..., "--data", help="Study directory of the patients to score."),
    out: Path = typer.Option(..., "--out", help="CSV or Parquet file of predicted benefits."),
    bootstrap: int = typer.Option(100, "--bootstrap", help="Refits for the 95% intervals."),
) -> None:
    """Predicted benefit of MSC over standard care per patient (an effect: fitted on randomised data)."""
    # deferred: each verb imports only what it runs, so the CLI starts fast
    from .pipelines.benefit import score_benefit_job

    table, train_dir, primary = score_benefit_job(config, train_data, data, out, n_boot=bootstrap)
    console.print(f"predicted benefit of {len(table)} patients ({primary}, fitted on the randomised "
                  f"study {train_dir}) -> {out}", highlight=False)  # fmt: skip


@app.command("fit-benefit", epilog="Example: msc-response fit-benefit --config experiments/benefit.yaml "
                                       "--out models/benefit.json")  # fmt: skip
@_bad_input_exits
def fit_benefit(
    config: Path = typer.Option(
        ..., "--config", help="Experiment config with a 'benefit' section."
    ),
    train_data: Path | None = typer.Option(
        None, "--train-data", help="The randomised study to fit on (default: the config's data)."
    ),
    out: Path = typer.Option(..., "--out", help="JSON file of the fitted benefit model."),
    bootstrap: int = typer.Option(100, "--bootstrap", help="Refits kept for the 95% intervals."),
) -> None:
    """Fit the primary benefit model on a randomised study, for 'score --benefit-model'."""
    # deferred: each verb imports only what it runs, so the CLI starts fast
    from .pipelines.benefit import fit_benefit_job, n_refits

    doc = fit_benefit_job(config, train_data, out, n_boot=bootstrap)
    p = doc["provenance"]
    per = (
        f", one per regimen: {', '.join(r['name'] for r in doc['regimens'])}"
        if "regimens" in doc
        else ""
    )
    console.print(f"benefit model {doc['kind']} fitted on the randomised study {p['training_study']} "
                  f"({p['n_patients']} patients, {n_refits(doc)} refits{per}) -> {out}", highlight=False)  # fmt: skip


@app.command(epilog="Example: msc-response plan --design designs/phase2.yaml --out outputs/plan")
@_bad_input_exits
def plan(
    design: Path = typer.Option(..., "--design", help="Candidate designs (YAML; docs/benefit.md)."),
    out: Path = typer.Option(
        ..., "--out", help="Folder for plan.json and index.html (power curves)."
    ),
) -> None:
    """Power of candidate randomised designs by Monte Carlo (SIMULATED): all-comers vs MX1+-enriched."""
    # deferred: each verb imports only what it runs, so the CLI starts fast
    from .pipelines.plan import plan_job

    results, page = plan_job(design, out)
    for r in results:
        console.print(f"{r['design']}, {r['n_per_arm']} per arm: power {r['power_primary']['value']:.2f} "
                      f"(MCSE {r['power_primary']['mcse']:.2f}); MX1+ interaction "
                      f"{r['power_interaction']['value']:.2f} (MCSE {r['power_interaction']['mcse']:.2f})",
                      highlight=False)  # fmt: skip
    console.print(f"wrote {out / 'plan.json'} and {page}", highlight=False)


@app.command(epilog="Example: msc-response train --config experiments/child_pugh_day28.yaml "
                     "--summary outputs/train_child_pugh.json")  # fmt: skip
@_bad_input_exits
@_uses_mlflow
def train(
    config: Path = typer.Option(..., "--config", help="Experiment config (YAML)."),
    data: Path | None = typer.Option(
        None, "--data", help="Study directory (overrides the config's `data`)."
    ),
    summary: Path | None = typer.Option(None, "--summary", help="Write the summary JSON here."),
    exclude_bad_patients: bool = typer.Option(
        False,
        "--exclude-bad-patients",
        help="Exclude patients with bad rows (reasons in the patient flow) instead of stopping.",
    ),
) -> None:
    """Validate candidates and baselines, refit the primary model, log to MLflow and register it."""
    import warnings

    # deferred: each verb imports only what it runs, so the CLI starts fast
    from .config import load_config

    cfg = load_config(config).with_data(data)
    workers = _workers_started(cfg.model.n_jobs)
    # deferred: each verb imports only what it runs, so the CLI starts fast
    from .io import PROBLEMS, check_outputs, sidecar
    from .pipelines.train import train as run
    from .study.files import input_paths

    for _ in workers:  # they have imported what they fit with
        pass
    if summary is not None:
        check_outputs([summary, sidecar(summary, PROBLEMS)],
                      inputs=[*input_paths(cfg.data), config], option="summary")  # fmt: skip
    with _problem_list_beside(summary), warnings.catch_warnings():
        warnings.simplefilter("ignore", MscResponseWarning)  # in the result, printed below
        result = run(cfg, summary_path=summary, exclude_bad_patients=exclude_bad_patients)
    console.print(_flow_box(result["patient_flow"]), highlight=False)
    console.print(_train_table(result))
    console.print(_primary_lines(result), highlight=False)
    if "benefit" in result:  # randomised data: benefit over the control arm
        console.print(f"benefit ({result['benefit']['benefit_model']}): ATE {_ci(result['ate'], result['ate_ci'])}; "
                      f"c-for-benefit {_ci(result['c_for_benefit'], result['c_for_benefit_ci'])}; "
                      f"MX1+: {result['mx1_verdict']}", highlight=False)  # fmt: skip
        for regimen, r in result.get("ate_by_regimen", {}).items():  # several randomised regimens
            console.print(
                f"  {regimen} vs control: ATE {_ci(r['ate'], r['ate_ci'])}", highlight=False
            )
    console.print(
        f"registered {result['model_uri']} aliases={result['aliases']}: {result['champion_decision']}",
        highlight=False,
    )
    for run_id in result.get("abandoned_runs_ended", []):
        err_console.print(f"[yellow]note:[/] ended as FAILED run {run_id}, left RUNNING by a process "
                          "of this host that no longer runs")  # fmt: skip
    for message in result["warnings"]:
        err_console.print(f"[yellow]warning:[/] {message}", highlight=False)
    if summary is not None:
        console.print(f"summary -> {summary}", highlight=False)
    console.print(f"report -> {result['report']}", highlight=False, soft_wrap=True)


#: What the training's worker processes import before their first fit (the validation's
#: modules and LightGBM, which :func:`msc_response.modeling.models.make_estimator` defers).
_WORKER_MODULES = ("msc_response.modeling.fit", "lightgbm")


def _workers_started(n_jobs: int):
    """The training's ``n_jobs`` worker processes started now, each importing
    :data:`_WORKER_MODULES` while this process imports the pipeline, so that their start-up
    overlaps this one's instead of following it (on two free cores). The validation reuses
    them (``processes.parallel``: loky's reusable workers). Iterate over the result to wait
    for them; nothing to wait for with one job (the validation then runs in this process)."""
    if n_jobs == 1:
        return []
    import pkgutil

    from joblib import delayed

    from .processes import parallel  # deferred: the CLI starts without joblib

    # each task imports a module and returns its name (a module cannot travel back)
    tasks = [
        delayed(pkgutil.resolve_name)(f"{m}:__name__")
        for _ in range(n_jobs)
        for m in _WORKER_MODULES
    ]
    # "generator": the tasks are sent now and this process goes on
    return parallel(n_jobs, return_as="generator", pre_dispatch="all")(tasks)


def _ci(value, ci, digits: int = 3) -> str:
    if value is None:
        return "not estimable"
    lo, hi = ci
    fmt = f"{{:.{digits}f}}"
    if lo is None or hi is None:
        return f"{fmt.format(value)} (no interval)"
    return f"{fmt.format(value)} ({fmt.format(lo)} to {fmt.format(hi)})"


def _train_table(result: dict):
    """One row per model: its status and validated AUROC (names from modeling.metrics)."""
    from rich.table import Table

    # deferred: each verb imports only what it runs, so the CLI starts fast
    from .modeling.metrics import APPARENT, OPTIMISM_CORRECTED, ROC_AUC, VALIDATED, reported

    title = result["experiment"] + (" (SIMULATED data)" if result["simulated_data"] else "")
    table = Table(title=title)
    # fold, never cut: a narrow terminal wraps the names and numbers onto more lines
    for col in ("model", "status", "validated AUROC, .632+ (95% CI)",
                "optimism-corrected (Harrell)", "apparent (not a result)"):  # fmt: skip
        table.add_column(col, overflow="fold")
    for name, m in result["models"].items():
        corrected = m[reported(OPTIMISM_CORRECTED, ROC_AUC)]
        table.add_row(
            name,
            m["status"],
            _ci(m[reported(VALIDATED, ROC_AUC)], m[reported(VALIDATED, ROC_AUC, "ci")]),
            corrected if isinstance(corrected, str) else f"{corrected:.3f}",
            f"{m[reported(APPARENT, ROC_AUC)]:.3f}",
        )
    return table


def _primary_lines(result: dict) -> str:
    """The primary model's other metrics with their intervals, the gate, the sample size."""
    # deferred: each verb imports only what it runs, so the CLI starts fast
    from .modeling.metrics import PERFORMANCE, ROC_AUC, VALIDATED, label, net_benefit_name, reported

    primary = result["models"][result["primary_model"]]
    names = [m for m in PERFORMANCE if m != ROC_AUC]
    names += [net_benefit_name(t) for t in result["net_benefit_thresholds"]]
    lines = [f"primary model {result['primary_model']} (cross-validated, 95% CI):"]
    for name in names:
        lines.append(
            f"  {label(name)}: {_ci(primary[reported(VALIDATED, name)], primary[reported(VALIDATED, name, 'ci')])}"
        )
    if result["dropped_columns"]:
        dropped = ", ".join(f"{k} ({v})" for k, v in result["dropped_columns"].items())
        lines.append(f"dropped before modelling: {dropped}")
    gate = result.get("gate_against_baseline")
    if gate:
        lines.append(f"against the best baseline: {gate['rule']}")
    status = "EXPLORATORY (below Riley's minimum)" if result["exploratory"] else "adequate"
    lines.append(f"n={result['n_patients']}, events={result['n_events']}, Riley minimum n="
                 f"{result['riley_min_n']} for {result['riley_parameters']} parameters: {status}")  # fmt: skip
    return "\n".join(lines)


@app.command(epilog="Example: msc-response score --model models:/child-pugh-day28@exploratory "
                     "--data data/screening --out outputs/predictions.csv --explain 3")  # fmt: skip
@_bad_input_exits
@_uses_mlflow
def score(
    model: str = typer.Option(
        ...,
        "--model",
        help="models:/NAME@ALIAS (champion, candidate or exploratory) or models:/NAME/VERSION.",
    ),
    data: str = typer.Option(
        ...,
        "--data",
        help=(
            "Study directory to score (labels not needed); with --engine spark, any path Spark "
            "reads (hdfs://, s3a://)."
        ),
    ),
    out: str = typer.Option(
        ...,
        "--out",
        help=(
            "Predictions, .csv or .parquet; with --engine spark also a directory (a Parquet "
            "dataset) or an hdfs:// or s3a:// path."
        ),
    ),
    explain: int = typer.Option(
        0, "--explain", help="Also write the top K SHAP contributions per patient."
    ),
    regimens: Regimens | None = typer.Option(
        None, "--regimens", help="all: also the probability under each trial regimen."
    ),
    engine: Engine = typer.Option(
        Engine.local,
        "--engine",
        help="local (worker processes), or spark (MSC_RESPONSE_SPARK_MASTER).",
    ),
    chunk: int | None = typer.Option(
        None, "--patients-per-chunk", help="Patients per chunk (default 50,000)."
    ),
    jobs: int = typer.Option(
        0, "--jobs", help="Worker processes (0: one per core; 1: score in this process)."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Any bad row is an error (default: its patient is rejected)."
    ),
    benefit_model: Path | None = typer.Option(
        None,
        "--benefit-model",
        help="fit-benefit's JSON: also predicted_benefit per patient (per regimen) with its interval.",
    ),
) -> None:
    """Score every patient of a study directory with a registered model, with explanations."""
    # deferred: each verb imports only what it runs, so the CLI starts fast
    from .io import SUMMARY, sidecar_as_written
    from .pipelines.score.job import score as run

    with _problem_list_beside(Path(out)):
        summary = run(model, data, out, explain=explain, regimens=regimens and regimens.value,
                      engine=engine.value,
                      patients_per_chunk=chunk, jobs=jobs or None, strict=strict,
                      benefit_model=benefit_model)  # fmt: skip
    c = summary["counts"]
    console.print(
        f"{summary['registered_model']} v{summary['version']}: scored {c['scored']} of {c['patients_in_input']} "
        f"patients, rejected {c['rejected']} -> {out}",
        highlight=False,
    )
    for reason, n in summary["rejected_by_reason"].items():
        console.print(f"  rejected ({reason}): {n}", highlight=False)
    if summary["problems_file"]:
        n_rows = sum(summary["rows_with_problems"].values())
        console.print(f"  {n_rows} row(s) with problems (not used), listed in {summary['problems_file']}; "
                      f"{summary['rows_with_problems_outside_windows']} of them outside every window the model reads, "
                      f"{summary['rows_with_problems_in_tests_not_read']} in tests it does not read",
                      highlight=False)  # fmt: skip
    if "note" in summary:
        console.print(f"[yellow]note:[/] {summary['note']}")
    if "benefit_model" in summary:
        console.print(f"[yellow]note:[/] {summary['benefit_model']['note']}")
    where = sidecar_as_written(out, SUMMARY)  # ``out`` may be an hdfs:// or s3a:// URI
    console.print(f"run summary -> {where}", highlight=False)
    _print_warning(summary["warning"])  # last: what a user reads


@app.command(
    "import", epilog="Example: msc-response import path/to/sdtm --from sdtm --out data/site-a"
)
@_bad_input_exits
def import_cmd(
    source: Path = typer.Argument(
        ..., help="SDTM: folder of domain files. FHIR: folder or file of .json/.ndjson."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Study directory to write (new, empty, or an earlier import's)."
    ),
    from_: SourceFormat = typer.Option(..., "--from", help="The source's format."),
    mapping: Path | None = typer.Option(
        None, "--mapping", help="Mapping file (YAML) added to the defaults."
    ),
    index_date: str | None = typer.Option(
        None, "--index-date", help="FHIR: day 0 is this date (YYYY-MM-DD) for every patient."
    ),
    index_dates: Path | None = typer.Option(
        None, "--index-dates", help="FHIR: CSV of patient_id,index_date (day 0 per patient)."
    ),
    index_event: str | None = typer.Option(
        None,
        "--index-event",
        help="FHIR: day 0 is the first MedicationAdministration, MedicationRequest, Procedure or "
        "Encounter carrying SYSTEM|CODE.",
    ),
    encoding: str | None = typer.Option(
        None,
        "--encoding",
        help="Text encoding of .xpt, .sas7bdat and CSV files (default: declared or UTF-8, then Latin-1).",
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Any row problem is an error (nothing written)."
    ),
    fmt: TableFormat = typer.Option(
        TableFormat.csv, "--format", help="Format of the tables written."
    ),
    parts: int = typer.Option(
        0,
        "--parts",
        help="Parquet: each table as N part files by a hash of patient_id (Spark then scores without a shuffle); 0: one file.",
    ),
) -> None:
    """Import a site's CDISC SDTM or FHIR R4 data into a study directory, with a mapping report."""
    # deferred: each verb imports only what it runs, so the CLI starts fast
    from .importers import import_study

    report = import_study(source, out, source_format=from_.value, mapping=mapping, index_date=index_date,
                          index_dates=index_dates, index_event=index_event, encoding=encoding,
                          strict=strict, table_format=fmt.value, parts=parts)  # fmt: skip
    w = report["written"]
    console.print(
        f"imported {w['patients']} patients, {w['lab_rows']} lab rows, {w['cell_rows']} cell rows -> {out}",
        highlight=False,
        soft_wrap=True,
    )
    for reason, n in report["rows_not_imported"]["problems_by_reason"].items():
        console.print(f"  not imported ({reason}): {n}", highlight=False, soft_wrap=True)
    for rule, n in report["rows_not_imported"]["left_out_by_rule"].items():
        console.print(f"  left out ({rule}): {n}", highlight=False, soft_wrap=True)
    for test, why in report["absent_tests"].items():
        console.print(f"  absent: {test} ({why})", highlight=False, soft_wrap=True)
    for test, codes in report["absent_tests_look_alikes"].items():
        for c in codes:
            console.print(f"  {test} may be {c['source_code']!r} ({c['display']}, {c['rows']} rows): "
                          "name it in a mapping file", highlight=False, soft_wrap=True)  # fmt: skip
    for rule, n in report.get("days", {}).get("patients_by_rule", {}).items():
        console.print(f"  day 0 from {rule}: {n} patients", highlight=False, soft_wrap=True)
    for f in report.get("files", {}).values():
        if "encoding_note" in f:
            console.print(
                f"[yellow]note:[/] {f['file']}: {f['encoding_note']}",
                highlight=False,
                soft_wrap=True,
            )
    shown = report["problems"][:10]
    for p in shown:  # where and why, never the message: it may name the patient
        where = ", ".join([_file_for_console(p["file"]),
                           *([f"row {p['row']}"] if p.get("row") is not None else []),
                           *([f"column {p['column']!r}"] if p.get("column") else [])])  # fmt: skip
        err_console.print(
            f"[yellow]row problem:[/] {where}: {p['reason']}", highlight=False, soft_wrap=True
        )
    if len(report["problems"]) > len(shown):
        err_console.print(
            f"... {len(report['problems']) - len(shown)} more row problems",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"mapping report -> {out / 'import_report.md'} and import_report.json",
        highlight=False,
        soft_wrap=True,
    )


def _file_for_console(name: str) -> str:
    """A source file's name as the console may show it.

    A FHIR ``.json`` Bundle is often one patient's record, named after them (Synthea writes
    ``Given_Family_<Patient.id>.json``), so the console does not name it; the report does.
    """
    return "a .json Bundle (named in import_report.md)" if name.lower().endswith(".json") else name


@app.command(epilog="Example: msc-response explain --model models:/child-pugh-day28@exploratory "
                     "--data data/trial --patient SIM-0000001 --out outputs/patient.html")  # fmt: skip
@_bad_input_exits
@_uses_mlflow
def explain(
    model: str = typer.Option(
        ...,
        "--model",
        help="models:/NAME@ALIAS (champion, candidate or exploratory) or models:/NAME/VERSION.",
    ),
    data: Path = typer.Option(..., "--data", help="Study directory holding the patient."),
    patient: str = typer.Option(
        ..., "--patient", help="Patient id, exactly as written in patients."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Waterfall as .png, or an .html page with every contribution."
    ),
) -> None:
    """Explain one patient's prediction: a waterfall of the contributions, values in the site's units."""
    # deferred: each verb imports only what it runs, so the CLI starts fast
    from .pipelines.explain import explain_study_patient

    expl = explain_study_patient(model, data, patient, out)
    _print_warning(expl.warning)
    console.print(f"{expl.model}: probability {expl.probability:.3f} (log-odds {expl.logit:.3f}) -> {out}",
                  highlight=False)  # fmt: skip


@app.command(epilog="Example: msc-response report --experiment child-pugh-day28")
@_bad_input_exits
@_uses_mlflow
def report(
    experiment: str = typer.Option(..., "--experiment", help="Experiment (registered model) name."),
    run: str | None = typer.Option(None, "--run", help="Training run id (default: the latest)."),
    data: Path | None = typer.Option(
        None, "--data", help="The run's study directory (default: the one its config names)."
    ),
) -> None:
    """Write the report of a training run to reports/<experiment>/<run>/index.html (and log it)."""
    # deferred: each verb imports only what it runs, so the CLI starts fast
    from .pipelines.report import report_run

    page = report_run(experiment, run, data=data)
    console.print(f"report -> {page}", highlight=False, soft_wrap=True)


@app.command(epilog="Example: msc-response validate --model models:/child-pugh-day28/1 "
                     "--data data/external")  # fmt: skip
@_bad_input_exits
@_uses_mlflow
def validate(
    model: str = typer.Option(..., "--model", help="Model URI, e.g. models:/child-pugh-day28/3."),
    data: Path = typer.Option(..., "--data", help="A labelled study the model never saw."),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Folder of the page: new, empty or an earlier page (default reports/<model>/validation/<run id>).",
    ),
    recalibrate: bool = typer.Option(
        False,
        "--recalibrate",
        help="Also register a logistically recalibrated version of the model.",
    ),
) -> None:
    """External validation of a registered model on a labelled cohort: page, MLflow run, recalibration."""
    # deferred: each verb imports only what it runs, so the CLI starts fast
    from .pipelines.validate import validate_registered_model

    run = validate_registered_model(model, data, out=out, recalibrate=recalibrate)
    ev = run.result
    console.print(f"{run.name} v{run.version} on {run.cohort}: {ev.n} patients, responders {ev.outcome.text()}; "
                  f"AUROC {ev.auroc.text()}", highlight=False, soft_wrap=True)  # fmt: skip
    if run.recalibrated_version:
        r = run.recalibration
        again = (
            " (registered before for this cohort: not registered again)"
            if run.recalibration_reused
            else ""
        )
        console.print(f"recalibrated: logit(p') = {r.intercept:.3f} + {r.slope:.3f} logit(p) -> "
                      f"models:/{run.name}/{run.recalibrated_version}{again}", highlight=False, soft_wrap=True)  # fmt: skip
    console.print(f"report -> {run.page}; MLflow run {run.run_id}", highlight=False, soft_wrap=True)


if __name__ == "__main__":  # python -m msc_response.cli
    app(prog_name="msc-response")
