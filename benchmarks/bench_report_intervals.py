"""Are the report's intervals honest? Each one against simulated truth, by the product's own functions.

For each kind of 95% interval the study report and ``validate`` show, ``R`` times: draw a
cohort of realistic size from a population whose value is known, compute the interval
with the product's function (never a copy of it), and check whether it covers the
population value. Reported per kind and cohort size: coverage, mean width and bias of the
point estimate, each with its Monte Carlo standard error (MCSE), and the share of
replicates where the product withheld the interval ("no interval", "too few", not
estimable).

1. ``descriptive`` - :func:`.intervals.proportion` (exact Clopper-Pearson) for the
   responders of each paper endpoint and :func:`.intervals.mean` (t) for the mean change
   of Child-Pugh, MELD and albumin. The population is one SIMULATED trial-design cohort of
   :data:`POOL_N` patients labelled by the product's feature builder
   (:func:`.paper_view.endpoint_labels`); a cohort is ``n`` patients drawn from it with
   replacement, so the population value is exactly the pool's rate or mean. ``n`` = 5 and
   10 are drawn from one arm (the report's per-arm rows), 33 to 300 from all arms.
2. ``auroc_delong`` - :func:`.intervals.auroc_delong`, and 3. ``recalibration_wald`` -
   :func:`.external.logistic_recalibration`, and 4. ``bootstrap`` - every metric of
   :func:`.external.external_performance` (Brier, scaled Brier, calibration intercept and
   slope, ICI, E50, E90, net benefit at 0.3/0.5/0.7; percentile bootstrap over patients,
   :func:`.external.n_boot_for` resamples): the external validation of a fixed prediction
   model ``p = expit(lp)``, ``lp ~ N(0.3, 1)``, in a population where
   ``logit P(y | p) = 0.2 + 0.7 logit(p)`` (an overfitted model, as external validations
   usually find; prevalence 0.59, AUROC 0.68). The recalibration's truth is
   (0.2, 0.7) exactly; every other metric's is its value on :data:`FRESH_N` fresh
   patients by the product's :func:`.metrics.performance`.
5. ``subgroups`` - :func:`.subgroups.subgroup_performance` by sex (35% women, whose
   ``lp`` is shifted by +0.4), for the observed rate, the mean predicted probability (t
   interval on the logit scale) and the AUROC of each sex; truth on :data:`FRESH_N` fresh
   patients.
6. ``fractions`` - :func:`.intervals.mean` with ``within=UNIT_RANGE`` (t on the logit
   scale), as :func:`.paper_view.cell_course` gives the mean MX1+ monocyte fraction by arm and
   day: a SIMULATED trial-design population of :data:`FRACTION_POOL_N`; cohorts of 5 and 10
   from one arm, 33 from all arms, at baseline (day 0) and day 7; truth the pool's mean.
7. ``operating_point`` - :func:`.operating_point.operating_point` (exact intervals of
   sensitivity, specificity, PPV and NPV at the threshold 0.5) for the fixed model of 2-4;
   truth on :data:`FRESH_N` fresh patients.

Run only some parts with ``--parts fractions operating_point``.

Run: ``python -m benchmarks.bench_report_intervals [--replicates 1000]
[--boot-replicates 300] [--jobs 2] [--parts ...]``; the result goes to
``benchmarks/results/report_intervals.json`` and a table to stderr. 23 minutes on this
2-core machine shared with other jobs (the bootstrap part 21; estimated 9 on free cores).
No MLflow store is used.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy import special  # special.expit: joblib's workers cannot unpickle a bare expit

from msc_response.config import config_from_dict
from msc_response.modeling import metrics
from msc_response.reporting import external, intervals, paper_view, subgroups
from msc_response.reporting.operating_point import operating_point
from msc_response.simulator import simulate

from ._common import write_result

LEVEL = intervals.LEVEL
#: Patients in the simulated population of the descriptive part.
POOL_N = 100_000
#: Fresh patients on which the population value of a metric is computed.
FRESH_N = 200_000
#: The prediction model's linear predictor, and the population's truth given it.
LP_MEAN, LP_SD = 0.3, 1.0
TRUE_INTERCEPT, TRUE_SLOPE = 0.2, 0.7
THRESHOLDS = (0.3, 0.5, 0.7)
#: The arm whose patients make the per-arm cohorts (n = 5, 10) of the descriptive part.
ARM = "Ib 2.0e8 x3"
FEMALE_SHARE, FEMALE_SHIFT = 0.35, 0.4
#: Patients in the simulated population of the cell-fraction part.
FRACTION_POOL_N = 20_000
#: The decision threshold of the operating-point part (the config's default).
OPERATING_THRESHOLD = 0.5


# ---------------------------------------------------------------- coverage, with Monte Carlo errors


def coverage(low, high, truth) -> tuple[float, float, int]:
    """Share of replicates whose interval ``[low, high]`` holds ``truth``, its MCSE, and the
    number of replicates with an interval (NaN bounds: withheld, left out)."""
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    truth = np.broadcast_to(np.asarray(truth, dtype=float), low.shape)
    given = np.isfinite(low) & np.isfinite(high)
    hit = ((low <= truth) & (truth <= high))[given].astype(float)
    if len(hit) == 0:
        return float("nan"), float("nan"), 0
    c = float(hit.mean())
    return c, float(np.sqrt(c * (1 - c) / len(hit))), int(len(hit))


def _mean_mcse(x) -> tuple[float, float]:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return float("nan"), float("nan")
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))


def summarise(estimate, low, high, truth) -> dict:
    """Coverage, mean width, bias of the estimate and share withheld, each with its MCSE."""
    estimate = np.asarray(estimate, dtype=float)
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    cov, cov_se, used = coverage(low, high, truth)
    width, width_se = _mean_mcse(high - low)
    bias, bias_se = _mean_mcse(estimate - truth)
    withheld = 1 - used / len(low)
    r = lambda v: round(v, 4)  # noqa: E731
    return {
        "truth": r(float(np.mean(truth))), "replicates": len(low),
        "coverage": r(cov), "coverage_mcse": r(cov_se), "width": r(width), "width_mcse": r(width_se),
        "bias": r(bias), "bias_mcse": r(bias_se),
        "withheld": r(withheld), "withheld_mcse": r(float(np.sqrt(withheld * (1 - withheld) / len(low)))),
    }  # fmt: skip


def replicate(fn: Callable[[np.random.Generator], tuple], R: int, seed: tuple) -> np.ndarray:
    """``R`` rows of ``fn(rng) -> (estimate, low, high)``, replicate ``r`` drawn with the
    generator seeded ``(*seed, r)``; NaN bounds mean withheld."""
    return np.array([fn(np.random.default_rng([*seed, r])) for r in range(R)], dtype=float)


# ---------------------------------------------------------------- 1. proportions and means (simulator)


def descriptive_part(R: int, seed: int) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = paper_view.endpoint_labels(
            config_from_dict({"name": "bench"}), simulate("trial", POOL_N, seed)
        )
    out = {}
    for key, table in labels.items():
        populations = {"one arm": table[table["arm"] == ARM], "all arms": table}
        for pop_name, pop in populations.items():
            sizes = (5, 10) if pop_name == "one arm" else (33, 100, 300)
            y = pop["response"].to_numpy(dtype=int)
            change = pop["change"].to_numpy(dtype=float)
            for n in sizes:

                def prop(rng, y=y, n=n):
                    pr = intervals.proportion(int(y[rng.integers(0, len(y), n)].sum()), n)
                    return pr.estimate, pr.low, pr.high

                rows = replicate(prop, R, (seed, n, 1))
                out[f"responders {key}, {pop_name}, n={n}"] = {
                    "interval": "Clopper-Pearson",
                    "n": n,
                    **summarise(*rows.T, float(y.mean())),
                }
                if key == "child_pugh_sensitivity":
                    continue  # the same change as child_pugh

                def avg(rng, v=change, n=n):
                    m = intervals.mean(v[rng.integers(0, len(v), n)])
                    return m.mean, m.low, m.high

                rows = replicate(avg, R, (seed, n, 2))
                out[f"mean change {key}, {pop_name}, n={n}"] = {
                    "interval": "t", "n": n, **summarise(*rows.T, float(change.mean()))}  # fmt: skip
    return out


# ---------------------------------------------------------------- 2-4. a fixed prediction model


def draw(rng: np.random.Generator, n: int, shift=0.0) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes and the prediction model's probabilities of ``n`` patients of the population."""
    lp = rng.normal(LP_MEAN, LP_SD, n) + shift
    y = (rng.random(n) < special.expit(TRUE_INTERCEPT + TRUE_SLOPE * lp)).astype(int)
    return y, special.expit(lp)


