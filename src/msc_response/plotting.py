"""Drawing, with matplotlib only: new axes, the performance curves, the SIMULATED label, saving.

Each ``plot_*`` function draws numbers computed elsewhere (the curves of
:mod:`msc_response.modeling.curves`) on ``ax`` (a new :class:`matplotlib.figure.Figure`
when ``ax`` is None, made without pyplot, so nothing global changes: no backend switch,
no open-figure registry, no ``show()``). A figure becomes PNG bytes once
(:func:`png_bytes`): the same bytes go into a page and, written by :func:`save_figure`,
to a run.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd

from . import processes

SIMULATED_LABEL = "SIMULATED data - not patients"
#: How the SIMULATED label is drawn on every figure (pages and runs alike).
SIMULATED_STYLE = {"color": "#b3261e", "fontsize": 9, "fontweight": "bold"}
#: Resolution of every PNG the product writes.
DPI = 110


#: A scatter of patients (one dot or one row of dots each) draws at most this many: beyond it
#: a seeded random sample of them (:func:`patient_sample`), said on the figure and the page.
#: At 100,000 patients the SHAP beeswarm alone took 5.8 s of CPU to draw; 10,000 dots show
#: the same shape. The numbers beside a figure (importances, percentiles) use every patient.
MAX_PATIENT_DOTS = 10_000


def patient_sample(n: int, seed: int) -> np.ndarray | None:
    """The rows a scatter of ``n`` patients draws: None (every one) up to
    :data:`MAX_PATIENT_DOTS`, else that many drawn at random with ``seed``, in row order."""
    if n <= MAX_PATIENT_DOTS:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, MAX_PATIENT_DOTS, replace=False))


def sample_words(n: int, seed: int) -> str:
    """How a figure of :func:`patient_sample`'s rows says what it shows."""
    return f"a random {MAX_PATIENT_DOTS:,} of the {n:,} patients (seed {seed})"


def new_axes(ax=None, figsize=(5, 4.5)):
    """``ax``, or the axes of a new figure that pyplot does not know about."""
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=figsize).add_subplot()


def plot_roc(curve: pd.DataFrame, label: str, ax=None, title: str = "ROC (cross-validated)", *,
             band: pd.DataFrame | None = None, reference: bool = True):  # fmt: skip
    """Draw an ROC curve from :func:`roc_curve` or :func:`mean_roc_curve` (with its band from
    :func:`roc_band` when given; the chance diagonal unless ``reference`` is False, for the
    second and later curves on one set of axes)."""
    ax = new_axes(ax)
    (line,) = ax.plot(curve["fpr"], curve["tpr"], label=label)
    if band is not None:
        ax.fill_between(
            band["fpr"], band["lower"], band["upper"], alpha=0.15, lw=0, color=line.get_color()
        )
    if reference:
        ax.plot([0, 1], [0, 1], ls=":", color="grey")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=title)
    ax.legend(loc="lower right", fontsize=8)
    return ax


def plot_calibration(curve: pd.DataFrame, label: str, ax=None, y=None, p=None, *,
                     title: str = "Calibration (cross-validated)", band: bool = True, reference: bool = True):  # fmt: skip
    """Draw a smoothed calibration curve (with its band unless ``band`` is False); a rug of
    predictions when ``p`` is given; the ideal diagonal unless ``reference`` is False."""
    ax = new_axes(ax)
    if band:
        ax.fill_between(curve["predicted"], curve["lower"], curve["upper"], alpha=0.2, lw=0)
    ax.plot(curve["predicted"], curve["observed"], label=label)
    if reference:
        ax.plot([0, 1], [0, 1], ls=":", color="grey", label="ideal")
    if p is not None:
        p = np.asarray(p, float)
        y = np.zeros_like(p) if y is None else np.asarray(y, float)
        ax.plot(p[y == 1], np.full((y == 1).sum(), 0.99), "|", color="black", ms=6)
        ax.plot(p[y == 0], np.full((y == 0).sum(), 0.01), "|", color="black", ms=6)
    ax.set(xlabel="predicted probability", ylabel="observed proportion (smoothed)",
           xlim=(0, 1), ylim=(0, 1), title=title)  # fmt: skip
    ax.legend(loc="upper left", fontsize=8)
    return ax


def plot_decision(curve: pd.DataFrame, label: str, ax=None, *, title: str = "Decision curve (cross-validated)",
                  band: bool = True, reference: bool = True):  # fmt: skip
    """Draw a decision curve from :func:`decision_curve`; a band if it has ``lower``/``upper``
    (unless ``band`` is False); treat all / treat none unless ``reference`` is False."""
    ax = new_axes(ax)
    if band and {"lower", "upper"} <= set(curve.columns):
        ax.fill_between(curve["threshold"], curve["lower"], curve["upper"], alpha=0.2, lw=0)
    ax.plot(curve["threshold"], curve["model"], label=label)
    if reference:
        ax.plot(curve["threshold"], curve["treat_all"], ls="--", color="black", label="treat all")
        ax.plot(curve["threshold"], curve["treat_none"], ls=":", color="grey", label="treat none")
    low = min(-0.05, float(curve[["model", "treat_all"]].min().min()))
    high = float(curve[["model", "treat_all"]].max().max()) + 0.15
    old_low, old_high = ax.get_ylim() if not reference else (np.inf, -np.inf)
    ax.set(xlabel="threshold probability", ylabel="net benefit",
           ylim=(min(max(low, -0.5), old_low), max(high, old_high)), title=title)  # fmt: skip
    ax.legend(fontsize=8)
    return ax


def png_bytes(ax_or_figure, *, simulated: bool, dpi: int = DPI) -> bytes:
    """The figure of ``ax_or_figure`` as PNG (labelled when the data are simulated).

    ``ax_or_figure`` may also be a function of no arguments that draws it (e.g.
    ``functools.partial(plot_x, data)``): it is called here, so a page whose figures are
    rendered by worker processes has them drawn there too, not in the process writing it."""
    if callable(ax_or_figure):
        ax_or_figure = ax_or_figure()
    fig = getattr(ax_or_figure, "figure", ax_or_figure)
    if simulated:
        fig.suptitle(SIMULATED_LABEL, **SIMULATED_STYLE)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def render_pngs(figures, *, simulated: bool, n_jobs: int = 1) -> list[bytes]:
    """:func:`png_bytes` of each of ``figures``, by ``n_jobs`` worker processes (the same bytes
    as one by one here: a figure travels to its worker whole, drawn; only laying out and
    rasterising, most of a figure's cost, happen there)."""
    from joblib import delayed

    figures = [getattr(f, "figure", f) for f in figures]
    if n_jobs == 1 or len(figures) < 2:
        return [png_bytes(f, simulated=simulated) for f in figures]
    return processes.parallel(n_jobs)(delayed(png_bytes)(f, simulated=simulated) for f in figures)


def save_figure(figure, path, *, simulated: bool = False) -> None:
    """Write ``figure`` (PNG bytes from :func:`png_bytes`, or Axes) to ``path``."""
    data = figure if isinstance(figure, bytes) else png_bytes(figure, simulated=simulated)
    with open(path, "wb") as f:
        f.write(data)


@contextlib.contextmanager
def fixed_global_random(seed: int = 0):
    """NumPy's global generator seeded inside the block, the caller's state given back after it.

    shap's beeswarm jitters its dots with the global generator and takes no seed: without
    this, the same data would give a different picture each time.
    """
    state = np.random.get_state()  # noqa: NPY002 - the legacy global generator is what shap draws from
    np.random.seed(seed)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002
