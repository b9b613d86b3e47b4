"""A team's deployment: every verb against an MLflow tracking server on PostgreSQL.

The server is the one ``make server`` starts (``python -m msc_response.server``): PostgreSQL from the
distribution's packages, ``mlflow server --serve-artifacts``, each on a free loopback port, in a
folder of its own; ``stop`` ends exactly what ``start`` started. Marked ``server``: skipped, with
the reason shown by ``make test``, where PostgreSQL is not installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from msc_response import server as tracking_server

CLI = [sys.executable, "-m", "msc_response.cli"]


def _postgres_missing() -> str | None:
    try:
        tracking_server.postgres_bin()
    except tracking_server.ServerError as err:
        return str(err)
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.server,
    pytest.mark.skipif(
        _postgres_missing() is not None, reason=f"server tests: {_postgres_missing()}"
    ),
]
FAST = {
    "candidates": ["lightgbm", "logistic_l2"],
    "primary": "logistic_l2",
    "repeats": 2,
    "bootstrap": 20,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A tracking server started by ``msc_response.server``, in a folder PostgreSQL's user can reach."""

    def __init__(self, auth: bool = False):
        self.base = Path(tempfile.mkdtemp(prefix="msc-server-", dir="/tmp"))
        self.base.chmod(0o755)  # as root, PostgreSQL runs as 'postgres' and must enter it
        self.data = self.base / "server"
        self.port, self.pg_port = free_port(), free_port()
        self.auth = auth
        self.url = f"http://127.0.0.1:{self.port}"

    def run(self, action: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "msc_response.server", action, "--data", str(self.data), "--port",
               str(self.port), "--pg-port", str(self.pg_port)]  # fmt: skip
        if self.auth and action == "start":
            cmd.append("--auth")
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    def start(self) -> Server:
        done = self.run("start")
        if done.returncode != 0:
            self.stop()  # whatever it started, and its folder, go too
        assert done.returncode == 0, done.stderr
        return self

    def stop(self) -> None:
        self.run("stop")
        shutil.rmtree(self.base, ignore_errors=True)

    def env(self, **extra) -> dict[str, str]:
        # MLflow's set_registry_uri (an earlier test's tracking.configure) writes
        # MLFLOW_REGISTRY_URI into the environment: a child must not inherit another store
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("MLFLOW_TRACKING_") and k != "MLFLOW_REGISTRY_URI"}  # fmt: skip
        return {**env, "MLFLOW_TRACKING_URI": self.url, **extra}


@pytest.fixture(scope="module")
def server():
    s = Server().start()
    yield s
    s.stop()


def cli(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=1200)  # fmt: skip


def ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, (
        f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done


def trained(cfg: Path, summary: Path, env: dict, cwd: Path) -> dict:
    """``msc-response train`` of ``cfg``, which must succeed; its summary."""
    ok(cli("train", "--config", str(cfg), "--summary", str(summary), env=env, cwd=cwd))
    return json.loads(summary.read_text())


def experiment(folder: Path, name: str, data: Path) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        name: {name}
        data: {data}
        endpoint: {{score: child_pugh, direction: decrease, min_change: 1, followup_day: 28, window_days: 7}}
        assume: {{dialysis: 0}}
        model: {json.dumps(FAST)}
        """)
    )
    return path


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """A SIMULATED trial (33 patients: exploratory) and a 2,500-patient cohort (above Riley's
    minimum: a champion can be promoted), plus a fresh cohort to validate and score."""
    root = tmp_path_factory.mktemp("cohorts")
    for name, args in {
        "trial": ["--design", "trial", "--seed", "1"],
        "big": ["--design", "screening", "--n-patients", "2500", "--seed", "3"],
        "fresh": ["--design", "screening", "--n-patients", "300", "--seed", "4"],
    }.items():
        ok(cli("simulate", *args, "--out", str(root / name), env=dict(os.environ), cwd=root))
    return root


def test_every_verb_against_the_server(server, cohorts, tmp_path):
    env = server.env()
    cfg = experiment(tmp_path, "srv-trial", cohorts / "trial")
    summary = trained(cfg, tmp_path / "train.json", env, tmp_path)
    assert summary["aliases"] == ["candidate", "exploratory"]  # the gate as on SQLite
    uri = "models:/srv-trial@exploratory"

    ok(cli("report", "--experiment", "srv-trial", env=env, cwd=tmp_path))
    assert list((tmp_path / "reports" / "srv-trial").glob("*/index.html"))
    ok(cli("validate", "--model", uri, "--data", str(cohorts / "fresh"), "--out",
           str(tmp_path / "validation"), env=env, cwd=tmp_path))  # fmt: skip
    patient = pd.read_csv(cohorts / "fresh" / "patients.csv", dtype=str)["patient_id"].iloc[0]
    ok(cli("explain", "--model", uri, "--data", str(cohorts / "fresh"), "--patient", patient,
           "--out", str(tmp_path / "explain.html"), env=env, cwd=tmp_path))  # fmt: skip
    ok(cli("score", "--model", uri, "--data", str(cohorts / "fresh"), "--out",
           str(tmp_path / "local.csv"), env=env, cwd=tmp_path))  # fmt: skip
    local = pd.read_csv(tmp_path / "local.csv", dtype={"patient_id": str})
    assert len(local) == 300

    if shutil.which("java"):  # the Spark engine reads the model through the server too
        ok(cli("score", "--model", uri, "--data", str(cohorts / "fresh"), "--out",
               str(tmp_path / "spark.csv"), "--engine", "spark",
               env={**env, "MSC_RESPONSE_SPARK_MASTER": "local[2]"}, cwd=tmp_path))  # fmt: skip
        spark = pd.read_csv(tmp_path / "spark.csv", dtype={"patient_id": str})
        merged = local.merge(spark, on="patient_id", suffixes=("", "_spark"))
        assert len(merged) == 300
        np.testing.assert_allclose(merged["probability"], merged["probability_spark"], atol=1e-9)

    # the Python API, as a notebook on a site's machine would use it
    code = textwrap.dedent(f"""\
        import msc_response as msc
        m = msc.load_model({uri!r})
        p = msc.predict(m, {str(cohorts / "fresh")!r})
        print(len(p.table))
        """)
    api = ok(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env))
    assert api.stdout.strip().splitlines()[-1] == "300"

    # no patient id in the database or the served artifacts
    dump = pg_dump(server)
    assert "SIM-0" not in dump and patient not in dump
    for f in (server.data / "artifacts").rglob("*"):
        if f.is_file() and f.stat().st_size < 5_000_000:
            assert b"SIM-0" not in f.read_bytes(), f


def pg_dump(server: Server) -> str:
    creds = json.loads((server.data / "credentials.json").read_text())
    done = subprocess.run(
        [str(tracking_server.postgres_bin() / "pg_dump"), "-h", "127.0.0.1", "-p", str(server.pg_port),
         "-U", tracking_server.ROLE, tracking_server.DATABASE],
        capture_output=True, text=True, env={**os.environ, "PGPASSWORD": creds["db_password"]},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "registered_models" in done.stdout  # the dump holds MLflow's tables
    return done.stdout


@pytest.mark.parametrize("store", ["server", "sqlite"])
def test_four_users_train_and_score_at_once(store, server, cohorts, tmp_path):
    """On the server, and on the local SQLite store (single-writer: the registry lock and
    SQLite's own locking must serialise the writes, or the run be refused clearly)."""
    from mlflow import MlflowClient

    if store == "server":
        uri, env = server.url, server.env()
    else:
        (tmp_path / "mlruns").mkdir()
        uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
        env = {**server.env(), "MLFLOW_TRACKING_URI": uri}
    cfg = experiment(tmp_path, "srv-big", cohorts / "big")
    # one by one first: the champion the others are compared with, and the decision to expect
    first = trained(cfg, tmp_path / "t0.json", env, tmp_path)
    assert first["champion_decision"] == "promoted to champion"
    sequential = trained(cfg, tmp_path / "t1.json", env, tmp_path)["champion_decision"]

    def train(k):
        return cli("train", "--config", str(cfg), "--summary", str(tmp_path / f"c{k}.json"),
                   env=env, cwd=tmp_path)  # fmt: skip

    def score(k):
        return cli("score", "--model", "models:/srv-big@champion", "--data", str(cohorts / "fresh"),
                   "--out", str(tmp_path / f"p{k}.csv"), "--jobs", "1", env=env, cwd=tmp_path)  # fmt: skip

    with ThreadPoolExecutor(8) as pool:
        trains = [pool.submit(train, k) for k in range(4)]
        scores = [pool.submit(score, k) for k in range(4)]
        for f in trains + scores:
            ok(f.result())

    summaries = [json.loads((tmp_path / f"c{k}.json").read_text()) for k in range(4)]
    versions = [int(s["version"]) for s in summaries]
    assert len(set(versions)) == 4 and min(versions) > 2  # unique, after the two sequential ones
    assert {s["champion_decision"] for s in summaries} == {sequential}

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for s in [first, *summaries]:
        assert client.get_run(s["run_id"]).info.status == "FINISHED"
    registered = {int(v.version) for v in client.search_model_versions("name = 'srv-big'")}
    assert registered == {1, 2, *versions}
    champion = client.get_model_version_by_alias("srv-big", "champion")
    assert int(champion.version) in registered and champion.status == "READY"
    # the champion loads with MLflow's own loader, in a process of its own: this process's
    # MLflow settings (an earlier test's registry URI) must not decide where it looks
    code = (
        "import mlflow, sys; "
        f"m = mlflow.pyfunc.load_model('models:/srv-big/{champion.version}'); "
        "print(m.metadata.run_id)"
    )
    loaded = ok(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    )
    assert loaded.stdout.strip().splitlines()[-1] == champion.run_id
    # every score read a whole registered model: same patients, same probabilities (the
    # versions are refits of the same data with the same seed)
    first_p = pd.read_csv(tmp_path / "p0.csv", dtype={"patient_id": str})
    for k in range(1, 4):
        other = pd.read_csv(tmp_path / f"p{k}.csv", dtype={"patient_id": str})
        pd.testing.assert_series_equal(first_p["patient_id"], other["patient_id"])
        np.testing.assert_allclose(first_p["probability"], other["probability"], atol=1e-12)


def test_basic_auth_server_refuses_strangers_and_serves_the_team(cohorts, tmp_path):
    s = Server(auth=True).start()
    try:
        cfg = experiment(tmp_path, "srv-auth", cohorts / "trial")
        denied = cli("train", "--config", str(cfg), env=s.env(), cwd=tmp_path)
        assert denied.returncode == 2 and "Traceback" not in denied.stderr
        assert "answered 401: credentials are needed" in denied.stderr
        creds = json.loads((s.data / "credentials.json").read_text())
        env = s.env(MLFLOW_TRACKING_USERNAME=tracking_server.ADMIN,
                    MLFLOW_TRACKING_PASSWORD=creds["admin_password"])  # fmt: skip
        assert trained(cfg, tmp_path / "t.json", env, tmp_path)["version"] == "1"
    finally:
        s.stop()


def test_postgres_restarted_between_runs(server, cohorts, tmp_path):
    env = server.env()
    cfg = experiment(tmp_path, "srv-restart", cohorts / "trial")
    ok(cli("train", "--config", str(cfg), env=env, cwd=tmp_path))
    pgdata = server.data / "pg"
    bindir = tracking_server.postgres_bin()
    tracking_server._as_owner(
        [str(bindir / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"]
    )
    tracking_server.start_postgres(server.data, server.pg_port)
    assert trained(cfg, tmp_path / "t.json", env, tmp_path)["version"] == "2"


def test_stop_ends_exactly_what_start_started():
    s = Server().start()
    try:
        pid = int((s.data / "mlflow.pid").read_text())
        assert tracking_server._alive_mlflow(pid)
        done = s.run("stop")
        assert (
            done.returncode == 0 and "mlflow server" in done.stdout and "postgresql" in done.stdout
        )
        assert not tracking_server._alive_mlflow(pid)
        assert (
            not (s.data / "mlflow.pid").exists() and not (s.data / "pg" / "postmaster.pid").exists()
        )
        assert "nothing was running" in s.run("stop").stdout
    finally:
        s.stop()


def test_server_stopped_mid_train_is_one_line_and_the_run_is_failed_when_it_is_back(
    cohorts, tmp_path
):
    from mlflow import MlflowClient

    s = Server().start()
    try:
        # MLflow retries for minutes by default; a short retry keeps the test short
        env = s.env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="1", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="0")
        cfg = experiment(tmp_path, "srv-fault", cohorts / "big")
        train = subprocess.Popen([*CLI, "train", "--config", str(cfg)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)  # fmt: skip
        client = MlflowClient(tracking_uri=s.url, registry_uri=s.url)
        deadline = time.monotonic() + 600
        running = []
        while not running and time.monotonic() < deadline and train.poll() is None:
            exp = client.get_experiment_by_name("srv-fault")
            if exp is not None:
                running = client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
            time.sleep(0.5)
        assert running, "the training run never started"
        pid = int((s.data / "mlflow.pid").read_text())
        os.killpg(pid, 9)  # the server dies (PostgreSQL keeps running)
        out, err = train.communicate(timeout=900)
        assert train.returncode == 2, err[-3000:]
        assert "stopped answering" in err and "Traceback" not in err

        (s.data / "mlflow.pid").unlink()
        s.start()  # back, on the same database
        run_id = running[0].info.run_id
        assert client.get_run(run_id).info.status == "RUNNING"
        assert not client.search_model_versions("name = 'srv-fault'")  # nothing half-registered
        summary = trained(cfg, tmp_path / "t.json", env, tmp_path)
        assert client.get_run(run_id).info.status == "FAILED"
        assert run_id in summary["abandoned_runs_ended"]
    finally:
        s.stop()


def _files(folder: Path) -> dict[str, str]:
    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*")) if f.is_file()}  # fmt: skip


def test_artifact_folder_not_writable_is_one_line_and_nothing_is_lost(cohorts, tmp_path):
    """As root, permission bits do not stop a write: a read-only bind mount of the server's
    artifact folder over itself does (the database stays writable)."""
    from mlflow import MlflowClient

    s = Server().start()
    artifacts = s.data / "artifacts"
    mounted = False
    try:
        # MLflow retries a server error for minutes by default; a short retry keeps it short
        env = s.env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="1", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="0")
        cfg = experiment(tmp_path, "srv-readonly", cohorts / "trial")
        first = trained(cfg, tmp_path / "t1.json", env, tmp_path)  # version 1, before the fault
        before = _files(artifacts)
        for cmd in (["mount", "--bind", artifacts, artifacts],
                    ["mount", "-o", "remount,ro,bind", artifacts]):  # fmt: skip
            done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
            if done.returncode != 0:
                pytest.skip(f"a read-only bind mount is not permitted here: {done.stderr.strip()}")
            mounted = True
        probe = artifacts / ".probe"
        with pytest.raises(OSError):  # the fault is real: nothing can be written there
            probe.write_text("x")

        done = cli("train", "--config", str(cfg), "--summary", str(tmp_path / "t2.json"),
                   env=env, cwd=tmp_path)  # fmt: skip
        assert done.returncode == 2, done.stderr[-3000:]
        assert "Traceback" not in done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "answers but could not store an artifact" in errors[0], errors
        assert not (tmp_path / "t2.json").exists()

        client = MlflowClient(tracking_uri=s.url, registry_uri=s.url)
        exp = client.get_experiment_by_name("srv-readonly")
        runs = client.search_runs([exp.experiment_id])
        first_runs = {r.info.run_id for r in runs
                      if r.data.tags.get("mlflow.parentRunId") == first["run_id"]} | {first["run_id"]}  # fmt: skip
        later = [r for r in runs if r.info.run_id not in first_runs]
        assert later and {r.info.status for r in later} == {"FAILED"}  # none left RUNNING
        assert {r.info.status for r in runs if r.info.run_id in first_runs} == {"FINISHED"}
        # nothing half-registered: version 1 only, its aliases where they were
        assert [v.version for v in client.search_model_versions("name = 'srv-readonly'")] == ["1"]
        assert set(client.get_registered_model("srv-readonly").aliases) == set(first["aliases"])
        # earlier artifacts intact, and version 1 still loads (reading needs no write)
        assert _files(artifacts) == before
        code = "import mlflow; print(mlflow.pyfunc.load_model('models:/srv-readonly/1').metadata.run_id)"
        loaded = ok(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                   env=env))  # fmt: skip
        assert loaded.stdout.strip().splitlines()[-1] == first["run_id"]
    finally:
        if mounted:
            subprocess.run(["umount", str(artifacts)], check=True)
        s.stop()


# ------------------------------------------------------------------------------------------
# A real Spark cluster: a standalone master and two workers, each its own process


class StandaloneCluster:
    """Spark's standalone master and workers, started with Spark's own ``spark-class``."""

    def __init__(self, root: Path, workers: int = 2):
        import pyspark

        self.home = Path(pyspark.__file__).parent
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port, self.ui = free_port(), free_port()
        self.master = f"spark://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        # no PYSPARK_PYTHON: the Python the executors run is the job's (its packed environment)
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_")},
                    "SPARK_HOME": str(self.home), "SPARK_LOCAL_IP": "127.0.0.1"}  # fmt: skip
        try:  # a cluster that fails to come up is stopped, not left running
            self._start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                        "--port", str(self.port), "--webui-port", str(self.ui))  # fmt: skip
            self._wait_port(self.port)
            for k in range(workers):
                work = root / f"worker{k}"
                work.mkdir()
                self._start(f"worker{k}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                            "--cores", "1", "--memory", "1G", "--webui-port", str(free_port()),
                            "--work-dir", str(work), self.master)  # fmt: skip
            self._wait_workers(workers)
        except BaseException:
            self.stop()
            raise

    def _start(self, name: str, cls: str, *args: str) -> None:
        with open(self.root / f"{name}.log", "wb") as log:  # the child keeps its own descriptor
            self.procs[name] = subprocess.Popen(
                [str(self.home / "bin" / "spark-class"), cls, *args],
                stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
            )  # fmt: skip

    def _wait_port(self, port: int) -> None:
        for _ in range(240):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.5)
        raise AssertionError(
            f"spark master not listening: {(self.root / 'master.log').read_text()[-2000:]}"
        )

    def _wait_workers(self, n: int) -> None:
        import urllib.request

        for _ in range(240):
            try:  # the master's web UI starts a moment after its RPC port
                with urllib.request.urlopen(f"http://127.0.0.1:{self.ui}/json/") as r:
                    state = json.load(r)
            except OSError:
                state = {"workers": []}
            if sum(w["state"] == "ALIVE" for w in state["workers"]) >= n:
                return
            time.sleep(0.5)
        raise AssertionError("workers did not register with the master")

    def state(self) -> dict:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui}/json/") as r:
            return json.load(r)

    def stop(self) -> None:
        import signal

        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