def model_truth(seed: int) -> tuple[dict[str, float], float]:
    """Every metric of :func:`external.external_performance` on :data:`FRESH_N` fresh patients,
    and the standard error of the true AUROC (DeLong, on those patients)."""
    y, p = draw(np.random.default_rng(seed), FRESH_N)
    values, problems = metrics.performance(y, p, THRESHOLDS)
    if problems:
        raise RuntimeError(f"the population's metrics are not estimable: {problems!r}")
    return values, intervals.auroc_delong(y, p).se


def auroc_part(R: int, sizes, truth: dict, seed: int) -> dict:
    out = {}
    for n in sizes:

        def fn(rng, n=n):
            a = intervals.auroc_delong(*draw(rng, n))
            return a.estimate, a.low, a.high

        rows = replicate(fn, R, (seed, n, 3))
        out[f"n={n}"] = {"interval": "DeLong", "n": n, **summarise(*rows.T, truth[metrics.ROC_AUC])}
    return out


def recalibration_part(R: int, sizes, seed: int) -> dict:
    out = {}
    for n in sizes:

        def fn(rng, n=n):
            try:
                r = external.logistic_recalibration(*draw(rng, n))
            except ValueError:  # not estimable: the product refuses, no interval
                return (np.nan,) * 6
            return r.intercept, *r.intercept_ci, r.slope, *r.slope_ci

        rows = replicate(fn, R, (seed, n, 4))
        out[f"intercept, n={n}"] = {
            "interval": "Wald",
            "n": n,
            **summarise(*rows[:, :3].T, TRUE_INTERCEPT),
        }
        out[f"slope, n={n}"] = {"interval": "Wald", "n": n, **summarise(*rows[:, 3:].T, TRUE_SLOPE)}
    return out


