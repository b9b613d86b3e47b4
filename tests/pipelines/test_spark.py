"""The Spark engine on Spark's own multi-process pseudo-cluster, against the local engine.

``local-cluster[2,1,1024]``: two executor JVMs, each with its own Python workers, so
nothing the executors need can come from the driver's memory or files by accident.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import private_store, statistical_warnings
from msc_response import io
from msc_response.cli import app
from msc_response.config import config_from_dict
from msc_response.errors import ConfigError, DataError
from msc_response.pipelines.score import job
from msc_response.pipelines.train import train
from msc_response.simulator import write_simulation as simulate

DEAD_PID = 2**22 + 12345  # above the default pid_max: no such process

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java 17"),
]
runner = CliRunner()
MASTER = "local-cluster[2,1,1024]"


@pytest.fixture(scope="module")
def spark():
    """One pseudo-cluster for the module (about 30 s to start); the jobs use it as it is."""
    from msc_response.pipelines.score.spark import spark_session

    old = os.environ.get("MSC_RESPONSE_SPARK_MASTER")
    os.environ["MSC_RESPONSE_SPARK_MASTER"] = MASTER
    session, created = spark_session()
    assert created and session.sparkContext.master == MASTER
    yield session
    session.stop()
    if old is None:
        os.environ.pop("MSC_RESPONSE_SPARK_MASTER")
    else:
        os.environ["MSC_RESPONSE_SPARK_MASTER"] = old


@pytest.fixture(scope="module")
def registered(tmp_path_factory, trial_dir):
    """A private store with one LightGBM model (explanations are TreeSHAP)."""
    root = tmp_path_factory.mktemp("spark-store")
    cfg = config_from_dict(
        {"name": "spark-test", "model": {"repeats": 2, "bootstrap": 10, "candidates": ["lightgbm"]}}
    )
    with private_store(root):
        with statistical_warnings("Riley"):  # a trial's size: exploratory
            summary = train(cfg, trial_dir)
        yield {"uri": f"models:/spark-test/{summary['version']}", "root": root}


def _with_bad_rows(study):
    """Bad rows of each kind in the Parquet tables (patients 11-18 and 21)."""
    labs = pd.read_parquet(study / "labs.parquet")
    patients = pd.read_parquet(study / "patients.parquet")

    def bilirubin(pid, **change):
        row = labs[(labs["patient_id"] == pid) & (labs["test"] == "bilirubin")].iloc[[0]]
        return row.assign(**change)

    extra = [
        bilirubin("SIM-0000011", value=1e6),  # implausible
        bilirubin("SIM-0000012", unit="furlong"),  # unknown unit
        bilirubin("SIM-0000011", patient_id="NOPE"),  # not in the patients table
        bilirubin("SIM-0000013", patient_id=" SIM-0000013"),  # padded: its patient is rejected
        bilirubin("SIM-0000014", patient_id="SIM-0000014\u00a0"),  # padded with a no-break space
        bilirubin("SIM-0000015", value=99.0),  # a conflicting duplicate
        bilirubin("SIM-0000016", day=400, value=1e6),  # outside every window: rejects nobody
        bilirubin("SIM-0000018", test="SPGRAV", unit=None, value=1.015),  # a test nobody reads
    ]
    labs = pd.concat([labs[labs["patient_id"] != "SIM-0000021"], *extra], ignore_index=True)
    patients.loc[patients["patient_id"] == "SIM-0000017", "sex"] = "X"
    labs.to_parquet(study / "labs.parquet", index=False)
    patients.to_parquet(study / "patients.parquet", index=False)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """10,000 SIMULATED screening patients in Parquet, with bad rows."""
    d = tmp_path_factory.mktemp("spark-study") / "study"
    simulate(d, design="screening", n_patients=10_000, seed=41, fmt="parquet", h5ad_patients=0)
    _with_bad_rows(d)
    return d


def _outputs(out):
    if out.suffix == ".csv":
        pred = pd.read_csv(out, dtype={"patient_id": str, "model_version": str})
    else:
        pred = pd.read_parquet(out)
    pred = pred.set_index("patient_id").sort_index()
    stem = out.stem
    rejected = pd.read_csv(out.with_name(f"{stem}.rejected.csv"), dtype=str, keep_default_na=False)
    problems = out.with_name(f"{stem}.problems.csv")
    problems = (
        pd.read_csv(problems, dtype=str, keep_default_na=False) if problems.exists() else None
    )
    summary = json.loads(out.with_name(f"{stem}.summary.json").read_text())
    return pred, rejected.sort_values("patient_id").reset_index(drop=True), problems, summary


def _same_rows(a: pd.DataFrame, b: pd.DataFrame):
    key = list(a.columns)
    for flag in ("in_window", "test_read"):  # True (pandas) and true (Spark) alike
        a = a.assign(**{flag: a[flag].str.lower()}) if flag in a else a
        b = b.assign(**{flag: b[flag].str.lower()}) if flag in b else b
    pd.testing.assert_frame_equal(
        a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    )


def _assert_same_scores(local, spark_):
    assert list(local.columns) == list(spark_.columns)
    assert local.index.equals(spark_.index)
    for c in local.columns:
        if local[c].dtype.kind == "f":
            np.testing.assert_allclose(spark_[c], local[c], rtol=0, atol=1e-9, err_msg=c)
        else:
            assert (local[c].astype(str) == spark_[c].astype(str)).all(), c


def test_executors_import_this_package(spark):
    import msc_response

    here = msc_response.__file__
    found = spark.sparkContext.parallelize(range(4), 4).map(
        lambda _: __import__("msc_response").__file__
    )
    assert set(found.collect()) == {here}


def test_spark_scores_as_the_local_engine(spark, registered, study, tmp_path):
    """Same patients, same rejected rows and reasons, same problems, same numbers to 1e-9."""
    kw = {"explain": 3, "regimens": "all", "log_to_mlflow": False}
    # the local engine writes CSV here: its Parquet output is corrupt when the input turns
    # out not to be grouped by patient (ChunkWriter restarts on the open file)
    job.score(registered["uri"], study, tmp_path / "local.csv", **kw)
    summary = job.score(
        registered["uri"], study, tmp_path / "spark.parquet", engine="spark",
        patients_per_chunk=1500, **kw,
    )  # fmt: skip
    local, rej_l, prob_l, sum_l = _outputs(tmp_path / "local.csv")
    spark_, rej_s, prob_s, sum_s = _outputs(tmp_path / "spark.parquet")
    _assert_same_scores(local, spark_)
    assert len(local) > 9_900 and {"contribution_3", "probability_under_ib_2_0e8_x3"} <= set(local)
    # the model's status travels with every prediction, from both engines (compared above)
    assert set(spark_["model_status"]) == {"exploratory"}
    assert spark_["model_trained_on_simulated_data"].astype(str).eq("True").all()
    pd.testing.assert_frame_equal(rej_l, rej_s)
    rejected = dict(zip(rej_s["patient_id"], rej_s["reason"], strict=True))
    assert rejected["SIM-0000011"].startswith("labs.parquet, row ")
    assert "bilirubin value 1000000.0 mg/dL is not plausible" in rejected["SIM-0000011"]
    assert "unknown unit 'furlong'" in rejected["SIM-0000012"]
    assert "leading or trailing spaces" in rejected["SIM-0000013"]
    assert "leading or trailing spaces" in rejected["SIM-0000014"]  # a no-break space
    assert "conflicting duplicate" in rejected["SIM-0000015"]
    assert "SIM-0000016" not in rejected  # its bad row lies outside every window
    assert "SIM-0000018" not in rejected  # its bad row is of a test the model does not read
    assert "column 'sex'" in rejected["SIM-0000017"]
    assert "no baseline measurement" in rejected["SIM-0000021"]
    _same_rows(prob_l, prob_s)
    assert "patient_id 'NOPE' is not in the patients table" in set(prob_s["message"])
    for key in ("counts", "rejected_by_reason", "rows_with_problems",
                "rows_with_problems_outside_windows", "rows_with_problems_in_tests_not_read",
                "input_sha256", "data_simulated",
                "model_status", "model_trained_on_simulated_data", "warning"):  # fmt: skip
        assert sum_s[key] == sum_l[key], key
    assert sum_s["rows_with_problems_in_tests_not_read"] == 1
    assert summary["engine"] == "spark" and summary["partitions"] >= 7
    assert summary["timings"]["predict_s"] > 0


def test_spark_writes_the_local_engines_benefit_columns_per_regimen(spark, registered, tmp_path):
    """``--benefit-model`` of a three-arm RCT: the executors add the same per-regimen
    predicted benefits and intervals as the local engine, to 1e-9."""
    from msc_response.simulator.rct import RctDesign, parse_regimen

    design = RctDesign(
        regimens=(parse_regimen("1.0e8x3"), parse_regimen("2.0e8x3")), ratio=(1, 1, 1)
    )
    simulate(
        tmp_path / "rct", design="rct", n_patients=240, seed=5, h5ad_patients=0, rct_design=design
    )
    config = tmp_path / "benefit.yaml"
    config.write_text(json.dumps({"name": "b", "data": str(tmp_path / "rct"), "benefit": {}}))
    saved = tmp_path / "benefit.json"
    fitted = runner.invoke(app, ["fit-benefit", "--config", str(config), "--out", str(saved),
                                 "--bootstrap", "20"])  # fmt: skip
    assert fitted.exit_code == 0, fitted.output
    assert "one per regimen: MSC 1.0e8 x3, MSC 2.0e8 x3" in " ".join(fitted.output.split())
    new = tmp_path / "new"
    simulate(new, design="rct", n_patients=300, seed=6, fmt="parquet", h5ad_patients=0,
             baseline_only=True)  # fmt: skip
    args = [
        "score",
        "--model",
        registered["uri"],
        "--data",
        str(new),
        "--benefit-model",
        str(saved),
    ]
    scored = runner.invoke(app, [*args, "--out", str(tmp_path / "local.csv"), "--jobs", "1"])
    assert scored.exit_code == 0, scored.output
    assert "an effect, not an association" in " ".join(scored.output.split())
    summary = job.score(registered["uri"], new, tmp_path / "spark.parquet", engine="spark",
                        patients_per_chunk=100, log_to_mlflow=False, benefit_model=saved)  # fmt: skip
    local, _, _, sum_l = _outputs(tmp_path / "local.csv")
    spark_, _, _, _ = _outputs(tmp_path / "spark.parquet")
    _assert_same_scores(local, spark_)
    assert len(spark_) > 250 and summary["partitions"] >= 3
    for s in ("msc_1_0e8_x3", "msc_2_0e8_x3"):
        assert {f"p_response_standard_care_vs_{s}", f"p_response_{s}", f"predicted_benefit_{s}",
                f"predicted_benefit_{s}_low", f"predicted_benefit_{s}_high"} <= set(spark_)  # fmt: skip
        assert spark_[f"predicted_benefit_{s}_high"].gt(spark_[f"predicted_benefit_{s}_low"]).all()
    assert "predicted_benefit" not in spark_  # the two-arm name only for a two-arm trial
    assert summary["benefit_model"] == sum_l["benefit_model"]
    assert summary["benefit_model"]["regimens"] == ["MSC 1.0e8 x3", "MSC 2.0e8 x3"]


def test_a_directory_of_parts_scores_as_the_single_file(spark, registered, study, tmp_path):
    """Parquet parts written by Spark: same scores as the single file; row numbers as local's."""
    parts = tmp_path / "parts"
    for table in ("patients", "labs", "cells"):
        spark.read.parquet(str(study / f"{table}.parquet")).repartition(3).write.parquet(
            str(parts / table)
        )
    shutil.copy(study / "simulation.json", parts)
    kw = {"explain": 3, "log_to_mlflow": False}
    job.score(registered["uri"], study, tmp_path / "single.parquet", engine="spark", **kw)
    job.score(registered["uri"], parts, tmp_path / "parts.parquet", engine="spark", **kw)
    job.score(registered["uri"], parts, tmp_path / "local.csv", **kw)
    single, rej_1, _, _ = _outputs(tmp_path / "single.parquet")
    from_parts, rej_p, prob_p, sum_p = _outputs(tmp_path / "parts.parquet")
    local, rej_l, prob_l, sum_l = _outputs(tmp_path / "local.csv")
    _assert_same_scores(single, from_parts)
    assert rej_1["patient_id"].tolist() == rej_p["patient_id"].tolist()
    assert rej_1["category"].tolist() == rej_p["category"].tolist()
    # the parts are in another row order: rows are numbered across the parts, as locally
    assert rej_p["reason"].str.startswith("labs/, row ").sum() >= 4
    pd.testing.assert_frame_equal(rej_l, rej_p)
    _same_rows(prob_l, prob_p)
    assert sum_p["input_sha256"] == sum_l["input_sha256"]


