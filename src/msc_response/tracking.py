"""MLflow set-up and helpers: the tracking URI and store, experiments, runs, registry aliases.

By default runs go to a local SQLite store, ``sqlite:///mlruns/mlflow.db``, with
artifacts under ``mlruns/`` (MLflow 3 deprecates the plain file store).
``MLFLOW_TRACKING_URI`` overrides it, so a team's tracking server works unchanged.
Patient identifiers never reach MLflow: only pseudonymous row indices do.

The store is made ready before MLflow uses it (:func:`configure`, :func:`using`,
:func:`client`):

- Only the local default store is created. A local store is created and its schema
  migrated under an exclusive lock on ``mlflow.db.lock`` beside the database, so runs
  started at once on a fresh store do not race MLflow's migration.
- An explicit URI is checked, failing fast with a :class:`~msc_response.errors.ConfigError`
  (exit 2) before anything is written: a SQLite or file store whose folder does not exist
  (it is not created), a tracking server that does not answer within
  :data:`SERVER_TIMEOUT_S`. Other schemes (``postgresql://``, ``databricks``) are left to MLflow.

Runs started with :func:`start_run` carry this host and process (:data:`TAG_HOST`,
:data:`TAG_PID`, :data:`TAG_PROCESS_START`): SIGTERM or SIGINT end them as KILLED, and a
run left RUNNING by a process killed outright (SIGKILL, power loss) is ended as FAILED by
:func:`fail_abandoned_runs` at the start of the next run of its experiment on this host.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from . import processes
from .errors import ConfigError

#: Seconds a tracking server has to answer before the URI is an error.
SERVER_TIMEOUT_S = 5.0

#: Run tags that tell which process a run belongs to.
TAG_HOST = "msc_response.host"
TAG_PID = "msc_response.pid"
TAG_PROCESS_START = "msc_response.process_start"  # see processes.identity: pids are reused
TAG_ENDED_BY = "msc_response.ended_by"
#: The job that made a run: "train", "validate" or "score".
TAG_STAGE = "msc_response.stage"
#: Why the promotion gate made (or did not make) the new version the champion.
TAG_CHAMPION_DECISION = "champion_decision"

#: MLflow's tag of a run's description (shown and edited as "Description" in its UI).
TAG_DESCRIPTION = "mlflow.note.content"
#: MLflow 3's tag that chooses an experiment's view in its UI; this project's experiments
#: are classic machine learning, not GenAI (value from MLflow 3.17's UI:
#: ``ExperimentKind.CUSTOM_MODEL_DEVELOPMENT``).
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"

_ENV = "MLFLOW_TRACKING_URI"


def _resolve(root: str | Path | None) -> tuple[str, str | None]:
    """The URI and where it came from (None: the local default store under ``root``)."""
    env = os.environ.get(_ENV)
    if env:
        return env, _ENV
    from mlflow.tracking._tracking_service import utils as tracking_utils

    if tracking_utils.is_tracking_uri_set():
        return (
            tracking_utils.get_tracking_uri(),
            "the tracking URI set with mlflow.set_tracking_uri",
        )
    db = Path(root or Path.cwd()).resolve() / "mlruns" / "mlflow.db"
    return f"sqlite:///{db}", None


def tracking_uri(root: str | Path | None = None) -> str:
    """The store to use: ``MLFLOW_TRACKING_URI``, else one the caller set with
    ``mlflow.set_tracking_uri`` (a notebook's), else the SQLite store under ``root/mlruns``."""
    return _resolve(root)[0]


def _ready(root: str | Path | None) -> str:
    """:func:`tracking_uri`, with its store created (the default one only) or checked."""
    uri, source = _resolve(root)
    scheme = urlsplit(uri).scheme.lower()
    if scheme == "sqlite":
        db = _sqlite_path(uri)
        if db is not None:
            _check_folder(db.parent, uri, source)
            _open_locked(uri, db)
    elif scheme in ("http", "https"):
        _check_server(uri, source)
    elif scheme in ("file", "") and source is not None:
        folder = Path(urlsplit(uri).path if scheme else uri)
        _check_folder(folder.parent, uri, source)
    return uri


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a SQLite URI (None: in memory)."""
    path = (
        uri.split(":", 1)[1].split("?", 1)[0].removeprefix("///")
    )  # sqlite:///rel, sqlite:////abs
    return None if path in ("", ":memory:") or path.startswith("//") else Path(path)


def _shown(uri: str) -> str:
    """The URI without a password, for messages."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _check_folder(folder: Path, uri: str, source: str | None) -> None:
    """The folder holding a local store: created for the default store, required otherwise."""
    if source is None:
        folder.mkdir(parents=True, exist_ok=True)
    elif not folder.is_dir():
        raise ConfigError(
            f"{source}: {_shown(uri)!r}: the folder {str(folder)!r} does not exist; create it "
            "or correct the URI (nothing was written)"
        )


def _open_locked(uri: str, db: Path) -> None:
    """Create and migrate the SQLite store under an exclusive lock beside the database.

    MLflow creates the tables and runs its migrations on first use without a lock: two
    processes opening a fresh store at once both migrate, and one fails (``duplicate
    column name``). Opening it here, one process at a time, leaves it migrated for the
    rest; MLflow caches the opened stores, so this is not repeated in the process.
    """
    from mlflow.tracking._model_registry.utils import _get_store as registry_store
    from mlflow.tracking._tracking_service.utils import _get_store as tracking_store

    with _file_lock(db.with_name(db.name + ".lock")):
        tracking_store(uri)
        registry_store(uri)


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive lock on ``path`` for the block (nothing where POSIX locks do not exist)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: MLflow's own behaviour
        yield
        return
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, or the process dies
        yield


@contextlib.contextmanager
def registry_lock(uri: str):
    """Registry changes of a local SQLite store one process at a time; yields whether locked.

    With a lock (a file beside the database), what is read inside the block (the current
    champion) is still so when the block sets aliases. A tracking server offers no lock:
    the block yields False and the caller re-reads what it relied on before each change.
    """
    db = _sqlite_path(uri) if urlsplit(uri).scheme.lower() == "sqlite" else None
    if db is None:
        yield False
        return
    with _file_lock(db.with_name(db.name + ".registry.lock")):
        yield True


def _tls_context():
    import ssl

    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() in ("true", "1"):
        return ssl._create_unverified_context()  # what MLflow itself does with this setting
    return None


def _unanswered(uri: str, context) -> str | None:
    """Why the server at ``uri`` did not answer ``/health`` within :data:`SERVER_TIMEOUT_S`;
    None when it answered (an error status too: that is MLflow's to report)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(
            uri.rstrip("/") + "/health", timeout=SERVER_TIMEOUT_S, context=context
        ):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as err:
        return str(getattr(err, "reason", err))


@functools.cache  # a server that answered once is not asked again (errors are not cached)
def _check_server(uri: str, source: str | None) -> None:
    context = _tls_context()
    reason = _unanswered(uri, context)
    if reason is not None:
        raise ConfigError(
            f"{source or 'tracking URI'}: the tracking server {_shown(uri)!r} did not answer within "
            f"{SERVER_TIMEOUT_S:g} s ({reason}); check the URI and that the server runs "
            "(nothing was written)"
        )
    _check_credentials(uri, source, context)


def _check_credentials(uri: str, source: str | None, context) -> None:
    """A server behind MLflow's basic-auth app answers /health to anyone: ask a read that needs
    credentials, so that missing or wrong ones are one clear line before any work, not a
    traceback from the first write."""
    import base64
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    )
    user, password = (
        os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    )
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if user and password:
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {basic}")
    elif token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=SERVER_TIMEOUT_S, context=context):
            return
    except urllib.error.HTTPError as err:
        if err.code not in (401, 403):
            return  # anything else is MLflow's to report where it happens
        given = "were refused" if (user or token) else "are needed"
        raise ConfigError(
            f"{source or 'tracking URI'}: the tracking server {_shown(uri)!r} answered "
            f"{err.code}: credentials {given}; set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) (nothing was written)"
        ) from None
    except (urllib.error.URLError, OSError):
        return  # it answered /health a moment ago; a passing fault is MLflow's to report


def lost_server(err: BaseException) -> str | None:
    """One line for an error that says the tracking server stopped answering, else None.

    MLflow's REST client gives up (after its own retries: ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``)
    with an ``MlflowException`` raised while handling the ``requests`` error; that is not a bug
    of ours but the server's state, said once, with what happens to the run.
    """
    import requests
    from mlflow.exceptions import MlflowException

    cause = err.__cause__ or err.__context__
    if not (isinstance(err, MlflowException) and isinstance(cause, requests.RequestException)):
        return None
    uri = os.environ.get(_ENV) or "the tracking server"
    return (
        f"the tracking server {_shown(uri)!r} stopped answering ({type(cause).__name__}); "
        "nothing more was registered. A run left RUNNING is ended as FAILED by the next run "
        "of its experiment on this host once the server is back"
    )


def refused_artifact(err: BaseException) -> str | None:
    """One line for a tracking server that still answers but failed to store an artifact
    (its artifact folder read-only, full or gone), else None.

    MLflow raises an ``MlflowException`` while handling ``requests``' error: a
    ``RetryError`` after every retry of a 5xx answer (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``),
    or a ``ConnectionError`` when the server answers a large upload and closes the
    connection before reading it. The server's own reason is only in its log. The run was
    still ended (FAILED) through the tracking API, and a model is registered only after its
    files are stored.
    """
    import re

    import requests
    from mlflow.exceptions import MlflowException

    cause = err.__cause__ or err.__context__
    uri = os.environ.get(_ENV)
    if not (
        isinstance(err, MlflowException)
        and isinstance(cause, requests.RequestException)
        and "/mlflow-artifacts/" in str(err)
        and uri
        and _unanswered(uri, _tls_context()) is None  # gone altogether: lost_server's case
    ):
        return None
    status = re.search(r"too many (\d{3}) error responses", str(cause))
    how = f"HTTP {status.group(1)} on every try" if status else type(cause).__name__
    return (
        f"the tracking server {_shown(uri)!r} answers but could not store an artifact ({how}): "
        "its artifact folder is read-only, full or gone (the server's log says which). The run "
        "is marked FAILED and nothing of it was registered; earlier runs and versions are "
        "unchanged"
    )


def configure(root: str | Path | None = None) -> str:
    """Point MLflow (tracking and registry) at :func:`tracking_uri`; returns the URI.

    For the command line, which owns its process. Library code uses :func:`using`, which
    gives the caller's setting back afterwards.
    """
    import mlflow

    uri = _ready(root)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


@contextlib.contextmanager
def using(root: str | Path | None = None):
    """MLflow's fluent API pointed at :func:`tracking_uri` inside the block, and the
    caller's tracking and registry URIs (set or not) restored after it; yields the URI."""
    from mlflow.tracking import _tracking_service
    from mlflow.tracking._model_registry import utils as registry_utils

    uri = _ready(root)
    previous_registry = registry_utils._registry_uri
    previous_env = os.environ.get(_ENV)
    try:
        registry_utils._registry_uri = uri
        with _tracking_service.utils._use_tracking_uri(uri):
            yield uri
    finally:
        registry_utils._registry_uri = previous_registry
        # MLflow puts back its own setting, and *unsets* MLFLOW_TRACKING_URI when it had
        # none: the next use would then go to the default store, not the user's
        if previous_env is None:
            os.environ.pop(_ENV, None)
        else:
            os.environ[_ENV] = previous_env


def client(root: str | Path | None = None):
    """An ``MlflowClient`` on :func:`tracking_uri` (nothing global is changed)."""
    from mlflow import MlflowClient

    uri = _ready(root)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def process_tags() -> dict[str, str]:
    """The tags that tie a run to this host and process."""
    pid, start = processes.identity()
    return {TAG_HOST: socket.gethostname(), TAG_PID: str(pid), TAG_PROCESS_START: str(start)}


@contextlib.contextmanager
def start_run(**kwargs):
    """``mlflow.start_run(**kwargs)``, tagged with :func:`process_tags`, ended however the block ends.

    FINISHED when the block completes, FAILED on an error, KILLED on SIGTERM or SIGINT
    (which raise inside the block; the previous signal handlers are restored after it,
    see :func:`msc_response.processes.signals_raise`). Yields MLflow's ``ActiveRun``.
    """
    import mlflow

    with processes.signals_raise():
        # the process tags with the run's creation: one write to the store, not two
        tags = {**(kwargs.pop("tags", None) or {}), **process_tags()}
        run = mlflow.start_run(**kwargs, tags=tags)
        status = "FAILED"
        try:
            yield run
            status = "FINISHED"
        except (KeyboardInterrupt, processes.Terminated):
            status = "KILLED"
            raise
        finally:
            _end_run(run.info.run_id, status)


@contextlib.contextmanager
def job_run(experiment: str, run_name: str, root: str | Path | None = None):
    """The run of one job (``train``, ``validate``, ``score``) in ``experiment`` (created if new).

    Runs a dead process of this host left RUNNING in that experiment are ended first
    (:func:`fail_abandoned_runs`); the run is :func:`start_run`'s (process tags, KILLED on
    SIGTERM or SIGINT). Call inside :func:`using`. Yields ``(ActiveRun, abandoned runs)``.
    """
    exp_id = experiment_id(experiment)
    abandoned = fail_abandoned_runs(exp_id, root)
    with start_run(experiment_id=exp_id, run_name=run_name) as run:
        yield run, abandoned


def log_files(paths, artifact_path: str, run_id: str | None = None, root=None) -> None:
    """Log each of ``paths`` (files the product wrote) under ``artifact_path``, one by one.

    Never a folder: a folder may hold what the product did not write (a user's notes, a
    copy of a study), and whatever is in it would go to the store.
    """
    import mlflow

    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"log_files: {str(path)!r} is not a file the product wrote")
        if run_id is None:
            mlflow.log_artifact(str(path), artifact_path)
        else:
            client(root).log_artifact(run_id, str(path), artifact_path)


