"""A team's MLflow tracking server: PostgreSQL behind it, artifacts served by it.

    python -m msc_response.server start --data DIR [--port 5005] [--pg-port 5433] [--auth]
    python -m msc_response.server stop --data DIR
    python -m msc_response.server status --data DIR

``start`` creates (once) a PostgreSQL cluster under ``DIR/pg`` with a database and a login role
``mlflow`` whose random password is kept in ``DIR/credentials.json`` (mode 600), starts it on
127.0.0.1:PG_PORT, then starts ``mlflow server`` on 127.0.0.1:PORT with that database as its
backend store and ``DIR/artifacts`` as the artifact root it serves (``--serve-artifacts``). With
``--auth`` the server runs MLflow's basic-auth app (users in ``DIR/basic_auth.db``; the admin's
random password in the credentials file). ``stop`` stops exactly what ``start`` started, found
by the PID files in DIR (the MLflow server's process group, then PostgreSQL by ``pg_ctl stop``),
and nothing else. Standard library only (the server itself needs ``mlflow`` and ``psycopg``,
the package's ``server`` extra); it imports nothing of the project.

PostgreSQL comes from the distribution's packages (Debian: ``apt-get install postgresql``);
``make server`` installs it where it is missing. As root, PostgreSQL refuses to run: the cluster
then belongs to the ``postgres`` user, which must be able to reach DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROLE = DATABASE = "mlflow"
ADMIN = "admin"
WAIT_S = 300  # a busy machine starts MLflow's server in about a minute


class ServerError(RuntimeError):
    """Something the person starting the server must fix; said in one line."""


def postgres_bin() -> Path:
    """The newest PostgreSQL server binaries' folder."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise ServerError(
        "PostgreSQL is not installed (no initdb): `apt-get install postgresql` (make server does it)"
    )


def _as_owner(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Run a PostgreSQL command as the cluster's owner (``postgres`` when we are root)."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def _reachable_by_postgres(folder: Path) -> None:
    if os.geteuid() != 0:
        return
    probe = subprocess.run(
        ["runuser", "-u", "postgres", "--", "test", "-x", str(folder)], capture_output=True
    )
    if probe.returncode != 0:
        raise ServerError(
            f"--data {str(folder)!r}: as root, PostgreSQL runs as the 'postgres' user, which cannot "
            "reach this folder; choose a folder whose parents it can enter (e.g. under /srv or /tmp)"
        )


def _credentials(data: Path) -> dict:
    path = data / "credentials.json"
    if path.exists():
        return json.loads(path.read_text())
    creds = {
        "db_password": secrets.token_urlsafe(24),
        "admin_password": secrets.token_urlsafe(18),
        "flask_secret_key": secrets.token_urlsafe(
            32
        ),  # the auth app's CSRF key, kept across restarts
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(creds, fh)
    return creds


def _pg_running(pgdata: Path, bindir: Path) -> bool:
    if not (pgdata / "postmaster.pid").exists():
        return False
    return _status(bindir, pgdata) == 0


def _status(bindir: Path, pgdata: Path) -> int:
    cmd = [str(bindir / "pg_ctl"), "-D", str(pgdata), "status"]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, capture_output=True).returncode


def start_postgres(data: Path, pg_port: int) -> dict:
    bindir = postgres_bin()
    pgdata = data / "pg"
    creds = _credentials(data)
    _reachable_by_postgres(data)
    fresh = not (pgdata / "PG_VERSION").exists()
    if fresh:
        pgdata.mkdir(mode=0o700, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(pgdata, "postgres", "postgres")
        pwfile = data / ".pgpass-init"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(creds["db_password"])
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        try:
            # the superuser is the mlflow role itself on this private cluster: password login
            # over TCP only (scram), no local socket trust
            _as_owner([str(bindir / "initdb"), "-D", str(pgdata), "-U", ROLE, "--pwfile",
                       str(pwfile), "--auth=scram-sha-256", "-E", "UTF8", "--locale=C"])  # fmt: skip
        finally:
            pwfile.unlink()
    if not _pg_running(pgdata, bindir):
        sockets = pgdata  # the socket lives with the cluster, not in a shared /var/run
        _as_owner([str(bindir / "pg_ctl"), "-D", str(pgdata), "-l", str(pgdata / "server.log"),
                   "-w", "-t", str(WAIT_S), "-o",
                   f"-p {pg_port} -k {sockets} -c listen_addresses=127.0.0.1",
                   "start"])  # fmt: skip
    if fresh:
        env = {**os.environ, "PGPASSWORD": creds["db_password"]}
        subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(pg_port), "-U", ROLE,
                        DATABASE], check=True, capture_output=True, env=env)  # fmt: skip
    return creds


