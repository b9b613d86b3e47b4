"""Train and score against a tracking server on PostgreSQL versus the local SQLite store.

`msc-response train` of the Child-Pugh experiment on the SIMULATED trial, then `score` of a
20,000-patient screening cohort with that model, each on both stores (alternating, best of
``--repeats``), and four `train`s at once on the server (the four-user run of
tests/test_server.py) with its total wall time. Needs PostgreSQL (`make server` installs it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from msc_response import server as tracking_server
from msc_response.simulator import write_simulation as simulate

from ._common import CLI, run_measured, write_result

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "child_pugh_day28.yaml"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_store(uri: str, cmd: list[str]) -> dict:
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        return run_measured(cmd)
    finally:
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI")
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--score-patients", type=int, default=20_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_server_", dir="/tmp"))
    work.chmod(0o755)  # as root, PostgreSQL's user must enter the server's folder
    data = work / "server"
    port, pg_port = _free_port(), _free_port()
    load_start = os.getloadavg()  # timings on a shared machine are upper bounds: say how busy
    started = time.perf_counter()
    url = tracking_server.start(data, port, pg_port, auth=False,
                                mlflow=str(Path(sys.executable).with_name("mlflow")))  # fmt: skip
    server_start_s = round(time.perf_counter() - started, 1)
    try:
        (work / "mlruns").mkdir()
        stores = {"sqlite": f"sqlite:///{work / 'mlruns' / 'mlflow.db'}", "server": url}
        simulate(work / "trial", design="trial", seed=20250238, h5ad_patients=0)
        simulate(work / "screen", design="screening", n_patients=args.score_patients, seed=7,
                 fmt="parquet", h5ad_patients=0)  # fmt: skip
        train = {k: [] for k in stores}
        score = {k: [] for k in stores}
        for _ in range(args.repeats):
            for name, uri in stores.items():
                train[name].append(_with_store(uri, [*CLI, "train", "--config", str(EXPERIMENT),
                                                     "--data", str(work / "trial")]))  # fmt: skip
                score[name].append(_with_store(uri, [
                    *CLI, "score", "--model", "models:/child-pugh-day28@exploratory",
                    "--data", str(work / "screen"), "--out", str(work / f"p-{name}-{len(score[name])}.parquet")
                ]))  # fmt: skip
        best = {
            kind: {k: min(r["wall_s"] for r in runs) for k, runs in table.items()}
            for kind, table in (("train", train), ("score", score))
        }

        def one(k: int) -> subprocess.CompletedProcess:
            env = {**os.environ, "MLFLOW_TRACKING_URI": url}
            return subprocess.run([*CLI, "train", "--config", str(EXPERIMENT), "--data",
                                   str(work / "trial")], capture_output=True, env=env)  # fmt: skip

        started = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            codes = [r.returncode for r in pool.map(one, range(4))]
        four_users_s = round(time.perf_counter() - started, 1)
        write_result("server", {
            "load_average_1_5_15": {"start": load_start, "end": os.getloadavg()},
            "server_start_s": server_start_s,
            "train_s": {k: [r["wall_s"] for r in runs] for k, runs in train.items()},
            "score_s": {k: [r["wall_s"] for r in runs] for k, runs in score.items()},
            "train_best_s": best["train"], "score_best_s": best["score"],
            "train_server_over_sqlite": round(best["train"]["server"] / best["train"]["sqlite"], 2),
            "score_server_over_sqlite": round(best["score"]["server"] / best["score"]["sqlite"], 2),
            "score_patients": args.score_patients,
            "four_trains_at_once_s": four_users_s, "four_trains_exit_codes": codes,
            "one_train_server_s": best["train"]["server"], "repeats": args.repeats,
        })  # fmt: skip
    finally:
        tracking_server.stop(data)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
