"""What a user types and reads: -h, --version, choices listed, an example per verb, progress."""

from __future__ import annotations

from importlib.metadata import version

import pytest
from typer.testing import CliRunner

from msc_response import progress
from msc_response.cli import Design, Engine, Regimens, SourceFormat, TableFormat, app

runner = CliRunner()


def _help(*args: str) -> str:
    result = runner.invoke(app, [*args, "-h"])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.replace("│", " ").split())


def test_version_and_short_help():
    result = runner.invoke(app, ["--version"])
    assert (
        result.exit_code == 0 and result.output.strip() == f"msc-response {version('msc-response')}"
    )
    assert "Usage:" in _help() and "train" in _help()


@pytest.mark.parametrize("verb", ["scores", "build-features", "simulate", "train", "score",
                                  "import", "explain", "report", "validate"])  # fmt: skip
def test_every_verb_has_an_example(verb):
    assert f"Example: msc-response {verb} " in _help(verb)


@pytest.mark.parametrize(("verb", "choices"), [
    ("simulate", "<trial|screening|rct>"), ("simulate", "<csv|parquet>"), ("score", "<local|spark>"),
    ("score", "<all>"), ("import", "<sdtm|fhir>"), ("import", "<csv|parquet>"),
])  # fmt: skip
def test_fixed_choices_are_listed(verb, choices):
    assert choices in _help(verb)


def test_the_choices_are_the_librarys():
    from msc_response.importers import FORMATS
    from msc_response.pipelines.score.job import ENGINES
    from msc_response.simulator.cohort import DESIGNS

    assert tuple(Engine) == ENGINES and tuple(SourceFormat) == FORMATS
    assert [*TableFormat] == ["csv", "parquet"] and tuple(Design) == DESIGNS
    assert [*Regimens] == ["all"]


