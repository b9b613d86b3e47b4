"""The MLflow store: created under a lock, explicit URIs checked, runs that end however they end.

Every test uses a real SQLite store in ``tmp_path`` (``MLFLOW_TRACKING_URI`` set by
monkeypatch) and real processes for the signals.
"""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils
from typer.testing import CliRunner

import msc_response
from conftest import write_study
from msc_response import processes, tracking
from msc_response.cli import app
from msc_response.config import config_from_dict
from msc_response.errors import ConfigError

runner = CliRunner()
SRC = Path(msc_response.__file__).resolve().parents[1]  # subprocesses run the code under test
DEAD_PID = 2**22 + 12345  # above the default pid_max: no such process


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh local store, named by MLFLOW_TRACKING_URI (MLflow's own setting cleared)."""
    (tmp_path / "mlruns").mkdir()
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return uri


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC)}


# ----------------------------------------------------------------------------------------
# the store: created once, under a lock


OPEN_AT_ONCE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import mlflow
    from msc_response import tracking
    go = Path(sys.argv[1])
    (go.parent / f"ready-{sys.argv[2]}").touch()
    while not go.exists():  # every process imported MLflow: now open the fresh store at once
        time.sleep(0.001)
    tracking.configure()
    exp = tracking.experiment_id("at-once")
    with mlflow.start_run(experiment_id=exp):
        mlflow.log_metric("m", 1.0)
    print("ok")
""")


@pytest.mark.slow
def test_runs_started_at_once_on_a_fresh_store_all_succeed(store, tmp_path):
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AT_ONCE, str(go), str(k)],
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for k in range(4)
    ]
    deadline = time.monotonic() + 300  # until every process has imported MLflow (bounded)
    while time.monotonic() < deadline and len(list(tmp_path.glob("ready-*"))) < len(procs):
        time.sleep(0.01)
    go.touch()
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0 and out.strip() == "ok", err[-2000:]
    runs = MlflowClient().search_runs(
        [tracking.client().get_experiment_by_name("at-once").experiment_id]
    )
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}


def test_the_default_store_is_created_under_root(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = tracking.configure(tmp_path / "project")
    assert uri == f"sqlite:///{tmp_path / 'project' / 'mlruns' / 'mlflow.db'}"
    assert (tmp_path / "project" / "mlruns" / "mlflow.db").is_file()
    assert (tmp_path / "project" / "mlruns" / "mlflow.db.lock").is_file()


def test_an_explicit_sqlite_store_in_a_missing_folder_is_an_error_and_nothing_is_created(
    tmp_path, monkeypatch, trial_dir
):
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'nonexistent' / 'x.db'}")
    for open_store in (tracking.configure, tracking.client, lambda: tracking.using().__enter__()):
        with pytest.raises(
            ConfigError, match=r"^MLFLOW_TRACKING_URI: .*nonexistent' does not exist"
        ):
            open_store()
    assert not (tmp_path / "nonexistent").exists()
    # the command line: exit 2, the URI named, nothing written
    config = tmp_path / "c.yaml"
    config.write_text("name: t\n")
    result = runner.invoke(app, ["train", "--config", str(config), "--data", str(trial_dir),
                                 "--summary", str(tmp_path / "out" / "s.json")])  # fmt: skip
    assert result.exit_code == 2 and "MLFLOW_TRACKING_URI" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_tracking_server_fails_fast_with_exit_2(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
    monkeypatch.setattr(tracking, "SERVER_TIMEOUT_S", 0.5)
    refused = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        quiet = f"http://user:secret@127.0.0.1:{silent.getsockname()[1]}"
        for uri in (refused, quiet):
            monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
            with pytest.raises(
                ConfigError, match=r"^MLFLOW_TRACKING_URI: the tracking server"
            ) as err:
                tracking.configure()
            assert "secret" not in str(err.value)  # a password in the URI is not shown
    # score: exit 2 before anything is written
    monkeypatch.setenv("MLFLOW_TRACKING_URI", refused)
    study = write_study(tmp_path / "study")
    out = tmp_path / "out" / "p.csv"
    result = runner.invoke(app, ["score", "--model", "models:/m@champion", "--data", str(study),
                                 "--out", str(out), "--jobs", "1"])  # fmt: skip
    assert result.exit_code == 2 and "did not answer" in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_a_server_that_answers_is_accepted_whatever_its_status(monkeypatch):
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setattr(tracking_utils, "_tracking_uri", None)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        assert tracking.client().tracking_uri == uri
    finally:
        server.shutdown()


def test_an_artifact_the_server_cannot_store_is_one_line_and_a_server_gone_is_lost(
    monkeypatch, tmp_path
):
    """MLflow's own artifact client against a server that answers /health but every upload
    with HTTP 500 (its artifact folder read-only); once it is gone, the same error is a lost
    server (tests/test_server.py makes the folder read-only on a real server)."""
    from mlflow.store.artifact.http_artifact_repo import HttpArtifactRepository

    class RefusesUploads(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def do_PUT(self):
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), RefusesUploads)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    (tmp_path / "figure.png").write_bytes(b"png")
    repo = HttpArtifactRepository(f"{uri}/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts")
    try:
        with pytest.raises(mlflow.exceptions.MlflowException) as caught:
            repo.log_artifact(str(tmp_path / "figure.png"), "figures")
        line = tracking.refused_artifact(caught.value)
        assert line is not None and "answers but could not store an artifact (HTTP 500" in line
    finally:
        server.shutdown()
        server.server_close()
    assert tracking.refused_artifact(caught.value) is None
    assert "stopped answering" in tracking.lost_server(caught.value)
    assert tracking.refused_artifact(ValueError("not MLflow's")) is None


def test_using_gives_back_the_users_tracking_uri(store):
    with tracking.using() as uri:
        assert uri == store
    assert os.environ["MLFLOW_TRACKING_URI"] == store  # MLflow itself would have unset it
    with tracking.using():
        pass
    assert tracking.tracking_uri() == store


# ----------------------------------------------------------------------------------------
# experiment names are checked when the config is loaded


@pytest.mark.parametrize(
    "name", ["../../../../tmp/x", "a/b", "models:/x", "x y", ".hidden", "", "é", "x" * 201]
)
def test_experiment_names_that_mlflow_or_the_store_cannot_take_are_config_errors(name, tmp_path):
    with pytest.raises(
        ConfigError, match=r"^name: bad value .*ASCII letters, digits, '\.', '_' or '-'"
    ):
        config_from_dict({"name": name})
    config = tmp_path / "c.yaml"
    config.write_text(f"name: {name!r}\n")
    result = runner.invoke(app, ["train", "--config", str(config), "--data", str(tmp_path)])
    assert result.exit_code == 2 and "c.yaml: name: bad value" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


@pytest.mark.parametrize("name", ["child-pugh-day28", "MELD_3.0", "a", "x" * 200])
def test_good_experiment_names_load(name):
    assert config_from_dict({"name": name}).name == name


# ----------------------------------------------------------------------------------------
# runs end however the process ends


RUN_UNTIL_KILLED = textwrap.dedent("""
    import time
    from msc_response import tracking
    tracking.configure()
    exp = tracking.experiment_id("killed")
    with tracking.start_run(experiment_id=exp, run_name="train killed"):
        with tracking.start_run(experiment_id=exp, run_name="a model", nested=True) as run:
            print(run.info.run_id, flush=True)
            time.sleep(600)
