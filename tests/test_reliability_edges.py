"""Nothing lost, leaked or half-done at the newer edges: validate, import, registry races,
kills, full disks (issue 22; the cases are listed in ``docs/reliability-edges.md``).

Kills are real SIGKILLs at named points (:func:`msc_response.processes.checkpoint`), the
race is two real ``train`` processes lined up at a barrier, the full disk a 1 MiB tmpfs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
from mlflow import MlflowClient
from tests.importers.test_fhir import bilirubin, infusion, patient, resource, write_ndjson
from typer.testing import CliRunner

import msc_response
from conftest import private_store
from msc_response import MscResponseWarning, tracking
from msc_response.cli import app
from msc_response.errors import ConfigError

runner = CliRunner()
SRC = Path(msc_response.__file__).resolve().parents[1]  # subprocesses run the code under test
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NAME = "edge"
MODEL = {"candidates": ["logistic_l2"], "repeats": 1, "bootstrap": 20}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def artifacts(run_id: str, path: str = "") -> list[str]:
    """Every artifact of a run (files, with their paths), depth first."""
    client, out = MlflowClient(), []
    for f in client.list_artifacts(run_id, path):
        out += artifacts(run_id, f.path) if f.is_dir else [f.path]
    return sorted(out)


def cli(args: list[str], cwd: Path, **env) -> subprocess.CompletedProcess:
    """``msc-response ARGS`` in a real process (the store of the environment).

    Its output goes to files, not pipes: worker processes of a killed job (joblib's) may
    outlive it for a while, and would hold a pipe open.
    """
    environ = {**os.environ, "PYTHONPATH": str(SRC), "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
               **env}  # fmt: skip
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        done = subprocess.run([sys.executable, "-m", "msc_response.cli", *args], cwd=cwd, env=environ,
                              stdout=out, stderr=err, text=True, timeout=900)  # fmt: skip
        out.seek(0), err.seek(0)
        return subprocess.CompletedProcess(done.args, done.returncode, out.read(), err.read())


def write_config(path: Path, name: str, data: Path) -> Path:
    model = "".join(f"\n  {k}: {json.dumps(v)}" for k, v in MODEL.items())
    path.write_text(f"name: {name}\ndata: {data}\nmodel:{model}\n")
    return path


# ----------------------------------------------------------------------------------------
# folder outputs: validate --out and import --out follow the rule of every output


@pytest.fixture(autouse=True)
def own_store(tmp_path_factory, monkeypatch):
    """A store of the test's own unless a fixture set one (a command never touches another)."""
    if "edge-store" not in os.environ.get("MLFLOW_TRACKING_URI", ""):
        store = tmp_path_factory.mktemp("store")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")


def test_validate_out_refuses_a_file_name_a_foreign_folder_and_the_cohort_before_loading(tmp_path):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    (cohort / "patients.csv").write_text("patient_id\n001\n")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    (tmp_path / "page.html").write_text("<p>mine</p>")
    before = snapshot(tmp_path)
    cases = {"rep.html": "names a file", "page.html": "is a file", "mine": "is not empty and is not an "
             "earlier validation page", "cohort/sub": "inside the input", "cohort": "is the input"}  # fmt: skip
    for out, message in cases.items():
        result = runner.invoke(app, ["validate", "--model", "models:/none@champion", "--data", str(cohort),
                                     "--out", str(tmp_path / out)])  # fmt: skip
        assert result.exit_code == 2, (out, result.output)
        assert "--out:" in result.output and message in result.output, (out, result.output)
    assert snapshot(tmp_path) == before and not (tmp_path / "rep.html").exists()


def test_import_out_inside_the_source_is_refused(tmp_path):
    src = write_ndjson(tmp_path / "fhir", [patient(), infusion(), bilirubin("b1")])
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["import", str(src), "--from", "fhir", "--out", str(src / "sub")])
    assert result.exit_code == 2, result.output
    assert "inside the input" in result.output
    assert snapshot(tmp_path) == before and not (src / "sub").exists()


# ----------------------------------------------------------------------------------------
# FHIR: nothing read is dropped unsaid; no patient id on the console


