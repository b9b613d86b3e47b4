"""The ``msc-response`` command line: one thin command per verb.

Bad input (:class:`~msc_response.errors.DataError`, a bad config) prints every problem
and exits with status 2; nothing is written.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import typer
from rich.console import Console

from .errors import ConfigError, DataError
from .study.problems import as_problems

app = typer.Typer(
    help="Predict response to mesenchymal stromal cell therapy in decompensated cirrhosis.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True, soft_wrap=True)
console = Console()

EXIT_BAD_INPUT = 2


@app.callback()
def _main() -> None:
    """Predict response to mesenchymal stromal cell therapy in decompensated cirrhosis."""


#: The command-line option of each library parameter: library errors name the parameter
#: (``patients_per_chunk: expected >= 1``), the command line says the option it was given as.
OPTION_OF = {
    "out": "--out", "design": "--design", "n_patients": "--n-patients", "seed": "--seed",
    "fmt": "--format", "h5ad_patients": "--h5ad-patients", "explain": "--explain",
    "regimens": "--regimens", "engine": "--engine", "patients_per_chunk": "--patients-per-chunk",
    "jobs": "--jobs", "model": "--model",
}  # fmt: skip


def _as_option(message: str) -> str:
    param, sep, rest = message.partition(": ")
    return f"{OPTION_OF[param]}: {rest}" if sep and param in OPTION_OF else message


def _bad_input_exits(func):
    """Map bad input to exit code 2 with the problems printed; other errors are bugs."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (DataError, ConfigError) as err:
            text = _as_option(str(err)) if isinstance(err, ConfigError) else str(err)
            err_console.print(f"[bold red]error:[/] {text}", markup=True, highlight=False)
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
            from .features import sidecar, write_problems

            path = write_problems(err.table, sidecar(out, ".problems.csv"))
            err_console.print(
                f"every problem ({err.n_problems}) is listed in {path}", highlight=False
            )
        raise


@app.command()
@_bad_input_exits
def scores(
    input: Path = typer.Argument(..., help="Per-visit table, CSV or Parquet."),
    output: Path = typer.Argument(..., help="Output table, CSV or Parquet (by extension)."),
) -> None:
    """Compute Child-Pugh, MELD, MELD-Na and MELD 3.0 for every row of a visit table."""
    from .io import table_format, write_table
    from .scores import with_scores
    from .visits import read_visit_table

    try:
        table_format(output)
    except ValueError as err:
        raise ConfigError(f"OUTPUT: {err}") from None
    raw, canonical = read_visit_table(input)
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
    return "\n".join(lines)


@app.command("build-features")
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
    from .config import load_config
    from .features import build_features, write_feature_set
    from .io import table_format

    try:
        table_format(out)
    except ValueError as err:
        raise ConfigError(f"--out: {err}") from None
    cfg = load_config(config).with_data(data)
    with _problem_list_beside(out):
        fs = build_features(
            cfg, labels=True, bad_rows="exclude" if exclude_bad_patients else "error"
        )
    written = write_feature_set(fs, out)
    console.print(_flow_box(fs.flow), highlight=False)
    for path in written:
        console.print(f"wrote {path}", highlight=False)


@app.command()
@_bad_input_exits
def simulate(
    out: Path = typer.Option(
        ..., "--out", help="Study directory to write: new, empty, or a previous simulator output."
    ),
    design: str = typer.Option(
        "trial", "--design", help="trial (the published arms) or screening."
    ),
    n_patients: int | None = typer.Option(
        None, "--n-patients", help="Patients (trial: scales all arms)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of every random draw."),
    fmt: str = typer.Option("csv", "--format", help="csv or parquet (parquet for large N)."),
    baseline_only: bool = typer.Option(
        False, "--baseline-only", help="Screening and baseline visits only."
    ),
    h5ad_patients: int = typer.Option(
        4, "--h5ad-patients", help="Patients also written to cells.h5ad."
    ),
    force: bool = typer.Option(
        False, "--force", help="Write into a directory holding other files (never replaced)."
    ),
) -> None:
    """Write a SIMULATED study directory with known truth (truth.csv, simulation.json)."""
    from .simulator import write_simulation

    meta = write_simulation(out, design=design, n_patients=n_patients, seed=seed, fmt=fmt,
                            baseline_only=baseline_only, h5ad_patients=h5ad_patients, force=force)  # fmt: skip
    console.print(
        f"SIMULATED {meta['design']} cohort: {meta['n_patients']} patients -> {out}",
        highlight=False,
    )
    if "oracle_roc_auc" in meta:
        console.print(
            f"oracle AUROC (true probabilities on realised labels): {meta['oracle_roc_auc']}",
            highlight=False,
        )