def one_external(n: int, r: int, seed: int, names: tuple[str, ...]) -> np.ndarray:
    """One cohort through :func:`external.external_performance`: (estimate, low, high) per metric."""
    rng = np.random.default_rng([seed, n, 5, r])
    y, p = draw(rng, n)
    try:
        ev = external.external_performance(y, p, thresholds=THRESHOLDS, seed=r, unproven=True)
    except ValueError:  # a single outcome class: validate refuses the cohort
        return np.full((len(names), 3), np.nan)
    return np.array([(ev.values[m], *ev.intervals.get(m, (np.nan, np.nan))) for m in names])


def bootstrap_part(R: int, sizes, truth: dict, seed: int, jobs: int) -> dict:
    names = tuple(m for m in truth if m != metrics.ROC_AUC)
    out = {}
    for n in sizes:
        rows = np.stack(
            Parallel(n_jobs=jobs)(delayed(one_external)(n, r, seed, names) for r in range(R))
        )
        for i, m in enumerate(names):
            out[f"{m}, n={n}"] = {"interval": "percentile bootstrap", "n": n,
                                  "n_boot": external.n_boot_for(n), **summarise(*rows[:, i].T, truth[m])}  # fmt: skip
    return out


# ---------------------------------------------------------------- 5. subgroups