def _as_hash_parts(study, out, n_parts):
    """The study's tables (bad rows included) rewritten as hash parts by patient."""
    from msc_response.study.partitioning import PartWriter

    out.mkdir()
    for table in ("patients", "labs", "cells"):
        frame = pd.read_parquet(study / f"{table}.parquet")
        writer = PartWriter(out / table, n_parts)
        for k in range(0, len(frame), 7000):  # several chunks: parts appended to
            writer.write(frame.iloc[k : k + 7000])
        writer.close()
    shutil.copy(study / "simulation.json", out)
    return out


def test_hash_parts_are_scored_without_a_shuffle_as_the_local_engine(
    spark, registered, study, tmp_path
):
    """Parts read by the executors, cut into chunks by the same hash: the local engine's
    scores, rejected patients, problems and row numbers."""
    parts = _as_hash_parts(study, tmp_path / "parts", 3)
    kw = {"explain": 3, "regimens": "all", "log_to_mlflow": False}
    summary = job.score(registered["uri"], parts, tmp_path / "spark.parquet", engine="spark",
                        patients_per_chunk=1500, **kw)  # fmt: skip
    job.score(registered["uri"], parts, tmp_path / "local.csv", **kw)
    assert summary["grouping"] == "hash parts by patient, read by the executors"
    assert summary["partitions"] == 3
    spark_, rej_s, prob_s, sum_s = _outputs(tmp_path / "spark.parquet")
    local, rej_l, prob_l, sum_l = _outputs(tmp_path / "local.csv")
    _assert_same_scores(local, spark_)
    pd.testing.assert_frame_equal(rej_l, rej_s)
    assert rej_s["reason"].str.startswith("labs/, row ").sum() >= 4
    _same_rows(prob_l, prob_s)
    for key in ("counts", "rejected_by_reason", "rows_with_problems",
                "rows_with_problems_outside_windows", "rows_with_problems_in_tests_not_read",
                "input_sha256"):  # fmt: skip
        assert sum_s[key] == sum_l[key], key