def log_batch(*, metrics: dict | None = None, params: dict | None = None, tags: dict | None = None,
              run_id: str | None = None) -> None:  # fmt: skip
    """Metrics, parameters and tags of a run (the active one by default) in one write to the
    store (MLflow's ``log_batch``), where ``log_metrics``, ``log_params`` and ``set_tags``
    would make one each."""
    import time

    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    run_id = run_id or mlflow.active_run().info.run_id
    now = int(time.time() * 1000)
    mlflow.MlflowClient().log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()],
        params=[Param(k, str(v)) for k, v in (params or {}).items()],
        tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
    )


def _end_run(run_id: str, status: str) -> None:
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(status)
        return
    # the block ended or replaced the active run itself: end ours if it still runs
    c = mlflow.MlflowClient()
    if c.get_run(run_id).info.status == "RUNNING":
        c.set_terminated(run_id, status)


@dataclass(frozen=True)
class AbandonedRun:
    """A run left RUNNING by a process that no longer runs, now ended as FAILED."""

    run_id: str
    run_name: str
    pid: int | None  # None: a nested run of such a run, without tags of its own


def fail_abandoned_runs(experiment_id: str, root: str | Path | None = None) -> list[AbandonedRun]:
    """End as FAILED the runs of ``experiment_id`` that a dead process on this host left RUNNING.

    A run counts when its :data:`TAG_HOST` is this host and the process of its
    :data:`TAG_PID` and :data:`TAG_PROCESS_START` no longer runs; its nested runs still
    RUNNING go with it. Runs of other hosts, of live processes, or without these tags
    (started by something else) are left alone. Call it at the start of a run; returns
    what was ended (for the caller to say so), tagged :data:`TAG_ENDED_BY`.
    """
    c = client(root)
    host = socket.gethostname()
    running, token = [], None
    while True:
        page = c.search_runs([experiment_id], "attributes.status = 'RUNNING'", page_token=token)
        running += list(page)
        token = page.token
        if not token:
            break
    abandoned: dict[str, AbandonedRun] = {}
    for run in running:
        tags = run.data.tags
        if tags.get(TAG_HOST) != host or not tags.get(TAG_PID, "").isdigit():
            continue
        pid = int(tags[TAG_PID])
        start = tags.get(TAG_PROCESS_START, "")
        if not processes.is_running(pid, int(start) if start.isdigit() else None):
            abandoned[run.info.run_id] = AbandonedRun(run.info.run_id, run.info.run_name, pid)
    grown = True
    while grown:  # nested runs of abandoned runs, at any depth
        grown = False
        for run in running:
            parent = run.data.tags.get("mlflow.parentRunId")
            if parent in abandoned and run.info.run_id not in abandoned:
                abandoned[run.info.run_id] = AbandonedRun(run.info.run_id, run.info.run_name, None)
                grown = True
    for run in abandoned.values():
        why = (
            f"process {run.pid} on {host} had ended" if run.pid else "its parent run was abandoned"
        )
        c.set_tag(run.run_id, TAG_ENDED_BY, f"msc-response: left RUNNING; {why}")
        c.set_terminated(run.run_id, "FAILED")
    return list(abandoned.values())


