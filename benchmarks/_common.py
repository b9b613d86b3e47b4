"""Helpers shared by the benchmarks: timing, peak memory and the result file."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
#: The CLI as a child process (so each measured run has its own peak memory).
CLI = [sys.executable, "-m", "msc_response.cli"]


def private_store(prefix: str) -> Path:
    """A temporary work folder whose MLflow store the benchmark (and its children) use."""
    import tempfile

    work = Path(tempfile.mkdtemp(prefix=prefix))
    (work / "mlruns").mkdir()  # an explicit store is never created where its folder is missing
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlruns' / 'mlflow.db'}"
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    return work


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory of this process (or of its finished children), in MiB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


@contextmanager
def timer(store: dict, key: str):
    start = time.perf_counter()
    yield
    store[key] = round(time.perf_counter() - start, 3)


def run_measured(cmd: list[str]) -> dict:
    """Run ``cmd`` in a child process: wall time and peak memory.

    ``peak_rss_mb`` is the peak of the summed resident memory of the whole process tree
    (the command and any workers it starts), sampled every 50 ms; ``peak_rss_single_mb``
    is the exact peak of the largest single process (``getrusage``);
    ``peak_rss_command_mb`` is the peak of the command's own process alone (its high-water
    mark, ``VmHWM``, read every 50 ms: the Spark driver, or the local engine's parent).
    """
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, *cmd], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd!r} failed:\n{proc.stdout}\n{proc.stderr}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    info["wall_s"] = round(time.perf_counter() - start, 3)
    return info


# Runs a command, samples its process tree's memory, reports the peaks.
_MEASURE = r"""
import json, resource, subprocess, sys, tempfile, time
import psutil
log = tempfile.TemporaryFile("w+")  # not a pipe: a chatty child must not block on it
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=log, text=True)
root, peak, own = psutil.Process(p.pid), 0, 0
while p.poll() is None:
    total = 0
    try:
        for q in [root, *root.children(recursive=True)]:
            total += q.memory_info().rss
        with open(f"/proc/{p.pid}/status") as f:
            own = max([own, *(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))])
    except (psutil.Error, OSError, ValueError):
        pass
    peak = max(peak, total)
    time.sleep(0.05)
if p.returncode:
    log.seek(0); sys.stderr.write(log.read()); sys.exit(p.returncode)
single = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"peak_rss_mb": round(max(peak / 2**20, single), 1), "peak_rss_single_mb": round(single, 1),
                  "peak_rss_command_mb": round(own / 2**20, 1)}))
"""


def write_result(name: str, result: dict) -> Path:
    """Write ``benchmarks/results/NAME.json`` with the machine it ran on."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": name,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        **result,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return path


def append_row(path: str | None, row: dict) -> None:
    """Append one trial's row to a JSON-lines file (nothing when ``path`` is None).

    A benchmark stopped early on a shared machine still leaves the trials it finished;
    :func:`read_rows` gives them back for the summary.
    """
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


def read_rows(path: str) -> list[dict]:
    """The rows :func:`append_row` wrote to ``path``."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