#: Where the executors find the environment: ``--archives ENV.tar.gz#environment`` unpacks it
#: into each executor's working directory (as on YARN).
EXECUTOR_PYTHON = "./environment/bin/python"
PYTHON = f"python{sys.version_info.major}.{sys.version_info.minor}"  # its lib/ folder
REPO = Path(__file__).resolve().parents[1]
EXECUTOR_REQUIREMENTS = REPO / "requirements-executor.txt"


def _run(cmd: list) -> None:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"{cmd}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


def _executor_libraries() -> Path:
    """A virtual environment of ``requirements-executor.txt`` with the pins, built once per
    change of the pins, the requirements or this Python into a cache folder and reused (the
    slow part: minutes of pip on a busy machine)."""
    digest = hashlib.sha256(sys.version.encode())
    for f in (REPO / "constraints.txt", EXECUTOR_REQUIREMENTS):
        digest.update(f.read_bytes())
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = cache / "msc-response" / "executor-env"
    built = cache / f"libraries-{digest.hexdigest()[:16]}"
    if (built / "pyvenv.cfg").exists():  # renamed into place only once complete
        return built
    cache.mkdir(parents=True, exist_ok=True)
    for old in cache.glob("libraries-*"):  # of older pins: not used again
        shutil.rmtree(old, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        _run([sys.executable, "-m", "venv", Path(tmp) / "env"])
        _run([Path(tmp) / "env" / "bin" / "python", "-m", "pip", "install", "--quiet", "-c",
              REPO / "constraints.txt", "-r", EXECUTOR_REQUIREMENTS])  # fmt: skip
        os.replace(Path(tmp) / "env", built)
    return built


@pytest.fixture(scope="session")
def packed_executor_env(tmp_path_factory) -> Path:
    """The scoring-only environment packed by ``venv-pack``: a copy of
    :func:`_executor_libraries` plus this package's sources (``--no-deps``), about 600 MB
    unpacked and 200 MB packed against 2 GB for the development one. Copying, installing
    the package and packing take about a minute per session."""
    work = tmp_path_factory.mktemp("executor-env")
    env = work / "env"
    shutil.copytree(_executor_libraries(), env, symlinks=True)
    # the package from a copy of its sources: a build never writes into the work tree
    package = work / "package"
    shutil.copytree(REPO / "src", package / "src",
                    ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))  # fmt: skip
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, package / name)
    _run([env / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall",
          package])  # fmt: skip
    archive = work / "env.tar.gz"
    _run([sys.executable, "-m", "venv_pack", "--prefix", env, "--output", archive,
          "--compress-level", "1", "--quiet"])  # fmt: skip
    shutil.rmtree(env)  # the archive is what the cluster gets
    return archive