@app.command()
@_bad_input_exits
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
    """Validate candidates and baselines, refit the best, log to MLflow and register it."""
    from rich.table import Table

    from .config import load_config
    from .modeling.train import train as run

    cfg = load_config(config).with_data(data)
    with _problem_list_beside(summary):
        result = run(cfg, summary_path=summary, exclude_bad_patients=exclude_bad_patients)
    console.print(_flow_box(result["patient_flow"]), highlight=False)
    table = Table(
        title=f"{result['experiment']}" + (" (SIMULATED data)" if result["simulated_data"] else "")
    )
    for col in (
        "model",
        "role",
        "validated AUROC (95% CI)",
        "optimism-corrected",
        "apparent (not a result)",
    ):
        table.add_column(col)
    for name, m in result["models"].items():
        lo, hi = m["validated_roc_auc_ci"]
        mark = " *" if name == result["chosen_model"] else ""
        table.add_row(name + mark, m["role"], f"{m['validated_roc_auc']:.3f} ({lo:.3f}-{hi:.3f})",
                      f"{m['optimism_corrected_roc_auc']:.3f}", f"{m['apparent_roc_auc']:.3f}")  # fmt: skip
    console.print(table)
    console.print(
        f"n={result['n_patients']}, events={result['n_events']}, Riley minimum n={result['riley_min_n']}; "
        f"calibration slope {result['validated_calibration_slope']:.2f}, intercept "
        f"{result['validated_calibration_intercept']:.2f}, Brier {result['validated_brier']:.3f}",
        highlight=False,
    )
    console.print(
        f"registered {result['model_uri']} aliases={result['aliases']}: {result['champion_decision']}",
        highlight=False,
    )
    for w in result["warnings"]:
        err_console.print(f"[yellow]warning:[/] {w}")
    if summary is not None:
        console.print(f"summary -> {summary}", highlight=False)


@app.command()
@_bad_input_exits
def score(
    model: str = typer.Option(
        ..., "--model", help="Model URI, e.g. models:/child-pugh-day28@champion."
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
    regimens: str | None = typer.Option(
        None, "--regimens", help="'all': probability under each trial regimen."
    ),
    engine: str = typer.Option(
        "local", "--engine", help="local (worker processes), or spark (MSC_RESPONSE_SPARK_MASTER)."
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
) -> None:
    """Score every patient of a study directory with a registered model, with explanations."""
    from .pipelines.score import score as run

    with _problem_list_beside(Path(out)):
        summary = run(model, data, out, explain=explain, regimens=regimens, engine=engine,
                      patients_per_chunk=chunk, jobs=jobs or None, strict=strict)  # fmt: skip
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
                      f"{summary['rows_with_problems_outside_windows']} of them outside every window the model reads",
                      highlight=False)  # fmt: skip
    if "note" in summary:
        console.print(f"[yellow]note:[/] {summary['note']}")
    name = Path(out.rstrip("/")).name  # ``out`` may be an hdfs:// or s3a:// URI: kept as written
    where = out.rstrip("/")[: -len(name)] + Path(name).stem + ".summary.json"
    console.print(f"run summary -> {where}", highlight=False)


@app.command("import")
@_bad_input_exits
def import_cmd(
    source: Path = typer.Argument(
        ..., help="SDTM: folder of domain files. FHIR: folder or file of .json/.ndjson."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Study directory to write (new, empty, or an earlier import's)."
    ),
    from_: str = typer.Option(..., "--from", help="sdtm or fhir."),
    mapping: Path | None = typer.Option(
        None, "--mapping", help="Mapping file (YAML) added to the defaults."
    ),
    index_date: str | None = typer.Option(
        None, "--index-date", help="FHIR: count days from this date (YYYY-MM-DD) for every patient."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Any row problem is an error (nothing written)."
    ),
    fmt: str = typer.Option("csv", "--format", help="Tables as csv or parquet."),
) -> None:
    """Import a site's CDISC SDTM or FHIR R4 data into a study directory, with a mapping report."""
    from .importers import import_study

    report = import_study(source, out, fmt=from_, mapping=mapping, index_date=index_date,
                          strict=strict, table_format=fmt)  # fmt: skip
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
    shown = report["problems"][:10]
    for p in shown:
        err_console.print(
            f"[yellow]row problem:[/] {p['problem']}", highlight=False, soft_wrap=True
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


if __name__ == "__main__":  # python -m msc_response.cli
    app(prog_name="msc-response")