def test_a_choice_not_offered_exits_2(tmp_path):
    result = runner.invoke(app, ["simulate", "--design", "cohort", "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and "'cohort' is not one of 'trial', 'screening'" in " ".join(
        result.output.replace("│", " ").split()
    )
    assert not (tmp_path / "s").exists()


class _Recorder:
    def __init__(self):
        self.events = []

    def start(self, description, total):
        self.events.append(("start", description, total))
        return description

    def advance(self, handle, steps):
        self.events.append(("advance", handle, steps))

    def finish(self, handle):
        self.events.append(("finish", handle))


def test_progress_goes_only_to_a_reporter_that_was_installed():
    with progress.task("nobody listens", 2) as advance:
        advance()  # no reporter: nothing happens, nothing fails
    rec = _Recorder()
    with progress.reporting(rec):
        with progress.task("chunks", 2) as advance:
            advance()
            advance()
    assert rec.events == [("start", "chunks", 2), ("advance", "chunks", 1),
                          ("advance", "chunks", 1), ("finish", "chunks")]  # fmt: skip
    with progress.task("after the block", None) as advance:
        advance()
    assert len(rec.events) == 4  # the reporter was removed with its block
    with pytest.raises(ValueError, match="total: expected a number >= 0 or None, got -1"):
        with progress.task("bad", -1):
            pass


def test_progress_lines_without_a_terminal_only_when_asked(tmp_path):
    import io

    from rich.console import Console

    from msc_response.cli import _LineProgress

    args = ["simulate", "--n-patients", "6", "--h5ad-patients", "0"]
    quiet = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert quiet.exit_code == 0 and quiet.stderr == ""  # tests run without a terminal
    buffer = io.StringIO()
    with progress.reporting(_LineProgress(Console(file=buffer, width=200))):
        with progress.task("scoring chunks", 3) as advance:
            advance(3)
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "scoring chunks ..." and lines[1].startswith("scoring chunks: done (3/3, ")


@pytest.mark.slow
def test_a_fresh_train_process_prints_nothing_of_mlflows_own(trial_dir, tmp_path):
    """In a new process MLflow imports some modules lazily while a model is logged, inside a
    silencing block of its own that turns its stream back on as it leaves: the INFO lines
    ("Validating input example ...") came back in `train` though the CLI silences them. An
    in-process test cannot see it (those modules are already imported by then)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "mlruns").mkdir()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: fresh-process\nmodel: {repeats: 2, bootstrap: 20}\n")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"}
    env.pop("MLFLOW_REGISTRY_URI", None)  # an earlier test's tracking.configure() may leave it
    cli = Path(sys.executable).with_name("msc-response")
    done = subprocess.run([str(cli), "train", "--config", str(cfg), "--data", str(trial_dir)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    for noise in (" INFO ", "Successfully registered", "Created version", "Validating input"):
        assert noise not in done.stdout + done.stderr, noise


def test_mlflow_stays_quiet_when_the_command_first_imports_its_pyfunc_module():
    """Importing ``mlflow.pyfunc`` (its ``mlflow.types.responses``) turns MLflow's event logs
    back on; in a fresh process a command that first imports it while quiet must stay quiet
    (a training printed MLflow's INFO lines once the import happened later than before)."""
    import subprocess
    import sys

    code = ("from msc_response.cli import _quiet_mlflow\n"
            "from mlflow.utils import logging_utils\n"
            "with _quiet_mlflow():\n"
            "    import mlflow.pyfunc\n"
            "    logging_utils.eprint('NOISE INSIDE')\n"
            "assert 'write' not in vars(logging_utils.MLFLOW_LOGGING_STREAM)\n"
            "logging_utils.eprint('AFTER')\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "NOISE INSIDE" not in done.stderr and "AFTER" in done.stderr


def test_a_data_error_on_the_console_names_file_row_and_column_but_no_patient_id(tmp_path):
    """The problem files keep the ids (the site's own files); a console line can reach a log."""
    from conftest import LABS, write_study

    study = write_study(tmp_path / "s", labs=LABS + "P9,0,bilirubin,1.0,mg/dL\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\n")
    result = runner.invoke(app, ["build-features", "--config", str(cfg), "--data", str(study),
                                 "--out", str(tmp_path / "f.parquet")])  # fmt: skip
    assert result.exit_code == 2
    assert "column 'patient_id': patient_id is not in the patients table" in result.output
    assert "P9" not in result.output


@pytest.mark.slow
def test_no_verb_prints_a_patient_id_on_the_console(trial_dir, tmp_path):
    """Console lines end up in CI logs and schedulers' mail: every verb a site runs on its data,
    with row problems to report (two patients' bad rows), says where without saying who."""
    import re

    import pandas as pd

    from conftest import copy_study, private_store, run_cli

    bad = "SIM-0000003,0,albumin,38,g/dL\nSIM-0000007,-7,inr,abc,ratio\n"
    data = copy_study(trial_dir, tmp_path / "s", labs_extra=bad)
    ids = pd.read_csv(data / "patients.csv", dtype=str)["patient_id"].tolist()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: console-ids\nmodel: {repeats: 2, bootstrap: 10, "
                   "candidates: [logistic_l2, lightgbm]}\n")  # fmt: skip
    out = tmp_path / "out"
    outputs = []
    with private_store(tmp_path):
        for args in (
            ["build-features", "--config", cfg, "--data", data, "--out", out / "f.parquet"],
            ["build-features", "--config", cfg, "--data", data, "--out", out / "f.parquet",
             "--exclude-bad-patients"],
            ["train", "--config", cfg, "--data", data, "--exclude-bad-patients"],
            ["score", "--model", "models:/console-ids/1", "--data", data, "--out",
             out / "p.csv", "--explain", "3", "--jobs", "1"],
            ["explain", "--model", "models:/console-ids/1", "--data", data,
             "--patient", ids[0], "--out", out / "w.png"],
            ["explain", "--model", "models:/console-ids/1", "--data", data,
             "--patient", "SIM-9999999", "--out", out / "x.png"],
            ["validate", "--model", "models:/console-ids/1", "--data", data, "--out", out / "v"],
            ["report", "--experiment", "console-ids"],
        ):  # fmt: skip
            result = run_cli(*args)
            assert result.exit_code in (0, 2), (args, result.output)
            outputs.append(result.output)
    console = "\n".join(outputs)
    assert "problem(s) in the input" in console  # the bad rows were reported
    leaked = sorted(set(re.findall(r"SIM-\d{7}", console)))
    assert leaked == [], leaked