@pytest.mark.parametrize(
    "entry", [{"items": [{"resource": {"resourceType": "Patient", "id": "x"}}]}, "oops"]
)
def test_a_bundle_whose_entry_is_not_a_list_stops_the_import_naming_the_file(tmp_path, entry):
    src = write_ndjson(tmp_path / "fhir", [patient(), infusion(), bilirubin("b1")])
    (src / "site-b.json").write_text(
        json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entry})
    )
    result = runner.invoke(
        app, ["import", str(src), "--from", "fhir", "--out", str(tmp_path / "study")]
    )
    assert result.exit_code == 2, result.output
    assert "site-b.json" in result.output and "'entry' is not a list" in result.output
    assert not (tmp_path / "study").exists()


def test_resources_not_understood_are_counted_by_file_and_reason(tmp_path):
    src = write_ndjson(tmp_path / "fhir", [patient(), infusion(), bilirubin("b1"),
                                           resource("Organization", "org")])  # fmt: skip
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"fullUrl": "urn:x"}, "text", {"resource": resource("Observation", "no-status")}]}  # fmt: skip
    (src / "broken.json").write_text(json.dumps(bundle))
    out = tmp_path / "study"
    result = runner.invoke(app, ["import", str(src), "--from", "fhir", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "import_report.json").read_text())
    assert report["not_understood"] == {
        "broken.json": {"Bundle entry without a resource object": 2, "invalid Observation": 1},
        "export.ndjson": {"resource type Organization not used": 1},
    }
    nothing = [p for p in report["problems"] if p["reason"] == "file with nothing usable"]
    assert [p["file"] for p in nothing] == ["broken.json"]


def test_the_import_console_names_files_and_rows_never_patients(tmp_path):
    secret = "Patient/SECRET-17"
    src = write_ndjson(tmp_path / "fhir", [patient(), infusion(), bilirubin("b1"),
                                           bilirubin("who", pid="SECRET-17"),
                                           patient("SECRET-9", birthDate="not a date")])  # fmt: skip
    result = runner.invoke(
        app, ["import", str(src), "--from", "fhir", "--out", str(tmp_path / "study")]
    )
    assert result.exit_code == 0, result.output
    assert "row problem: export.ndjson" in result.output
    assert "SECRET" not in result.output and secret not in result.output, result.output
    report = json.loads((tmp_path / "study" / "import_report.json").read_text())
    assert any("SECRET-17" in p["problem"] for p in report["problems"])  # the site's own file says


