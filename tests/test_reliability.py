"""Nothing lost, nothing left behind: output paths, work directories, killed jobs.

The "Reliability" table of docs/operations/reliability.md is built from these tests (and
those of the other modules it names). Kills are real signals to real ``msc-response`` processes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from typer.testing import CliRunner

import msc_response
from conftest import statistical_warnings, write_study
from msc_response import io, processes
from msc_response.cli import app
from msc_response.errors import ConfigError

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SRC = Path(msc_response.__file__).resolve().parents[1]  # subprocesses run the code under test
DEAD_PID = 2**22 + 12345  # above the default pid_max: no such process


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(autouse=True)
def own_store(tmp_path_factory, monkeypatch):
    """A store of the test's own: a command that gets as far as MLflow never touches another."""
    store = tmp_path_factory.mktemp("store")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")


def cli_env(**extra) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        **extra,
    }


# ----------------------------------------------------------------------------------------
# outputs never destroy inputs


def test_scores_refuses_to_write_over_its_input(tmp_path):
    src = tmp_path / "visits.csv"
    shutil.copy(EXAMPLES / "visits.csv", src)
    (tmp_path / "link.csv").hardlink_to(src)
    before = snapshot(tmp_path)
    for out in (src, tmp_path / "." / "visits.csv", tmp_path / "link.csv"):
        result = runner.invoke(app, ["scores", str(src), str(out)])
        assert result.exit_code == 2, result.output
        assert "OUTPUT:" in result.output and "would destroy the input" in result.output
    assert snapshot(tmp_path) == before


def test_build_features_refuses_an_out_that_is_or_would_become_a_study_table(tmp_path):
    study = write_study(tmp_path / "study")
    config = tmp_path / "c.yaml"
    config.write_text("name: t\n")
    before = snapshot(tmp_path)
    for out in ("labs.csv", "patients.csv", "labs.parquet", "cells/part-0.parquet"):
        result = runner.invoke(app, ["build-features", "--config", str(config), "--data", str(study),
                                     "--out", str(study / out)])  # fmt: skip
        assert result.exit_code == 2, (out, result.output)
        assert "--out:" in result.output and "would destroy the input" in result.output
    # a sidecar counts too: features.csv's flow would be written over the config
    flow_config = tmp_path / "features.flow.json"
    flow_config.write_text("name: t\n")
    result = runner.invoke(app, ["build-features", "--config", str(flow_config), "--data", str(study),
                                 "--out", str(tmp_path / "features.csv")])  # fmt: skip
    assert result.exit_code == 2 and "features.flow.json" in result.output, result.output
    flow_config.unlink()
    assert snapshot(tmp_path) == before


def test_score_refuses_an_out_over_the_study_before_loading_any_model(tmp_path):
    study = write_study(tmp_path / "study")
    before = snapshot(tmp_path)
    for out in ("patients.csv", "cells.csv", "labs.parquet"):
        result = runner.invoke(app, ["score", "--model", "models:/none@champion", "--data", str(study),
                                     "--out", str(study / out)])  # fmt: skip
        assert result.exit_code == 2, result.output
        assert "--out:" in result.output and "would destroy the input" in result.output
    assert snapshot(tmp_path) == before


def test_train_refuses_a_summary_over_its_config_or_study(tmp_path):
    study = write_study(tmp_path / "study")
    config = tmp_path / "c.yaml"
    config.write_text("name: t\n")
    before = snapshot(tmp_path)
    for summary in (config, study / "labs.csv"):
        result = runner.invoke(app, ["train", "--config", str(config), "--data", str(study),
                                     "--summary", str(summary)])  # fmt: skip
        assert result.exit_code == 2 and "--summary:" in result.output, result.output
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------------------
# unusable output paths: exit 2, the file named, nothing written


def test_out_that_is_an_existing_directory_exits_2_and_writes_nothing(tmp_path):
    study = write_study(tmp_path / "study")
    config = tmp_path / "c.yaml"
    config.write_text("name: t\n")
    taken = tmp_path / "out.csv"
    taken.mkdir()
    (taken / "mine.txt").write_text("mine")
    before = snapshot(tmp_path)
    for args in (["scores", str(EXAMPLES / "visits.csv"), str(taken)],
                 ["build-features", "--config", str(config), "--data", str(study), "--out", str(taken)],
                 ["score", "--model", "models:/none@champion", "--data", str(study), "--out", str(taken)]):  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert "is an existing directory" in result.output and "out.csv" in result.output
    assert snapshot(tmp_path) == before  # no orphan out.rejected.csv
    with pytest.raises(ConfigError, match="existing directory"):
        with io.atomic_path(taken):
            pass


