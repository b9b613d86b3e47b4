"""The ``msc-response`` command line: one thin command per verb.

Bad input (:class:`~msc_response.errors.DataError`, a bad config) prints every problem
and exits with status 2; nothing is written.
"""

from __future__ import annotations

import functools
from pathlib import Path

import typer
from rich.console import Console

from .errors import ConfigError, DataError

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


def _bad_input_exits(func):
    """Map bad input to exit code 2 with every problem printed; other errors are bugs."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (DataError, ConfigError) as err:
            err_console.print(f"[bold red]error:[/] {err}", markup=True, highlight=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper


@app.command()
@_bad_input_exits
def scores(
    input: Path = typer.Argument(..., help="Per-visit table, CSV or Parquet."),
    output: Path = typer.Argument(..., help="Output table, CSV or Parquet (by extension)."),
) -> None:
    """Compute Child-Pugh, MELD, MELD-Na and MELD 3.0 for every row of a visit table."""
    from .features import with_scores
    from .io import table_format, write_table
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
    fs = build_features(cfg, labels=True)
    written = write_feature_set(fs, out)
    console.print(_flow_box(fs.flow), highlight=False)
    for path in written:
        console.print(f"wrote {path}", highlight=False)


@app.command()
@_bad_input_exits
def simulate(
    out: Path = typer.Option(..., "--out", help="Study directory to write (replaced atomically)."),
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
) -> None:
    """Write a SIMULATED study directory with known truth (truth.csv, simulation.json)."""
    from .simulate import simulate as run

    try:
        meta = run(out, design=design, n_patients=n_patients, seed=seed, fmt=fmt,
                   baseline_only=baseline_only, h5ad_patients=h5ad_patients)  # fmt: skip
    except ValueError as err:
        raise ConfigError(str(err)) from None
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
) -> None:
    """Validate candidates and baselines, refit the primary model, log to MLflow and register it."""
    import warnings

    from .config import load_config
    from .errors import MscResponseWarning
    from .modeling.train import train as run

    cfg = load_config(config).with_data(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MscResponseWarning)
        result = run(cfg, summary_path=summary)
    console.print(_flow_box(result["patient_flow"]), highlight=False)
    console.print(_train_table(result))
    console.print(_primary_lines(result), highlight=False)
    console.print(
        f"registered {result['model_uri']} aliases={result['aliases']}: {result['champion_decision']}",
        highlight=False,
    )
    for w in caught:
        if issubclass(w.category, MscResponseWarning):
            err_console.print(f"[yellow]warning:[/] {w.message}", highlight=False)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if summary is not None:
        console.print(f"summary -> {summary}", highlight=False)


def _ci(value, ci, digits: int = 3) -> str:
    if value is None:
        return "not estimable"
    lo, hi = ci
    fmt = f"{{:.{digits}f}}"
    return f"{fmt.format(value)} ({fmt.format(lo)} to {fmt.format(hi)})"


def _train_table(result: dict):
    """One row per model: its status and validated AUROC (names from modeling.metrics)."""
    from rich.table import Table

    from .modeling.metrics import APPARENT, OPTIMISM_CORRECTED, ROC_AUC, VALIDATED, reported

    title = result["experiment"] + (" (SIMULATED data)" if result["simulated_data"] else "")
    table = Table(title=title)
    for col in ("model", "status", "validated AUROC, .632+ (95% CI)",
                "optimism-corrected (Harrell)", "apparent (not a result)"):  # fmt: skip
        table.add_column(col)
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


@app.command()
@_bad_input_exits
def score(
    model: str = typer.Option(
        ..., "--model", help="Model URI, e.g. models:/child-pugh-day28@champion."
    ),
    data: Path = typer.Option(..., "--data", help="Study directory to score (labels not needed)."),
    out: Path = typer.Option(..., "--out", help="Predictions, .csv or .parquet."),
    explain: int = typer.Option(
        0, "--explain", help="Also write the top K SHAP contributions per patient."
    ),
    regimens: str | None = typer.Option(
        None, "--regimens", help="'all': probability under each trial regimen."
    ),
    engine: str = typer.Option(
        "local", "--engine", help="local, or spark (mlflow.pyfunc.spark_udf)."
    ),
    chunk: int | None = typer.Option(
        None, "--patients-per-chunk", help="Patients per chunk (default 50,000)."
    ),
    jobs: int = typer.Option(
        0, "--jobs", help="Worker processes (0: one per core; 1: score in this process)."
    ),
) -> None:
    """Score every patient of a study directory with a registered model, with explanations."""
    from .modeling.predict import score as run

    summary = run(model, data, out, explain=explain, regimens=regimens, engine=engine,
                  patients_per_part=chunk, jobs=jobs or None)  # fmt: skip
    c = summary["counts"]
    console.print(
        f"{summary['registered_model']} v{summary['version']}: scored {c['scored']} of {c['patients_in_input']} "
        f"patients, rejected {c['rejected']} -> {out}",
        highlight=False,
    )
    for reason, n in summary["rejected_by_reason"].items():
        console.print(f"  rejected ({reason}): {n}", highlight=False)
    if "note" in summary:
        console.print(f"[yellow]note:[/] {summary['note']}")
    console.print(f"run summary -> {out.with_name(out.stem + '.summary.json')}", highlight=False)


if __name__ == "__main__":  # python -m msc_response.cli
    app(prog_name="msc-response")