def subgroup_draw(rng: np.random.Generator, n: int):
    female = rng.random(n) < FEMALE_SHARE
    y, p = draw(rng, n, shift=FEMALE_SHIFT * female)
    return pd.DataFrame({"sex": np.where(female, "female", "male")}), y, p


def subgroup_truth(seed: int) -> dict[str, dict[str, float]]:
    groups, y, p = subgroup_draw(np.random.default_rng(seed), FRESH_N)
    out = {}
    for level in ("female", "male"):
        mask = (groups["sex"] == level).to_numpy()
        out[level] = {"observed": float(y[mask].mean()), "predicted": float(p[mask].mean()),
                      "auroc": metrics.roc_auc(y[mask], p[mask])}  # fmt: skip
    return out


def subgroup_part(R: int, sizes, seed: int) -> dict:
    truth = subgroup_truth(seed + 1)
    cols = ("observed", "predicted", "auroc")
    out = {}
    for n in sizes:

        def fn(rng, n=n):
            table = subgroups.subgroup_performance(*subgroup_draw(rng, n)).set_index("level")
            return [table.loc[lv, [c, f"{c}_low", f"{c}_high"]].to_numpy(dtype=float)
                    if lv in table.index else [np.nan] * 3 for lv in ("female", "male") for c in cols]  # fmt: skip

        rows = np.array([fn(np.random.default_rng([seed, n, 6, r])) for r in range(R)], dtype=float)
        k = 0
        for level in ("female", "male"):
            for c in cols:
                kind = {
                    "observed": "Clopper-Pearson",
                    "predicted": "t, logit scale",
                    "auroc": "DeLong",
                }[c]
                out[f"{c} {level}, n={n}"] = {"interval": kind, "n": n,
                                               **summarise(*rows[:, k].T, truth[level][c])}  # fmt: skip
                k += 1
    return out


# ---------------------------------------------------------------- 6. cell fractions (simulator)


def fraction_part(R: int, seed: int) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = simulate("trial", FRACTION_POOL_N, seed)
    arms = paper_view.regimen_groups(study.patients)[["patient_id", "arm"]]
    cells = study.cells
    frame = pd.DataFrame({
        "patient_id": study.patients["patient_id"].to_numpy()[cells["pidx"].to_numpy()],
        "population": cells["population"].astype(str).to_numpy(), "day": cells["day"].to_numpy(dtype=int),
        "fraction": cells["fraction"].to_numpy(dtype=float),
    }).merge(arms, on="patient_id")  # fmt: skip
    population = sorted(frame["population"].unique())[0]
    out = {}
    for day in (0, 7):
        part = frame[(frame["population"] == population) & (frame["day"] == day)]
        for pop_name, values, sizes in (("one arm", part.loc[part["arm"] == ARM, "fraction"], (5, 10)),
                                        ("all arms", part["fraction"], (33,))):  # fmt: skip
            v = values.to_numpy(dtype=float)
            if len(v) == 0:
                continue
            for n in sizes:

                def fn(rng, v=v, n=n):
                    m = intervals.mean(v[rng.integers(0, len(v), n)], within=intervals.UNIT_RANGE)
                    return m.mean, m.low, m.high

                rows = replicate(fn, R, (seed, n, 7, day))
                out[f"mean {population} day {day}, {pop_name}, n={n}"] = {
                    "interval": "t, logit scale", "n": n, **summarise(*rows.T, float(v.mean()))}  # fmt: skip
    return out


# ---------------------------------------------------------------- 7. operating point


def operating_truth(seed: int) -> dict[str, float]:
    y, p = draw(np.random.default_rng(seed), FRESH_N)
    return {
        k: pr.estimate for k, pr in operating_point(y, p, OPERATING_THRESHOLD).measures().items()
    }