def watch_python_workers(folder: Path, seen: dict[int, dict]) -> None:
    """Add to ``seen`` the PySpark Python workers running under ``folder``: their command line,
    folder, and the site-packages folders their loaded libraries came from
    (``/proc/PID/maps``; a worker maps more as it imports, so each look adds to the last)."""
    import psutil

    for proc in psutil.process_iter(["cmdline", "cwd"]):
        cmd, cwd = proc.info["cmdline"] or [], proc.info["cwd"] or ""
        daemon = "msc_response.pipelines.score.spark_daemon" in cmd
        if not daemon or not cwd.startswith(str(folder)):
            continue
        try:
            maps = Path(f"/proc/{proc.pid}/maps").read_text()
        except OSError:  # it ended meanwhile
            continue
        libraries = {line.split()[-1].split("/site-packages/")[0]
                     for line in maps.splitlines() if "/site-packages/" in line}  # fmt: skip
        worker = seen.setdefault(proc.pid, {"cmdline": cmd, "cwd": cwd, "site_packages_of": set()})
        worker["site_packages_of"] |= libraries


def spark_submit(
    cluster: StandaloneCluster, archive: Path, *args: str, env: dict, log: Path
) -> subprocess.Popen:
    """The scoring job as docs/operations/deployment.md submits it to YARN: the driver here
    (client mode, this Python), the executors in the packed environment ``archive``."""
    script = subprocess.run([sys.executable, "-m", "msc_response.pipelines.score.spark_submit"],
                            capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    cmd = [str(cluster.home / "bin" / "spark-submit"), "--master", cluster.master,
           "--archives", f"{archive}#environment",
           "--conf", "spark.executor.memory=768m", "--conf", "spark.task.maxFailures=4",
           script, *args]  # fmt: skip
    env = {**env, "SPARK_HOME": str(cluster.home), "PYSPARK_PYTHON": EXECUTOR_PYTHON,
           "PYSPARK_DRIVER_PYTHON": sys.executable}  # fmt: skip
    env.pop("MSC_RESPONSE_SPARK_MASTER", None)  # spark-submit's --master decides
    with open(log, "wb") as out:  # a file, not a pipe: nobody reads it while the job runs
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)


@pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java 17")
def test_a_standalone_spark_cluster_scores_as_the_local_engine_even_when_a_worker_dies(
    server, cohorts, tmp_path, packed_executor_env
):
    import signal

    env = server.env()
    cfg = experiment(tmp_path, "srv-spark", cohorts / "trial")
    ok(cli("train", "--config", str(cfg), env=env, cwd=tmp_path))
    uri = "models:/srv-spark@exploratory"
    data = tmp_path / "cohort"
    ok(cli("simulate", "--design", "screening", "--n-patients", "5000", "--seed", "5", "--format",
           "parquet", "--out", str(data), env=env, cwd=tmp_path))  # fmt: skip
    ok(cli("score", "--model", uri, "--data", str(data), "--out", str(tmp_path / "local.parquet"),
           "--explain", "2", env=env, cwd=tmp_path))  # fmt: skip

    cluster = StandaloneCluster(tmp_path / "cluster")
    try:
        log = tmp_path / "spark-submit.log"
        job = spark_submit(cluster, packed_executor_env, "score", "--engine", "spark", "--model",
                           uri, "--data", str(data), "--out", str(tmp_path / "spark.parquet"),
                           "--explain", "2", "--patients-per-chunk", "250", env=env, log=log)  # fmt: skip
        # once a Python worker of the job on worker1 has loaded its libraries (its executor
        # unpacked the environment and took a task), that worker dies with its executor: Spark
        # must re-run its tasks on the other worker and give the same output
        victim, on_victim = cluster.procs["worker1"], str(cluster.root / "worker1")
        workers: dict[int, dict] = {}
        deadline = time.monotonic() + 1500
        while job.poll() is None and time.monotonic() < deadline:
            watch_python_workers(cluster.root, workers)
            if victim.poll() is None and any(
                w["cwd"].startswith(on_victim) and w["site_packages_of"] for w in workers.values()
            ):
                assert job.poll() is None, "the job ended before the worker could be killed"
                os.killpg(victim.pid, signal.SIGKILL)
                victim.wait()
            time.sleep(0.5)
        if job.poll() is None:
            job.kill()
        assert victim.poll() is not None, f"no Python worker of the job ran on worker1: {workers}"
        assert job.wait() == 0, log.read_text()[-4000:]
    finally:
        cluster.stop()
    # everything it started is stopped
    assert all(p.poll() is not None for p in cluster.procs.values())
    # the executors ran the packed environment's Python, and every library they loaded came
    # from the unpacked archive, none from this venv
    assert {w["cmdline"][0] for w in workers.values()} == {EXECUTOR_PYTHON}, workers
    loaded_from = set().union(*(w["site_packages_of"] for w in workers.values()))
    assert loaded_from and all(
        p.startswith(str(cluster.root)) and p.endswith(f"/environment/lib/{PYTHON}")
        for p in loaded_from
    ), loaded_from

    local = pd.read_parquet(tmp_path / "local.parquet").sort_values("patient_id", ignore_index=True)
    spark = pd.read_parquet(tmp_path / "spark.parquet").sort_values("patient_id", ignore_index=True)
    assert list(local["patient_id"]) == list(spark["patient_id"])
    numeric = [c for c in local.columns if pd.api.types.is_float_dtype(local[c])]
    assert "probability" in numeric
    np.testing.assert_allclose(spark[numeric].to_numpy(), local[numeric].to_numpy(), atol=1e-9)
    text = [c for c in local.columns if c not in numeric]
    pd.testing.assert_frame_equal(spark[text].astype(str), local[text].astype(str))