def artifact_root(uri: str) -> str | None:
    """Artifacts of a local SQLite store live beside the database (``mlruns/``)."""
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).parent.resolve().as_uri()
    return None  # a tracking server decides


def experiment_id(name: str) -> str:
    """The id of experiment ``name``, created (with local artifacts) if it does not exist, and
    tagged for MLflow's classic machine-learning view (:data:`TAG_EXPERIMENT_KIND`).

    Two runs starting at once may both find it missing: the one that loses the race to
    create it uses the other's.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        kind = exp.tags.get(TAG_EXPERIMENT_KIND, "")
        if kind in ("", "no_inferred_type") or kind.endswith("_inferred"):  # not chosen by a person
            mlflow.MlflowClient().set_experiment_tag(
                exp.experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND
            )
        return exp.experiment_id
    root = artifact_root(mlflow.get_tracking_uri())
    location = f"{root}/{name}" if root else None
    try:
        return mlflow.create_experiment(
            name, artifact_location=location, tags={TAG_EXPERIMENT_KIND: EXPERIMENT_KIND}
        )
    except MlflowException as err:
        exp = mlflow.get_experiment_by_name(name)
        if err.error_code != "RESOURCE_ALREADY_EXISTS" or exp is None:
            raise
        return exp.experiment_id


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    """Nested dict to MLflow params: ``{"endpoint": {"score": "meld"}}`` -> ``{"endpoint.score": "meld"}``."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = str(v)
    return out