# ----------------------------------------------------------------------------------------
# full disk, read-only folders: exit 2, one clear line


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MiB tmpfs filled up (root only: mount), unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "full"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        with contextlib.suppress(OSError), open(mnt / "ballast", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _one_clear_line(result, path_part: str) -> None:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "No space left on device" in lines[0] and path_part in lines[0], lines[0]
    assert "bytes free there" in lines[0]


def test_a_full_disk_ends_scores_and_import_with_exit_2_and_one_line(full_disk, tmp_path):
    result = runner.invoke(
        app, ["scores", str(EXAMPLES / "visits.csv"), str(full_disk / "scored.csv")]
    )
    _one_clear_line(result, "scored.csv")
    src = write_ndjson(tmp_path / "fhir", [patient(), infusion(), bilirubin("b1")])
    result = runner.invoke(
        app, ["import", str(src), "--from", "fhir", "--out", str(full_disk / "study")]
    )
    _one_clear_line(result, f"{str(full_disk / 'study')!r}")  # the output, not a temporary in it
    assert sorted(p.name for p in full_disk.iterdir()) == ["ballast"]  # nothing left behind


def test_disk_errors_are_one_clear_error_others_are_not(tmp_path):
    from msc_response.io import disk_error, work_dir

    err = disk_error(OSError(30, "Read-only file system", "/mnt/ro/x.csv"))
    assert (
        isinstance(err, ConfigError) and "'/mnt/ro/x.csv'" in str(err) and "Read-only" in str(err)
    )
    assert disk_error(OSError(2, "No such file or directory", "x")) is None
    assert disk_error(ValueError("x")) is None
    # inside an output's work directory: said of the output; an input that cannot be read is
    # not a write error
    with pytest.raises(ConfigError, match="'.*out.csv': No space left on device"):
        with work_dir(tmp_path / "out.csv") as work:
            raise OSError(28, "No space left on device", str(work / "part-0"))
    with pytest.raises(PermissionError):
        with work_dir(tmp_path / "out.csv"):
            raise PermissionError(13, "Permission denied", str(tmp_path / "input.csv"))


# ----------------------------------------------------------------------------------------
# a registered model: validation records, recalibration, kills, the registry


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A model trained and registered on a SIMULATED trial (kept in memory for the report),
    and two SIMULATED cohorts in folders of the same name."""
    from msc_response.config import config_from_dict
    from msc_response.features import build_features
    from msc_response.modeling.fit import fit
    from msc_response.pipelines.report import publish_training_report
    from msc_response.registry.registration import log_and_register
    from msc_response.simulator import write_simulation

    root = tmp_path_factory.mktemp("edge-store")
    with private_store(root, chdir=True):
        write_simulation(root / "trial", design="trial", seed=21, h5ad_patients=0)
        for where, seed in (("a", 22), ("b", 23)):
            write_simulation(
                root / where / "cohort", design="trial", n_patients=300, seed=seed, h5ad_patients=0
            )
        config = config_from_dict({"name": NAME, "data": str(root / "trial"), "model": MODEL})
        with warnings.catch_warnings():  # Riley and calibration warnings: tested in test_train
            warnings.simplefilter("ignore", MscResponseWarning)
            features = build_features(config, root / "trial", labels=True)
            result = fit(config, features)
            summary = log_and_register(result, data_dir=root / "trial")
            publish_training_report(result, features, root / "trial", summary)
        yield {"root": root, "config": config, "summary": summary, "result": result, "features": features,
               "uri": summary["model_uri"]}  # fmt: skip


def test_training_logs_aggregates_only_and_files_one_by_one(setup):
    from msc_response.pipelines.report import publish_training_report, report_dir

    root, summary = setup["root"], setup["summary"]
    client = MlflowClient()
    children = client.search_runs([client.get_run(summary["run_id"]).info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{summary['run_id']}'")  # fmt: skip
    assert children
    for child in children:
        logged = artifacts(child.info.run_id)
        assert "validation/decision_curve.csv" in logged, logged
        assert not any("oof" in a for a in logged), logged  # patient-level rows stay out
    folder = report_dir(NAME, summary["run_id"])
    (folder / "notes.txt").write_text("a user's notes, not the product's")
    publish_training_report(setup["result"], setup["features"], root / "trial", summary)
    assert [a for a in artifacts(summary["run_id"]) if a.startswith("report/")] == [
        "report/index.html"
    ]
    assert client.get_run(summary["run_id"]).data.tags["msc_response.report"] == "logged"


def test_validate_logs_only_its_page_and_may_replace_only_an_earlier_page(setup, tmp_path):
    root = setup["root"]
    out = tmp_path / "page"
    args = [
        "validate",
        "--model",
        setup["uri"],
        "--data",
        str(root / "a" / "cohort"),
        "--out",
        str(out),
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, args)  # an earlier validation page: replaced
    assert again.exit_code == 0, again.output
    run_id = again.output.rsplit("MLflow run ", 1)[1].split()[0]
    assert [a for a in artifacts(run_id) if a.startswith("report/")] == ["report/index.html"]
    (out / "notes.txt").write_text("mine now")
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "not an earlier validation page" in refused.output


def test_two_cohorts_in_same_named_folders_are_two_records(setup):
    from msc_response.pipelines.validate import validate_registered_model

    root, summary = setup["root"], setup["summary"]
    runs = [
        validate_registered_model(setup["uri"], root / w / "cohort", n_boot=20) for w in ("a", "b")
    ]
    a, b = runs
    assert a.page != b.page and a.page.is_file() and b.page.is_file()
    assert a.page.parent.name == a.run_id and b.page.parent.name == b.run_id
    client = MlflowClient()
    tags = [client.get_run(r.run_id).data.tags for r in runs]
    assert [t["cohort"] for t in tags] == ["cohort", "cohort"]
    assert tags[0]["cohort.path"] == str(root / "a" / "cohort") and tags[1]["cohort.path"] == str(
        root / "b" / "cohort"
    )
    assert tags[0]["cohort.digest"] != tags[1]["cohort.digest"]
    version_tags = client.get_model_version(NAME, summary["version"]).tags
    assert (
        f"external_validation.{a.run_id}" in version_tags
        and f"external_validation.{b.run_id}" in version_tags
    )


def test_a_cohort_given_as_dot_gets_its_folders_name_and_the_default_page_never_goes_inside_it(
    setup, monkeypatch
):
    from msc_response.pipelines.validate import validate_registered_model

    cohort = setup["root"] / "a" / "cohort"
    monkeypatch.chdir(cohort)
    run = validate_registered_model(setup["uri"], ".", n_boot=20, root=setup["root"])
    assert run.cohort == "cohort"
    logged = MlflowClient().get_run(run.run_id)
    assert logged.data.tags["cohort"] == "cohort" and logged.info.run_name.startswith(
        "validate v1 on cohort ("
    )
    before = snapshot(cohort)
    with pytest.raises(
        ConfigError, match="inside the input"
    ):  # reports/ would be inside the cohort
        validate_registered_model(setup["uri"], ".", n_boot=20, root=cohort)
    assert snapshot(cohort) == before


@pytest.fixture(scope="module")
def recalibrated(setup):
    """The version ``validate --recalibrate`` registered for cohort a (run twice)."""
    from msc_response.pipelines.validate import validate_registered_model

    cohort = setup["root"] / "a" / "cohort"
    first = validate_registered_model(setup["uri"], cohort, recalibrate=True, n_boot=20)
    second = validate_registered_model(setup["uri"], cohort, recalibrate=True, n_boot=20)
    return first, second


def test_recalibrating_twice_on_one_cohort_registers_one_version(setup, recalibrated):
    first, second = recalibrated
    assert first.recalibrated_version == second.recalibrated_version
    assert not first.recalibration_reused and second.recalibration_reused
    versions = MlflowClient().search_model_versions(f"name = '{NAME}'")
    assert sum(v.tags.get("recalibrates") == setup["summary"]["version"] for v in versions) == 1


def test_load_model_loads_the_version_it_resolved_even_if_the_alias_moves(
    setup, recalibrated, monkeypatch
):
    import mlflow

    from msc_response.registry.load import load_model

    client = MlflowClient()
    original, moved_to = setup["summary"]["version"], recalibrated[0].recalibrated_version
    client.set_registered_model_alias(NAME, "race", original)
    download = mlflow.artifacts.download_artifacts

    def alias_moves_meanwhile(*args, **kwargs):  # what another process may do at this moment
        client.set_registered_model_alias(NAME, "race", moved_to)
        return download(*args, **kwargs)

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", alias_moves_meanwhile)
    model = load_model(f"models:/{NAME}@race")
    assert model.version == original
    assert "recalibration" not in model.spec.raw  # the files of the version it reports


def _version_runs(version: str) -> str:
    return MlflowClient().get_model_version(NAME, version).run_id


@pytest.mark.slow
@pytest.mark.parametrize("point", ["train:registered", "train:aliased"])
def test_a_train_killed_before_its_gate_decision_leaves_no_usable_version(setup, tmp_path, point):
    from msc_response.registry.registration import mark_incomplete_versions

    root, client = setup["root"], MlflowClient()
    before = dict(client.get_registered_model(NAME).aliases)
    config = write_config(tmp_path / "c.yaml", NAME, root / "trial")
    killed = cli(["train", "--config", str(config)], root, MSC_RESPONSE_KILL_AT=point)
    assert killed.returncode == -9, killed.stderr[-2000:]
    latest = max(client.search_model_versions(f"name = '{NAME}'"), key=lambda v: int(v.version))
    assert "champion_decision" not in latest.tags
    scored = cli(["score", "--model", f"models:/{NAME}/{latest.version}", "--data", str(root / "a" / "cohort"),
                  "--out", str(tmp_path / "s.csv"), "--jobs", "1"], root)  # fmt: skip
    assert scored.returncode == 2, scored.stderr[-2000:]
    assert "no recorded gate decision" in scored.stderr and not (tmp_path / "s.csv").exists()
    # what the next run of the experiment does first
    exp = client.get_experiment_by_name(NAME).experiment_id
    tracking.fail_abandoned_runs(exp)
    assert mark_incomplete_versions(NAME) == [str(latest.version)]
    assert "incomplete" in client.get_model_version(NAME, latest.version).tags
    assert dict(client.get_registered_model(NAME).aliases) == before  # put back where they were
    with pytest.raises(ConfigError, match="gate decision was recorded"):
        from msc_response.registry.load import load_model

        load_model(f"models:/{NAME}/{latest.version}")


@pytest.mark.slow
def test_the_workers_of_a_killed_train_end_with_it_and_release_its_pipes(setup, tmp_path):
    """Killed after validation (its two workers are alive then, idle), the training leaves no
    process holding its stdout and stderr: a caller reading them sees their end at once, not
    after the workers' idle timeout of 5 minutes (before the fix they lived that long)."""
    root = setup["root"]
    config = write_config(tmp_path / "c.yaml", NAME, root / "trial")
    environ = {**os.environ, "PYTHONPATH": str(SRC), "MSC_RESPONSE_KILL_AT": "train:registered"}
    proc = subprocess.Popen([sys.executable, "-m", "msc_response.cli", "train", "--config", str(config)],
                            cwd=root, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert proc.wait(timeout=900) == -9
        proc.communicate(timeout=60)  # end of both pipes: every process holding them has ended
    finally:
        proc.kill()


@pytest.mark.slow
def test_a_train_killed_while_writing_its_report_is_marked_and_its_leftovers_removed(
    setup, tmp_path
):
    from msc_response.pipelines.report import REPORT_TAG, publish_training_report, reports_root

    root, client = setup["root"], MlflowClient()
    config = write_config(tmp_path / "c.yaml", NAME, root / "trial")
    killed = cli(["train", "--config", str(config)], root, MSC_RESPONSE_KILL_AT="page:written")
    assert killed.returncode == -9, killed.stderr[-2000:]
    folder = reports_root() / NAME
    leftovers = sorted(folder.glob("*/.index.html.msc-tmp-*"))
    assert len(leftovers) == 1
    run_id = leftovers[0].parent.name
    assert client.get_run(run_id).data.tags[REPORT_TAG].startswith("pending")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MscResponseWarning)
        publish_training_report(
            setup["result"], setup["features"], root / "trial", setup["summary"]
        )
    assert list(folder.glob("*/.index.html.msc-tmp-*")) == []


@pytest.mark.slow
def test_a_killed_validate_run_is_ended_by_the_next_and_wrote_no_page(setup, tmp_path):
    from msc_response.pipelines.validate import validate_registered_model

    root, client = setup["root"], MlflowClient()
    killed = cli(["validate", "--model", setup["uri"], "--data", str(root / "b" / "cohort"), "--recalibrate"],
                 root, MSC_RESPONSE_KILL_AT="validate:run")  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    exp = client.get_experiment_by_name(f"{NAME}-validation").experiment_id
    (left,) = client.search_runs([exp], "attributes.status = 'RUNNING'")
    assert not (
        root / "reports" / NAME / "validation" / left.info.run_id
    ).exists()  # page after the run
    validate_registered_model(setup["uri"], root / "b" / "cohort", n_boot=20)
    assert client.get_run(left.info.run_id).info.status == "FAILED"


@pytest.mark.slow
def test_a_killed_scoring_run_is_ended_by_the_next_scoring(setup, tmp_path):
    root, client = setup["root"], MlflowClient()
    args = ["score", "--model", setup["uri"], "--data", str(root / "a" / "cohort"), "--jobs", "1"]
    killed = cli([*args, "--out", str(tmp_path / "k.csv")], root, MSC_RESPONSE_KILL_AT="score:run")
    assert killed.returncode == -9, killed.stderr[-2000:]
    exp = client.get_experiment_by_name(f"{NAME}-scoring").experiment_id
    (left,) = client.search_runs([exp], "attributes.status = 'RUNNING'")
    assert left.data.tags[tracking.TAG_PID].isdigit()
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "s.csv")])
    assert result.exit_code == 0, result.output
    assert client.get_run(left.info.run_id).info.status == "FAILED"


