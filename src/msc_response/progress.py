"""Progress of long jobs, for whoever asked to see it; silent otherwise.

Library code marks its long steps with :func:`task` (a description, the number of steps
when known) and calls the advance function it yields after each step. Nothing is shown
unless the caller installed a :class:`Reporter` with :func:`reporting`: the command line
does (a Rich progress display on stderr, when stderr is a terminal or with
``--progress``). The reporter lives in a context variable, so an API user who installed
none sees nothing and no other caller's setting changes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Protocol


class Reporter(Protocol):
    """What shows progress: one handle per :func:`task`."""

    def start(self, description: str, total: int | None) -> object: ...

    def advance(self, handle: object, steps: int) -> None: ...

    def finish(self, handle: object) -> None: ...


_REPORTER: ContextVar[Reporter | None] = ContextVar("msc_response_progress", default=None)


def _ignore(steps: int = 1) -> None:
    """The advance function when nobody listens."""


@contextlib.contextmanager
def task(description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A long step of ``total`` parts (None: unknown); yields ``advance(steps=1)``."""
    if total is not None and total < 0:
        raise ValueError(f"total: expected a number >= 0 or None, got {total!r}")
    reporter = _REPORTER.get()
    if reporter is None:
        yield _ignore
        return
    handle = reporter.start(description, total)

    def advance(steps: int = 1) -> None:
        reporter.advance(handle, steps)

    try:
        yield advance
    finally:
        reporter.finish(handle)


@contextlib.contextmanager
def reporting(reporter: Reporter | None) -> Iterator[None]:
    """Show the progress of every :func:`task` inside the block with ``reporter`` (None: nothing)."""
    token = _REPORTER.set(reporter)
    try:
        yield
    finally:
        _REPORTER.reset(token)


@contextlib.contextmanager
def timed(seconds: dict[str, float] | None, key: str) -> Iterator[None]:
    """Add the wall time of the block to ``seconds[key]`` (nothing when ``seconds`` is None):
    the scoring job's split of where its time goes."""
    if seconds is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - start
