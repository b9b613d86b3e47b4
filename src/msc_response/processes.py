"""The lifetime of this program's processes: who is still running, and what ends with whom.

- A process is known by its pid *and its start time* (:func:`identity`): pids are
  reused, so a pid alone cannot tell a leftover of a dead run from the work of a live one
  (in a container every run may get the same small pid).
- Scoring workers end when the job that started them ends, however it ends, SIGKILL
  included (:func:`exit_with`).
- SIGTERM and SIGINT raise an exception in the main thread (:func:`signals_raise`), so
  ``finally`` blocks and context managers run: temporary files are removed, an MLflow
  run is ended as KILLED.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator

import psutil

#: How often a worker without ``pidfd_open`` checks that its job still runs.
POLL_SECONDS = 0.5


class Terminated(SystemExit):
    """SIGTERM arrived: raised in the main thread; the exit status is 143 (128 + SIGTERM)."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(128 + signum)
        self.signum = signum


def identity(pid: int | None = None) -> tuple[int, int]:
    """``(pid, start)`` of a running process (this one by default); ``start`` in 1/100 s."""
    pid = os.getpid() if pid is None else pid
    return pid, round(psutil.Process(pid).create_time() * 100)


def is_running(pid: int, start: int | None = None) -> bool:
    """Whether process ``pid`` (started at ``start``, see :func:`identity`) still runs.

    Without ``start`` (names written by older versions) any process with that pid counts.
    A zombie (dead, not yet reaped by its parent) does not.
    """
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        # psutil derives the start time from the same clock-tick count in every process;
        # one tick of slack for rounding
        return start is None or abs(round(process.create_time() * 100) - start) <= 1
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process: it exists
        return True


def exit_with(pid: int, start: int) -> None:
    """Make this process exit as soon as process ``(pid, start)`` ends (a worker's initializer).

    A parent-death signal alone is not enough for scoring workers: they are children of
    multiprocessing's fork server, not of the job, and the fork server outlives the job
    (every worker holds its "alive" pipe open). So a daemon thread waits on a pidfd of the
    job (Linux >= 5.3; polling elsewhere) and ends the worker with ``os._exit``; the fork
    server then sees its last client gone and exits too. The parent-death signal is set as
    well, for a worker whose fork server is killed.
    """
    _set_parent_death_signal(signal.SIGKILL)
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux, an old kernel, or already gone
        fd = None

    def watch() -> None:
        if fd is not None and is_running(pid, start):  # the pidfd is of the right process
            select.select([fd], [], [])  # readable once the process has ended
        else:
            while is_running(pid, start):
                time.sleep(POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="msc-response-exit-with-job", daemon=True).start()


def parallel(n_jobs: int, **options):
    """joblib's ``Parallel`` over worker processes that end with this one (:func:`exit_with`).

    Results come back in submission order. The workers (loky's) are reused between calls;
    without the initializer they idled on for minutes after a SIGKILL, holding this
    process's stdout and stderr. ``options`` go to ``Parallel`` (e.g. ``return_as``).
    """
    from joblib import Parallel

    return Parallel(n_jobs=n_jobs, prefer="processes", initializer=exit_with, initargs=identity(),
                    **options)  # fmt: skip


def _set_parent_death_signal(signum: int) -> None:
    """``prctl(PR_SET_PDEATHSIG, signum)`` on Linux; nothing elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, signum, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def _raise_terminated(signum, frame):
    raise Terminated(signum)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Inside the block SIGTERM raises :class:`Terminated` and SIGINT ``KeyboardInterrupt``.

    The previous handlers are restored on the way out. A signal ignored before (a job
    started in the background with ``nohup`` or ``&``) stays ignored. Outside the main
    thread (where Python cannot set handlers) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for signum, handler in ((signal.SIGTERM, _raise_terminated), (signal.SIGINT, _raise_interrupt)):
        before = signal.getsignal(signum)
        if before is signal.SIG_IGN:
            continue
        previous[signum] = before
        signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, before in previous.items():
            # None: a handler set outside Python, which cannot be put back; the default is
            signal.signal(signum, signal.SIG_DFL if before is None else before)


#: The test hook, read in one place (:func:`checkpoint`): a process whose environment names
#: one of its checkpoints kills itself there with SIGKILL (what a power cut or the OOM
#: killer does), so tests can stop a job exactly between two of its steps.
KILL_AT_ENV = "MSC_RESPONSE_KILL_AT"


def checkpoint(name: str) -> None:
    """A named point of a job where tests may kill it (see :data:`KILL_AT_ENV`); nothing
    happens otherwise."""
    if os.environ.get(KILL_AT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