@pytest.mark.slow
def test_a_full_disk_ends_validate_with_exit_2_one_line_and_no_page(setup, full_disk):
    result = runner.invoke(app, ["validate", "--model", setup["uri"], "--data",
                                 str(setup["root"] / "a" / "cohort"), "--out", str(full_disk / "page")])  # fmt: skip
    _one_clear_line(result, "page")
    assert sorted(p.name for p in full_disk.iterdir()) == ["ballast"]


# ----------------------------------------------------------------------------------------
# two trainings promoted at once


#: Put in front of every ``train`` of the race (``sitecustomize``, imported at start-up): the
#: first time a process is about to set the ``champion`` alias it waits, up to
#: RACE_WAIT_S, for the other to be about to as well. Without a compare-and-set both get
#: there, each having compared with the champion they both read; with it, the first holds
#: the registry lock, the second cannot compare until the first has set its alias, and the
#: first goes on after the wait. MLflow's call is made as always (instrumented, not mocked).
RACE_WAIT_S = 90
RACE_HOOK = """
import os, time
from mlflow import MlflowClient
_set = MlflowClient.set_registered_model_alias
def _line_up(self, name, alias, version):
    folder = os.environ["RACE_BARRIER"]
    if alias == "champion" and not os.path.exists(os.path.join(folder, str(os.getpid()))):
        open(os.path.join(folder, str(os.getpid())), "w").close()
        deadline = time.monotonic() + float(os.environ["RACE_WAIT_S"])
        while len(os.listdir(folder)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    return _set(self, name, alias, version)
MlflowClient.set_registered_model_alias = _line_up
"""