def operating_part(R: int, sizes, seed: int) -> dict:
    truth = operating_truth(seed + 2)
    names = tuple(truth)
    out = {}
    for n in sizes:

        def fn(rng, n=n):
            ms = operating_point(*draw(rng, n), OPERATING_THRESHOLD).measures()
            return [(ms[k].estimate, ms[k].low, ms[k].high) for k in names]

        rows = np.array([fn(np.random.default_rng([seed, n, 8, r])) for r in range(R)], dtype=float)
        for i, k in enumerate(names):
            out[f"{k} at {OPERATING_THRESHOLD}, n={n}"] = {"interval": "Clopper-Pearson", "n": n,
                                                          **summarise(*rows[:, i].T, truth[k])}  # fmt: skip
    return out


# ---------------------------------------------------------------- the run


def table_lines(result: dict) -> list[str]:
    lines = ["| part | what, cohort size | interval | coverage (MCSE) | mean width | bias (MCSE) | withheld |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for part, rows in result.items():
        if not isinstance(rows, dict) or part in ("truth", "parameters"):
            continue
        for name, s in rows.items():
            if isinstance(s, dict) and "coverage" in s:
                lines.append(
                    f"| {part} | {name} | {s['interval']} | {s['coverage']:.3f} ({s['coverage_mcse']:.3f}) | "
                    f"{s['width']:.3f} | {s['bias']:+.4f} ({s['bias_mcse']:.4f}) | {100 * s['withheld']:.1f}% |"
                )
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--replicates", type=int, default=1000, help="replicates of the cheap intervals"
    )
    ap.add_argument(
        "--boot-replicates", type=int, default=300, help="replicates of external_performance"
    )
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=20261126)
    parts = ("descriptive", "auroc_delong", "recalibration_wald", "subgroups", "fractions", "operating_point",
             "bootstrap")  # fmt: skip
    ap.add_argument(
        "--parts", nargs="+", choices=parts, default=list(parts), help="the parts to run"
    )
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    sizes = (33, 100, 300)
    truth, truth_auc_se = model_truth(args.seed)
    result = {
        "parameters": {"replicates": args.replicates, "boot_replicates": args.boot_replicates, "parts": args.parts,
                       "pool_n": POOL_N, "fresh_n": FRESH_N, "lp": [LP_MEAN, LP_SD],
                       "true_recalibration": [TRUE_INTERCEPT, TRUE_SLOPE], "level": LEVEL, "seed": args.seed},
        "truth": {**{k: round(v, 4) for k, v in truth.items()}, "roc_auc_se": round(truth_auc_se, 5)},
    }  # fmt: skip
    seconds = {}
    for part, run in [
        ("descriptive", lambda: descriptive_part(args.replicates, args.seed)),
        ("auroc_delong", lambda: auroc_part(args.replicates, sizes, truth, args.seed)),
        ("recalibration_wald", lambda: recalibration_part(args.replicates, sizes, args.seed)),
        ("subgroups", lambda: subgroup_part(args.replicates, (33, 100), args.seed)),
        ("fractions", lambda: fraction_part(args.replicates, args.seed)),
        ("operating_point", lambda: operating_part(args.replicates, sizes, args.seed)),
        (
            "bootstrap",
            lambda: bootstrap_part(args.boot_replicates, sizes, truth, args.seed, args.jobs),
        ),
    ]:
        if part not in args.parts:
            continue
        start = time.perf_counter()
        result[part] = run()
        seconds[part] = round(time.perf_counter() - start, 1)
        print(f"{part}: {seconds[part]} s", file=sys.stderr)
    result["seconds"] = {**seconds, "total": round(time.perf_counter() - t0, 1)}
    # a run of some parts does not overwrite the result of all of them
    partial = "" if set(args.parts) == set(parts) else "_" + "_".join(args.parts)
    write_result("report_intervals" + partial, result)
    print("\n".join(table_lines(result)), file=sys.stderr)


if __name__ == "__main__":
    main()