""")


def _started_run(store) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-c", RUN_UNTIL_KILLED], env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    run_id = proc.stdout.readline().strip()  # EOF (""), if the child failed
    assert run_id, proc.communicate(timeout=60)[1]
    return proc, run_id


def _parent_of(run_id: str) -> str:
    return MlflowClient().get_run(run_id).data.tags["mlflow.parentRunId"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, -signal.SIGINT)]
)
def test_sigterm_or_sigint_ends_the_run_and_its_parent_as_killed(store, signum, code):
    proc, child = _started_run(store)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    client = MlflowClient()
    assert client.get_run(child).info.status == "KILLED"
    assert client.get_run(_parent_of(child)).info.status == "KILLED"


def test_start_run_ends_finished_or_failed_tags_the_process_and_restores_handlers(store):
    before = signal.getsignal(signal.SIGTERM)
    tracking.configure()
    exp = tracking.experiment_id("ends")
    with tracking.start_run(experiment_id=exp) as run:
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
    with pytest.raises(ValueError), tracking.start_run(experiment_id=exp) as failed:
        raise ValueError("a bug")
    client = MlflowClient()
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert client.get_run(failed.info.run_id).info.status == "FAILED"
    tags = client.get_run(run.info.run_id).data.tags
    assert tags[tracking.TAG_HOST] == socket.gethostname()
    assert (
        int(tags[tracking.TAG_PID]),
        int(tags[tracking.TAG_PROCESS_START]),
    ) == processes.identity()


@pytest.mark.slow
def test_a_run_left_running_by_a_sigkilled_process_is_failed_by_the_next_one(store):
    proc, child = _started_run(store)
    proc.kill()
    proc.communicate(timeout=60)
    client = MlflowClient(store)
    parent = _parent_of(child)
    assert {client.get_run(r).info.status for r in (child, parent)} == {"RUNNING"}
    exp = client.get_experiment_by_name("killed").experiment_id
    done = tracking.fail_abandoned_runs(exp)
    assert {(r.run_id, r.pid) for r in done} == {(parent, proc.pid), (child, proc.pid)}
    assert {client.get_run(r).info.status for r in (child, parent)} == {"FAILED"}
    assert "had ended" in client.get_run(parent).data.tags[tracking.TAG_ENDED_BY]
    assert tracking.fail_abandoned_runs(exp) == []  # nothing more to do


def test_only_runs_of_dead_processes_of_this_host_are_failed(store):
    client = tracking.client()
    exp = client.create_experiment("mixed")
    host = socket.gethostname()
    pid, start = processes.identity()

    def running(name, **tags):
        return client.create_run(exp, run_name=name, tags=tags).info.run_id

    dead = running("dead", **{tracking.TAG_HOST: host, tracking.TAG_PID: str(DEAD_PID),
                              tracking.TAG_PROCESS_START: "1"})  # fmt: skip
    nested = running("nested of dead", **{"mlflow.parentRunId": dead})
    reused = running("pid reused", **{tracking.TAG_HOST: host, tracking.TAG_PID: str(pid),
                                      tracking.TAG_PROCESS_START: str(start - 500)})  # fmt: skip
    live = running("live", **{tracking.TAG_HOST: host, tracking.TAG_PID: str(pid),
                              tracking.TAG_PROCESS_START: str(start)})  # fmt: skip
    elsewhere = running("other host", **{tracking.TAG_HOST: host + "-other",
                                         tracking.TAG_PID: str(DEAD_PID)})  # fmt: skip
    untagged = running("someone else's")
    done = tracking.fail_abandoned_runs(exp)
    assert {r.run_id for r in done} == {dead, nested, reused}
    assert next(r for r in done if r.run_id == nested).pid is None
    status = {
        r: client.get_run(r).info.status for r in (dead, nested, reused, live, elsewhere, untagged)
    }
    assert status == {dead: "FAILED", nested: "FAILED", reused: "FAILED", live: "RUNNING",
                      elsewhere: "RUNNING", untagged: "RUNNING"}  # fmt: skip
    assert mlflow.get_tracking_uri()  # nothing global was changed to get here