@pytest.mark.slow
def test_two_trainings_at_once_each_compare_with_the_champion_they_replace(tmp_path):
    from msc_response.simulator import write_simulation

    cohort = tmp_path / "big"
    write_simulation(
        cohort, design="trial", n_patients=2400, seed=9000, fmt="parquet", h5ad_patients=0
    )
    (tmp_path / "mlruns").mkdir()
    store = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    config = write_config(tmp_path / "c.yaml", "race", cohort)
    (tmp_path / "barrier").mkdir()
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(RACE_HOOK)
    environ = {**os.environ, "PYTHONPATH": f"{tmp_path / 'hook'}{os.pathsep}{SRC}",
               "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MLFLOW_TRACKING_URI": store,
               "RACE_BARRIER": str(tmp_path / "barrier"), "RACE_WAIT_S": str(RACE_WAIT_S)}  # fmt: skip
    logs = [open(tmp_path / f"train{i}.log", "w+") for i in (1, 2)]  # files: see cli()
    procs = [subprocess.Popen([sys.executable, "-m", "msc_response.cli", "train", "--config", str(config),
                               "--summary", str(tmp_path / f"s{i}.json")], cwd=tmp_path, env=environ,
                              stdout=log, stderr=subprocess.STDOUT)
             for i, log in zip((1, 2), logs, strict=True)]  # fmt: skip
    for p, log in zip(procs, logs, strict=True):
        p.wait(timeout=900)
        log.seek(0)
        assert p.returncode == 0, log.read()[-3000:]
        log.close()
    assert len(os.listdir(tmp_path / "barrier")) == 2  # both were promoted
    summaries = [json.loads((tmp_path / f"s{i}.json").read_text()) for i in (1, 2)]
    assert all(s["gate_against_baseline"]["passed"] and not s["exploratory"] for s in summaries)
    first, second = sorted(summaries, key=lambda s: s["gate_against_champion"] is not None)
    assert first["gate_against_champion"] is None  # no champion when it was compared
    assert second["gate_against_champion"] is not None, "promoted without comparing with the first"
    assert second["gate_against_champion"]["reference"].startswith(f"champion v{first['version']} ")
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    assert str(client.get_registered_model("race").aliases["champion"]) == second["version"]