def test_a_wrong_hash_part_declaration_exits_2_naming_the_file(spark, registered, study, tmp_path):
    """Part 0 of the labs holding part 1's rows (its footer still says part 0): nothing written."""
    import pyarrow.parquet as pq

    parts = _as_hash_parts(study, tmp_path / "parts", 3)
    first, second = parts / "labs" / "part-00000.parquet", parts / "labs" / "part-00001.parquet"
    declared = pq.read_schema(first).metadata
    rows = pq.read_table(second)
    pq.write_table(rows.replace_schema_metadata(declared), first)
    out = tmp_path / "out" / "p.parquet"
    result = runner.invoke(app, ["score", "--model", registered["uri"], "--data", str(parts),
                                 "--out", str(out), "--engine", "spark"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "labs/, row " in result.output and "column 'patient_id'" in result.output
    assert "part-00000.parquetdeclareshashpart0of3" in "".join(result.output.split())
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_csv_rows_are_numbered_across_splits(spark, registered, tmp_path):
    """A CSV read in many splits: problems name the same rows as the local engine's."""
    d = tmp_path / "csv"
    simulate(d, design="screening", n_patients=1500, seed=3, h5ad_patients=0)
    lines = (d / "labs.csv").read_text().splitlines()
    for k in (7, 40_000, len(lines) - 3):  # near the start, in a middle split, near the end
        fields = lines[k].split(",")
        fields[3] = "abc"
        lines[k] = ",".join(fields)
    lines[20_000] = " " + lines[20_000]  # a padded id
    (d / "labs.csv").write_text("\n".join(lines) + "\n")
    key = "spark.sql.files.maxPartitionBytes"
    old = spark.conf.get(key)
    spark.conf.set(key, str(256 * 1024))
    try:
        job.score(
            registered["uri"], d, tmp_path / "spark.parquet", engine="spark", log_to_mlflow=False
        )
        assert spark.read.csv(str(d / "labs.csv")).rdd.getNumPartitions() >= 5
    finally:
        spark.conf.set(key, old)
    job.score(registered["uri"], d, tmp_path / "local.csv", log_to_mlflow=False)
    spark_, rej_s, prob_s, _ = _outputs(tmp_path / "spark.parquet")
    local, rej_l, prob_l, _ = _outputs(tmp_path / "local.csv")
    _assert_same_scores(local, spark_)
    pd.testing.assert_frame_equal(rej_l, rej_s)
    _same_rows(prob_l, prob_s)
    assert sorted(prob_s["row"].astype(int)) == [7, 20_000, 40_000, len(lines) - 3]


def test_a_malformed_csv_row_stops_the_job(spark, registered, tmp_path):
    d = tmp_path / "csv"
    simulate(d, design="screening", n_patients=200, seed=3, h5ad_patients=0)
    with open(d / "labs.csv", "a") as f:
        f.write("SIM-0000003,0,albumin,38,g/L,surplus\n")
    row = sum(1 for _ in open(d / "labs.csv")) - 1
    out = tmp_path / "p.parquet"
    with pytest.raises(DataError, match=rf"labs.csv, row {row}: cannot parse"):
        job.score(registered["uri"], d, out, engine="spark", log_to_mlflow=False)
    assert list(tmp_path.iterdir()) == [d]


def test_structural_problems_exit_2_and_write_nothing(spark, registered, study, tmp_path):
    no_unit = tmp_path / "no-unit"
    shutil.copytree(study, no_unit)
    pd.read_parquet(study / "labs.parquet").drop(columns="unit").to_parquet(
        no_unit / "labs.parquet"
    )
    out = tmp_path / "out" / "p.parquet"
    result = runner.invoke(app, ["score", "--model", registered["uri"], "--data", str(no_unit),
                                 "--out", str(out), "--engine", "spark"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "labs.parquet, column 'unit': required column is missing" in result.output

    twice = tmp_path / "twice"  # found by an executor: the duplicate's rows meet there
    shutil.copytree(study, twice)
    patients = pd.read_parquet(study / "patients.parquet")
    patients.loc[9_000, "patient_id"] = "SIM-0000005"
    patients.to_parquet(twice / "patients.parquet")
    with pytest.raises(DataError, match=r"patients.parquet, row 9001, column 'patient_id': "
                                        r"duplicate patient_id 'SIM-0000005'"):  # fmt: skip
        job.score(registered["uri"], twice, out, engine="spark", log_to_mlflow=False)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_strict_stops_and_keeps_the_previous_output(spark, registered, study, tmp_path):
    out = tmp_path / "p.csv"
    job.score(registered["uri"], study, out, engine="spark", log_to_mlflow=False)
    before = sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir())
    assert [name for name, _ in before] == [
        "p.csv", "p.problems.csv", "p.rejected.csv", "p.summary.json",
    ]  # fmt: skip
    with pytest.raises(DataError, match="is not plausible") as err:
        job.score(registered["uri"], study, out, engine="spark", strict=True, log_to_mlflow=False)
    assert "labs.parquet, row " in str(err.value) and "column 'sex'" in str(err.value)
    assert sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("name", ["preds", "preds.v2"])
def test_a_directory_out_is_a_parquet_dataset(spark, registered, study, tmp_path, name):
    """A name without a file extension is a dataset directory; its sidecars keep the whole
    name (``preds.v2.summary.json``), and the command line says so."""
    out = tmp_path / name
    killed = tmp_path / f".{name}.{io.WORK_MARK}-{DEAD_PID}-123-abc"  # the stage of a killed job
    (killed / "0").mkdir(parents=True)
    args = ["score", "--model", registered["uri"], "--data", str(study), "--out", str(out),
            "--engine", "spark", "--explain", "2"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert not killed.exists()
    assert out.is_dir() and len(list(out.glob("part-*.parquet"))) > 1
    printed = "".join(result.output.split())  # the console folds a long path anywhere
    assert f"runsummary->{tmp_path / name}.summary.json" in printed
    pred = pd.read_parquet(out)
    rejected = pd.concat(
        pd.read_csv(p) for p in (tmp_path / f"{name}.rejected.csv").glob("part-*.csv")
    )
    summary = json.loads((tmp_path / f"{name}.summary.json").read_text())
    assert summary["output_layout"] == "dataset" and summary["output"] == name
    assert summary["rejected_file"] == f"{name}.rejected.csv"
    assert summary["problems_file"] == f"{name}.problems.csv"
    assert (
        len(pred) == summary["counts"]["scored"] and len(rejected) == summary["counts"]["rejected"]
    )
    assert len(pred) + len(rejected) == 10_000
    assert (tmp_path / f"{name}.problems.csv").is_dir()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    before = sorted(p.name for p in out.iterdir())
    again = runner.invoke(app, args)  # a dataset directory is never replaced
    assert again.exit_code == 2 and "is an existing directory" in again.output
    assert sorted(p.name for p in out.iterdir()) == before


def test_only_spark_writes_a_dataset_directory(tmp_path):
    kw = {"explain": 0, "regimens": None, "patients_per_chunk": 10, "jobs": 1}
    assert job.check_options(tmp_path / "preds", engine="spark", **kw) == "dataset"
    assert job.check_options(tmp_path / "preds.v2", engine="spark", **kw) == "dataset"
    # one rule for the names beside an output, whatever the engine (issue 23)
    assert io.sidecar_name("preds.v2", io.SUMMARY) == "preds.v2.summary.json"
    assert io.sidecar_name("preds.parquet", io.SUMMARY) == "preds.summary.json"
    assert io.sidecar_name("preds.CSV", io.REJECTED) == "preds.rejected.csv"
    assert io.sidecar_as_written("hdfs://nn/x/preds.v2/", io.SUMMARY) == (
        "hdfs://nn/x/preds.v2.summary.json"
    )
    with pytest.raises(
        ConfigError,
        match=r"out: unsupported table extension .*\(or, with --engine spark, a directory\)",
    ):
        job.check_options(tmp_path / "preds", engine="local", **kw)
    with pytest.raises(ConfigError, match="out: unsupported table extension '.txt'"):
        job.check_options(tmp_path / "preds.txt", engine="spark", **kw)


def test_cells_from_h5ad_and_file_uris(spark, registered, tmp_path):
    """Cell fractions derived by the driver from cells.h5ad; paths given as file: URIs."""
    d = tmp_path / "h5"
    simulate(d, design="screening", n_patients=120, seed=3, h5ad_patients=4)
    (d / "cells.csv").unlink()  # MX1+ monocyte fractions come from the AnnData file only
    job.score(registered["uri"], d, tmp_path / "local.csv", explain=2, log_to_mlflow=False)
    summary = job.score(registered["uri"], f"file://{d}", f"file://{tmp_path}/spark.parquet",
                        engine="spark", explain=2, log_to_mlflow=False)  # fmt: skip
    local, rej_l, _, _ = _outputs(tmp_path / "local.csv")
    spark_, rej_s, _, sum_s = _outputs(tmp_path / "spark.parquet")
    _assert_same_scores(local, spark_)
    pd.testing.assert_frame_equal(rej_l, rej_s)
    assert summary["counts"]["patients_in_input"] == 120 and "cells.h5ad" in sum_s["input_sha256"]
    assert summary["data_simulated"] is True