def _read_only(folder: Path) -> list[str]:
    """Make ``folder`` read-only; returns the command prefix under which that holds.

    Root ignores permissions, so as root the command runs without CAP_DAC_OVERRIDE.
    """
    folder.chmod(0o555)
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--inh-caps=-dac_override", "--bounding-set=-dac_override", "--"]
    probe = subprocess.run([*prefix, "sh", "-c", f"touch '{folder}/probe'"], capture_output=True)
    if shutil.which("setpriv") is None or probe.returncode == 0:
        pytest.skip("cannot drop root's permission override here (setpriv)")
    return prefix


@pytest.mark.parametrize("verb", ["scores", "build-features", "score"])
def test_read_only_output_folder_exits_2_naming_it(tmp_path, verb):
    study = write_study(tmp_path / "study")
    config = tmp_path / "c.yaml"
    config.write_text("name: t\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    prefix = _read_only(locked)
    out = locked / "out.csv"
    args = {
        "scores": ["scores", str(EXAMPLES / "visits.csv"), str(out)],
        "build-features": ["build-features", "--config", str(config), "--data", str(study), "--out", str(out)],
        "score": ["score", "--model", "models:/none@champion", "--data", str(study), "--out", str(out)],
    }[verb]  # fmt: skip
    try:
        result = subprocess.run([*prefix, sys.executable, "-m", "msc_response.cli", *args],
                                capture_output=True, text=True, env=cli_env(), timeout=300)  # fmt: skip
    finally:
        locked.chmod(0o755)
    assert result.returncode == 2, result.stderr
    assert "cannot write in" in result.stderr and str(locked) in result.stderr
    assert "Traceback" not in result.stderr
    assert list(locked.iterdir()) == []


# ----------------------------------------------------------------------------------------
# the work directory: one place per output, gone when the job ends, cleaned after a kill


def test_atomic_path_keeps_the_previous_file_and_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "t.csv"
    out.write_text("previous\n")
    with pytest.raises(RuntimeError), io.atomic_path(out) as tmp:
        tmp.write_text("half")
        (tmp.parent / "partitions").mkdir()  # other temporaries of the same output
        raise RuntimeError("killed")
    assert out.read_text() == "previous\n" and [p.name for p in tmp_path.iterdir()] == ["t.csv"]
    with io.atomic_path(tmp_path / "new" / "deep" / "t.csv") as tmp:
        tmp.write_text("x")
        raise_in_block = False
    assert (tmp_path / "new/deep/t.csv").read_text() == "x" and not raise_in_block
    with pytest.raises(RuntimeError), io.atomic_path(tmp_path / "gone" / "deeper" / "t.csv"):
        raise RuntimeError("killed")
    assert not (tmp_path / "gone").exists()  # folders made for an output never written: removed


def test_leftovers_of_dead_processes_are_removed_and_those_of_live_ones_kept(tmp_path):
    out = tmp_path / "p.csv"
    pid, start = processes.identity()
    dead = tmp_path / f".p.csv.{io.WORK_MARK}-{DEAD_PID}-123-abc"
    reused = tmp_path / f".p.csv.{io.WORK_MARK}-{pid}-{start - 500}-abc"  # our pid, earlier process
    live = tmp_path / f".p.csv.{io.WORK_MARK}-{pid}-{start}-abc"
    legacy_dead = tmp_path / f".p.csv.simulate-{DEAD_PID}-abc"
    legacy_live = tmp_path / f".p.csv.import-{pid}-new-abc"
    other_output = tmp_path / f".q.csv.{io.WORK_MARK}-{DEAD_PID}-123-abc"
    for d in (dead, reused, live, legacy_dead, legacy_live, other_output):
        (d / "partitions").mkdir(parents=True)
        (d / "partitions" / "labs.parquet").write_text("patient rows")
    with io.atomic_path(out) as tmp:
        tmp.write_text("x\n")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["p.csv", live.name, legacy_live.name, other_output.name])


def test_process_identity_tells_a_reused_pid_and_a_zombie_from_a_running_process():
    pid, start = processes.identity()
    assert processes.is_running(pid, start) and processes.is_running(pid)
    assert not processes.is_running(pid, start - 100)  # the same pid, started a second earlier
    assert not processes.is_running(DEAD_PID)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child_id = processes.identity(child.pid)
    deadline = time.monotonic() + 30
    while (
        time.monotonic() < deadline and psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE
    ):
        time.sleep(0.01)
    assert not processes.is_running(*child_id)  # exited, not yet reaped
    child.wait()