def _wait_for_http(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(
                f"mlflow server exited with {proc.returncode}; see {log}:\n{_tail(log)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise ServerError(
        f"mlflow server did not answer on {url} within {WAIT_S} s; see {log}:\n{_tail(log)}"
    )


def _tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def start(data: Path, port: int, pg_port: int, auth: bool, mlflow: str) -> str:
    data.mkdir(parents=True, exist_ok=True)
    data = data.resolve()
    pidfile = data / "mlflow.pid"
    if pidfile.exists() and _alive_mlflow(int(pidfile.read_text())):
        raise ServerError(f"a server started from {data} already runs (pid {pidfile.read_text()})")
    creds = start_postgres(data, pg_port)
    (data / "artifacts").mkdir(exist_ok=True)
    backend = f"postgresql+psycopg://{ROLE}:{creds['db_password']}@127.0.0.1:{pg_port}/{DATABASE}"
    cmd = [mlflow, "server", "--backend-store-uri", backend,
           "--artifacts-destination", str(data / "artifacts"), "--serve-artifacts",
           "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]  # fmt: skip
    env = dict(os.environ)
    if auth:
        ini = data / "basic_auth.ini"
        ini.write_text(
            "[mlflow]\ndefault_permission = READ\n"
            f"database_uri = sqlite:///{data / 'basic_auth.db'}\n"
            f"admin_username = {ADMIN}\nadmin_password = {creds['admin_password']}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        os.chmod(ini, 0o600)
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
        env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = creds["flask_secret_key"]
        cmd += ["--app-name", "basic-auth"]
    log = data / "mlflow.log"
    with open(log, "ab") as out:
        # its own session: stop signals the whole group (gunicorn/uvicorn workers included)
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, cwd=data)  # fmt: skip
    pidfile.write_text(str(proc.pid))
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_http(url + "/health", proc, log)
    except ServerError:
        stop(data)
        raise
    return url


def _alive_mlflow(pid: int) -> bool:
    """The process exists and is an mlflow server (not a later process with a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"mlflow" in cmdline and b"server" in cmdline


def stop(data: Path) -> list[str]:
    data = data.resolve()
    stopped = []
    pidfile = data / "mlflow.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text())
        if _alive_mlflow(pid):
            os.killpg(pid, signal.SIGTERM)
            for _ in range(100):
                if not _alive_mlflow(pid):
                    break
                time.sleep(0.1)
            else:
                os.killpg(pid, signal.SIGKILL)
            stopped.append(f"mlflow server (pid {pid})")
        pidfile.unlink()
    pgdata = data / "pg"
    if (pgdata / "postmaster.pid").exists():
        bindir = postgres_bin()
        if _status(bindir, pgdata) == 0:
            _as_owner([str(bindir / "pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"])
            stopped.append("postgresql")
    return stopped


def status(data: Path) -> str:
    data = data.resolve()
    pidfile = data / "mlflow.pid"
    server = pidfile.exists() and _alive_mlflow(int(pidfile.read_text()))
    pg = (data / "pg" / "postmaster.pid").exists()
    return f"mlflow server: {'running' if server else 'stopped'}; postgresql: {'running' if pg else 'stopped'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="folder for the database, artifacts, logs, PID files",
    )
    parser.add_argument(
        "--port", type=int, default=5005, help="the tracking server's port (default 5005)"
    )
    parser.add_argument(
        "--pg-port", type=int, default=5433, help="PostgreSQL's port (default 5433)"
    )
    parser.add_argument("--auth", action="store_true", help="MLflow's basic-auth app in front")
    parser.add_argument("--mlflow", default=str(Path(sys.executable).with_name("mlflow")),
                        help="the mlflow executable (default: beside this Python)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            url = start(args.data, args.port, args.pg_port, args.auth, args.mlflow)
            print(f"MLflow tracking server on {url} (PostgreSQL on 127.0.0.1:{args.pg_port}); "
                  f"export MLFLOW_TRACKING_URI={url}")  # fmt: skip
            if args.auth:
                print(f"basic auth: user {ADMIN!r}, password in {args.data / 'credentials.json'}")
        elif args.action == "stop":
            stopped = stop(args.data)
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        else:
            print(status(args.data))
    except (ServerError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", "") or ""
        print(f"error: {err}" + (f"\n{detail.strip()}" if detail else ""), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