DATASET_RACE = """
import os, sys, time
import numpy as np, pandas as pd
import mlflow
from msc_response.registry.registration import features_dataset, log_features
barrier, me, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
mlflow.set_experiment("dataset-race")
for k in range(rounds):
    dataset = features_dataset(pd.DataFrame({"a": np.arange(50.0) + k}), np.zeros(50, int), f"d{k}")
    with mlflow.start_run():
        open(os.path.join(barrier, f"{me}-{k}"), "w").close()
        deadline = time.monotonic() + 60  # the other process may have died: do not wait forever
        while sum(f.endswith(f"-{k}") for f in os.listdir(barrier)) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        log_features(dataset, "training")
print("logged", rounds)
"""


@pytest.mark.slow
def test_two_runs_logging_the_same_features_at_once_both_succeed(tmp_path):
    """MLflow looks a dataset up, then inserts it: two runs of one experiment logging the same
    data at the same moment made one fail (UNIQUE constraint failed: datasets...), which ended a
    training in a traceback. Lined up at a barrier, the collision comes in the first round."""
    (tmp_path / "mlruns").mkdir()
    (tmp_path / "barrier").mkdir()
    store = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    subprocess.run([sys.executable, "-c", "import mlflow; mlflow.set_experiment('dataset-race')"],
                   env={**os.environ, "MLFLOW_TRACKING_URI": store}, check=True, timeout=120)  # fmt: skip
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "PYTHONPATH": str(SRC)}
    procs = [subprocess.Popen([sys.executable, "-c", DATASET_RACE, str(tmp_path / "barrier"), str(i), "10"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in (1, 2)]  # fmt: skip
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0 and "logged 10" in out, out[-2000:]
    client = MlflowClient(tracking_uri=store)
    runs = client.search_runs([client.get_experiment_by_name("dataset-race").experiment_id])
    assert len(runs) == 20 and all(len(r.inputs.dataset_inputs) == 1 for r in runs)