def test_signals_raise_restores_the_previous_handlers_and_keeps_ignored_signals_ignored():
    def mine(signum, frame):
        pass

    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        signal.signal(signal.SIGTERM, mine)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with pytest.raises(processes.Terminated) as err, processes.signals_raise():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # nohup'd: stays ignored
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # interrupted by the signal
        assert err.value.code == 128 + signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        for s, h in before.items():
            signal.signal(s, h)


# ----------------------------------------------------------------------------------------
# empty and unreadable files on the scoring path (no model needed: they stop the job first)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("patients.csv", b"", "patients.csv: cannot read the file: Empty CSV file"),
        ("labs.csv", b"", "labs.csv: cannot read the file: Empty CSV file"),
        ("cells.csv", b"", "cells.csv: cannot read the file: Empty CSV file"),
        ("patients.csv", b"patient_id,sex,age_years\n", "patients.csv: no patients in the file"),
        ("labs.parquet", b"", "labs.parquet: cannot read labs.parquet"),
        ("labs.csv", b"patient_id,day,test,value,unit,day\n", "labs.csv, column 'day': the column appears more than once"),
    ],
)  # fmt: skip
def test_empty_or_broken_study_files_exit_2_naming_the_file(tmp_path, name, content, message):
    study = write_study(tmp_path / "study", cells=CELLS_TEXT)
    if name.endswith(".parquet"):
        (study / name.replace(".parquet", ".csv")).unlink()
    (study / name).write_bytes(content)
    out = tmp_path / "o" / "p.csv"
    result = runner.invoke(app, ["score", "--model", "models:/none@champion", "--data", str(study),
                                 "--out", str(out), "--jobs", "1"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "o").exists()


CELLS_TEXT = "patient_id,day,population,parent,fraction\nP1,0,MX1+ monocytes,monocytes,0.3\n"


def test_a_row_with_a_field_too_many_is_named_by_its_line_not_quoted(tmp_path):
    """pyarrow quotes the whole bad row in its message (an id and a patient's values): the
    console gets the line number instead."""
    study = write_study(tmp_path / "study", cells=CELLS_TEXT)
    with open(study / "labs.csv", "a") as f:
        f.write("\nSECRET-ID-42,0,albumin,3.1,g/dL,surplus\n")
    line = len((study / "labs.csv").read_text().splitlines())
    out = tmp_path / "o" / "p.csv"
    result = runner.invoke(app, ["score", "--model", "models:/none@champion", "--data", str(study),
                                 "--out", str(out), "--jobs", "1"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert (
        f"labs.csv: cannot read the file: CSV parse error: line {line} has 6 fields where the header has 5"
        in result.output
    )
    assert "SECRET-ID-42" not in result.output and "surplus" not in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("row", ["S,DM,002,F,50", "S,DM,002,F,50,YEARS,2024-01-01,surplus"])
def test_an_sdtm_csv_row_with_a_field_too_few_or_too_many_stops_the_import(tmp_path, row):
    """pandas pads a short row with empty cells and, reading the used columns only, drops a long
    row's surplus: a shifted or cut row would be imported as if it were whole."""
    src = tmp_path / "sdtm"
    src.mkdir()
    (src / "dm.csv").write_text("STUDYID,DOMAIN,USUBJID,SEX,AGE,AGEU,RFSTDTC\n"
                                f"S,DM,001,F,50,YEARS,2024-01-01\n\n{row}\n")  # fmt: skip
    (src / "lb.csv").write_text("STUDYID,DOMAIN,USUBJID,LBTESTCD,LBSTRESN,LBSTRESU,LBDY\n"
                                "S,LB,001,ALB,3.0,g/dL,1\n")  # fmt: skip
    (src / "ex.csv").write_text("STUDYID,DOMAIN,USUBJID,EXTRT,EXDOSE,EXDOSU,EXSTDY\n"
                                "S,EX,001,UC-MSC,1,10^8 cells,1\n")  # fmt: skip
    result = runner.invoke(
        app, ["import", str(src), "--from", "sdtm", "--out", str(tmp_path / "study")]
    )
    assert result.exit_code == 2, result.output
    fields = row.count(",") + 1
    assert (
        f"dm.csv: cannot read the file: line 4 has {fields} fields where the header has 7"
        in result.output
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sdtm"]


def test_a_repeated_column_in_an_sdtm_csv_domain_is_named_not_renamed(tmp_path):
    """pandas renames a repeated header (USUBJID, USUBJID.1): the importer reads it as written."""
    src = tmp_path / "sdtm"
    src.mkdir()
    (src / "dm.csv").write_text("STUDYID,DOMAIN,USUBJID,USUBJID,SEX,AGE,AGEU,RFSTDTC\n"
                                "S,DM,001,002,F,50,YEARS,2024-01-01\n")  # fmt: skip
    (src / "lb.csv").write_text("STUDYID,DOMAIN,USUBJID,LBTESTCD,LBSTRESN,LBSTRESU,LBDY\n"
                                "S,LB,001,ALB,3.0,g/dL,1\n")  # fmt: skip
    (src / "ex.csv").write_text("STUDYID,DOMAIN,USUBJID,EXTRT,EXDOSE,EXDOSU,EXSTDY\n"
                                "S,EX,001,UC-MSC,1,10^8 cells,1\n")  # fmt: skip
    out = tmp_path / "study"
    result = runner.invoke(app, ["import", str(src), "--from", "sdtm", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "dm.csv, column 'USUBJID': variable given twice" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sdtm"]


# ----------------------------------------------------------------------------------------
# killed scoring jobs (real SIGKILL and SIGTERM of real processes)


@pytest.fixture(scope="module")
def scoring_setup(tmp_path_factory):
    """A registered model and a 30,000-patient study whose labs are not grouped by patient
    (so the job writes hash partitions of patient rows to disk)."""
    import pyarrow.parquet as pq

    from msc_response import tracking
    from msc_response.config import config_from_dict
    from msc_response.pipelines.train import train
    from msc_response.simulator import write_simulation

    root = tmp_path_factory.mktemp("kills")
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    (root / "mlruns").mkdir()
    env_before = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        tracking.configure()
        trial = root / "trial"
        write_simulation(trial, seed=1, h5ad_patients=0)
        cfg = config_from_dict({"name": "kill-test", "model": {"repeats": 2, "bootstrap": 10,
                                                               "candidates": ["lightgbm"]}})  # fmt: skip
        with statistical_warnings("Riley"):
            version = train(cfg, trial)["version"]
    finally:
        if env_before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env_before
    study = root / "study"
    write_simulation(study, design="screening", n_patients=30_000, seed=3, fmt="parquet",
                     h5ad_patients=0)  # fmt: skip
    labs = pq.read_table(study / "labs.parquet")
    pq.write_table(labs.take(pd.Series(range(labs.num_rows)).sample(frac=1, random_state=0).to_numpy()),
                   study / "labs.parquet")  # fmt: skip
    return {"uri": uri, "model": f"models:/kill-test/{version}", "study": study}


def _score_cmd(setup, out: Path) -> list[str]:
    return [sys.executable, "-m", "msc_response.cli", "score", "--model", setup["model"],
            "--data", str(setup["study"]), "--out", str(out), "--jobs", "2",
            "--patients-per-chunk", "3000"]  # fmt: skip


OUTPUTS = {"p.parquet", "p.rejected.csv", "p.summary.json"}


def _temporaries(folder: Path) -> list[Path]:
    """Whatever the job has beside its outputs (with the fix: its work directory only)."""
    return [p for p in folder.iterdir() if p.name not in OUTPUTS]


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 240) -> bool:
    """Poll ``condition()`` until it holds or the process ends (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if condition():
            return True
        time.sleep(0.005)
    return False


def _gone(processes_: list[psutil.Process], timeout: float = 30) -> list[psutil.Process]:
    """The processes still running after up to ``timeout`` seconds (bounded poll)."""
    deadline = time.monotonic() + timeout
    alive = processes_
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.05)
    return alive


def _points(folder: Path, before: set[str]):
    """Moments to kill the job at, each a condition on what it has written so far
    (``before``: what was in the folder when it started)."""

    def new() -> list[Path]:
        return [t for t in _temporaries(folder) if t.name not in before]

    def files() -> list[Path]:
        found = []
        for t in new():
            found += [t] if t.is_file() else [f for f in t.rglob("*") if f.is_file()]
        return found

    def partitions() -> bool:
        return any(f.name == "labs.parquet" and f.parent.name.startswith("part-") for f in files())

    def chunks_written() -> bool:  # the output being written: not in a partition, not empty
        return any(not f.parent.name.startswith("part-") and f.stat().st_size > 0 for f in files())

    return {
        "while starting": lambda: True,
        "before reading": lambda: bool(new()),
        "partitions being written": partitions,
        "chunks being scored": chunks_written,
    }


@pytest.mark.slow
def test_a_killed_score_leaves_the_previous_output_no_temporaries_and_no_workers(
    scoring_setup, tmp_path
):
    out = tmp_path / "p.parquet"
    env = cli_env(MLFLOW_TRACKING_URI=scoring_setup["uri"])
    done = subprocess.run(_score_cmd(scoring_setup, out), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    previous = snapshot(tmp_path)
    assert set(previous) == {"p.parquet", "p.rejected.csv", "p.summary.json"}
    killed_at = []
    for point in _points(tmp_path, set()):
        condition = _points(tmp_path, {p.name for p in tmp_path.iterdir()})[point]
        proc = subprocess.Popen(_score_cmd(scoring_setup, out), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        if not _wait_for(condition, proc):
            proc.wait()
            pytest.fail(f"the job finished before it could be killed {point}")
        family = psutil.Process(proc.pid).children(recursive=True)  # workers, fork server, ...
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at.append((point, len(family)))
        assert _gone(family) == [], f"processes left running after a SIGKILL {point}"
        assert snapshot(tmp_path).items() >= previous.items()  # the previous output intact
    assert any(n >= 3 for _, n in killed_at), killed_at  # the workers had started at some point
    # the next run removes what the killed ones left, and leaves nothing of its own
    done = subprocess.run(_score_cmd(scoring_setup, out), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _temporaries(tmp_path) == []


@pytest.mark.slow
def test_sigterm_ends_score_with_143_and_removes_its_work_directory_at_once(
    scoring_setup, tmp_path
):
    out = tmp_path / "p.parquet"
    env = cli_env(MLFLOW_TRACKING_URI=scoring_setup["uri"])
    proc = subprocess.Popen(_score_cmd(scoring_setup, out), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert _wait_for(_points(tmp_path, set())["partitions being written"], proc), (
        "finished too soon"
    )
    family = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []  # no partitions, no temporary output, no sidecars
    assert _gone(family) == []


@pytest.mark.slow
def test_integer_parquet_ids_stay_whole_numbers_through_partitioned_scoring(
    scoring_setup, tmp_path
):
    """The hash-partition path with two workers: ids 1, 2, ... never become 1.0, 2.0."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from msc_response.simulator import write_simulation

    study = tmp_path / "study"
    write_simulation(study, design="screening", n_patients=300, seed=5, fmt="parquet",
                     h5ad_patients=0)  # fmt: skip
    for name in ("patients", "labs", "cells"):
        t = pq.read_table(study / f"{name}.parquet")
        ids = pa.array([int(i.removeprefix("SIM-")) for i in t.column("patient_id").to_pylist()])
        t = t.set_column(t.schema.get_field_index("patient_id"), "patient_id", ids)
        if name == "labs":  # out of patient order: the job must partition
            t = t.take(pa.array(range(t.num_rows - 1, -1, -1)))
        pq.write_table(t, study / f"{name}.parquet")
    out = tmp_path / "p.csv"
    cmd = _score_cmd({**scoring_setup, "study": study}, out)
    cmd[cmd.index("--patients-per-chunk") + 1] = "100"
    done = subprocess.run(cmd, env=cli_env(MLFLOW_TRACKING_URI=scoring_setup["uri"]),
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = pd.read_json(tmp_path / "p.summary.json", typ="series")
    assert summary["input_grouped_by_patient"] is False
    ids = pd.read_csv(out, dtype=str)["patient_id"]
    assert sorted(ids, key=int) == [str(i) for i in range(1, 301)]


@pytest.mark.slow
def test_an_empty_cells_h5ad_exits_2_naming_it(scoring_setup, tmp_path):
    """Read once the model's config says how (so after the model is loaded): still exit 2."""
    study = write_study(tmp_path / "study", cells=None)
    (study / "cells.h5ad").write_bytes(b"")
    out = tmp_path / "o" / "p.csv"
    done = subprocess.run(_score_cmd({**scoring_setup, "study": study}, out),
                          env=cli_env(MLFLOW_TRACKING_URI=scoring_setup["uri"]),
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "cells.h5ad: cannot read AnnData" in done.stderr
    assert not (tmp_path / "o").exists()
