"""Are the benefit claims true? Simulated RCTs per MX1+ scenario and size, against the truth.

Each replicate simulates a randomised trial (``simulate --design rct``, 1:1, stratified
permuted blocks) in which every patient's potential outcomes are known, builds the
features with the product's feature builder, and runs the product's validation for
benefit (:func:`msc_response.modeling.benefit_validation.validate_benefit`, primary model
``risk_constant``, cross-fitted, no pair bootstrap to save time). Reported per scenario
and size, each with its Monte Carlo standard error (MCSE):

* ATE (difference of response proportions, Newcombe interval): bias and coverage against
  the trial's own mean true benefit (sample ATE) and against the population ATE (the
  mean true benefit over every patient the benchmark simulated for the scenario).
* Group benefits: coverage of the Newcombe interval of the observed benefit in each MX1+
  quartile and in each quarter of predicted benefit (cross-fitted), against the mean true
  benefit of the group's patients; the mean predicted minus true benefit of the group.
* c-for-benefit as reported (cross-fitted predictions) and as computed with the true
  benefits (the best any model could report on the same outcomes).
* The MX1+ verdict: how often the interaction is called ``predictive`` (odds-ratio scale,
  the pre-specified parametric-bootstrap LR test; beside it the Wald test it replaced and
  the risk-difference scale, on the same trials): a false promotion rate where
  MX1+ is only prognostic or neither, the power where it is predictive or both.

Run: ``python -m benchmarks.bench_benefit [--replicates 200] [--replicates-large 100]
[--rounds 8] [--jobs 2] [--roles neither prognostic ...] [--sizes 140] [--first I]
[--rows-file rows.jsonl]``; a scenario or size left out keeps the seeds it has in a full run
(the same trials), and ``--first I`` starts each cell at its trial ``I`` (to extend an
earlier run with new trials); every cell advances each round and the result is rewritten
after each (``benchmarks/results/benefit.json``, ``rounds_done``), so a run stopped early
still reports even cells; with ``--rows-file`` each trial's row is appended as it finishes,
and ``--summarise-rows FILE ...`` makes the result (and the table) from such files alone,
for a stopped run or runs over complementary seeds. A table goes to stderr. No MLflow
store is used.

Two lighter modes, each over the same seeds as a full run (its first trials are the full run's):

* ``--verdict N``: the MX1+ verdict only (no benefit model) on N RCTs per scenario at the
  first ``--sizes``: the pre-specified bootstrap LR rule beside the Wald and chi-square LR
  tests; ``benchmarks/results/benefit_verdict.json``.
* ``--intervals N [--interval-boot B]``: the c-for-benefit and Eavg-for-benefit intervals
  (B refits each, as the product computes them) against the true c- and Eavg-for-benefit
  of the model fitted on the whole trial, computed from the true probabilities of 4,000
  simulated patients of the scenario; beside it the pair-bootstrap interval the product
  reported before, on the same trials; ``benchmarks/results/benefit_intervals.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import warnings

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from msc_response.config import load_config
from msc_response.features import build_features
from msc_response.modeling import benefit as bm
from msc_response.modeling import benefit_validation as bv
from msc_response.simulator import rct, simulate

from ._common import RESULTS, append_row, read_rows

SIZES = (140, 1000)
CONFIG = load_config({"name": "bench-benefit"})


def replicate(role: str, n: int, seed: int) -> dict:
    warnings.simplefilter("ignore")
    study = simulate("rct", n, seed, rct_design=rct.RctDesign(mx1_role=role))
    fs = build_features(CONFIG, study)
    data = bm.benefit_data(fs, study.patients, "arm", rct.CONTROL_ARM.name)
    truth = study.truth.set_index(study.truth["patient_id"].astype(str)).loc[data.patient_id]
    true_benefit = truth["true_benefit"].to_numpy()
    v = bv.validate_benefit(data.X, data.treated, data.y, data.mx1, seed=seed, n_boot=0)
    t, y = data.treated, data.y
    by_mx1 = bv.group_table(
        bv.quartiles(bv.mx1_scale(data.mx1)), t, y, v.predicted_benefit, true_benefit
    )
    by_pred = bv.group_table(
        bv.quartiles(v.predicted_benefit), t, y, v.predicted_benefit, true_benefit
    )
    oracle = bv.matched_pairs(true_benefit, t, y)
    inter = v.interaction
    return {
        "role": role,
        "n": n,
        "seed": seed,
        "ate": v.ate.estimate,
        "ate_low": v.ate.low,
        "ate_high": v.ate.high,
        "sate": float(true_benefit.mean()),
        "mx1_cover": float(
            ((by_mx1["low"] <= by_mx1["true"]) & (by_mx1["true"] <= by_mx1["high"])).mean()
        ),
        "pred_cover": float(
            ((by_pred["low"] <= by_pred["true"]) & (by_pred["true"] <= by_pred["high"])).mean()
        ),
        "pred_minus_true": float((by_pred["predicted"] - by_pred["true"]).mean()),
        "pred_top_minus_bottom_true": float(by_pred["true"].iloc[-1] - by_pred["true"].iloc[0]),
        "c_for_benefit": v.c_for_benefit.estimate,
        "c_for_benefit_true": bv.concordance(oracle.predicted, oracle.observed),
        "eavg_for_benefit": v.eavg_for_benefit.estimate,
        "predictive_or": inter["verdict"] == "predictive",
        # the rule before the bootstrap LR test (Wald, odds-ratio scale), on the same trial
        "predictive_wald": bool(inter.get("interaction_log_or", {}).get("p", 1.0) < bv.ALPHA),
        "predictive_rd": bool(inter.get("interaction_rd", {}).get("p", 1.0) < bv.ALPHA),
        "prognostic_called": inter["verdict"] == "prognostic",
    }


def verdict_replicate(role: str, n: int, seed: int) -> dict:
    """The MX1+ verdict only (it needs outcome, arm and MX1+, not the benefit model): the
    pre-specified rule beside the Wald and chi-square LR tests, on the same trial and seed
    as :func:`replicate`."""
    warnings.simplefilter("ignore")
    study = simulate("rct", n, seed, rct_design=rct.RctDesign(mx1_role=role))
    data = bm.benefit_data(
        build_features(CONFIG, study), study.patients, "arm", rct.CONTROL_ARM.name
    )
    inter = bv.interaction_test(data.y, data.treated, data.mx1, seed=seed)
    lr = inter.get("interaction_lr", {})
    return {
        "role": role,
        "n": n,
        "seed": seed,
        "predictive_or": inter["verdict"] == "predictive",
        "predictive_wald": bool(inter.get("interaction_log_or", {}).get("p", 1.0) < bv.ALPHA),
        "predictive_lr_chi2": bool(lr.get("p_chi2", 1.0) < bv.ALPHA),
        "p_bootstrap": lr.get("p", float("nan")),
    }


POPULATION = 4000  # patients whose true probabilities give a fitted model's true metrics


@functools.cache
def population(role: str):
    """A large simulated cohort of the scenario (1:1 randomised; fixed seed apart from the
    trials'): its baseline covariates, arms and true response probabilities."""
    study = simulate("rct", POPULATION, 999_983, rct_design=rct.RctDesign(mx1_role=role))
    data = bm.benefit_data(
        build_features(CONFIG, study), study.patients, "arm", rct.CONTROL_ARM.name
    )
    truth = study.truth.set_index(study.truth["patient_id"].astype(str)).loc[data.patient_id]
    return data, truth["p_response_treated"].to_numpy(), truth["p_response_control"].to_numpy()


def pair_bootstrap_c(pairs, seed: int, n_boot: int = 200) -> tuple[float, float]:
    """The interval the product reported before (matched pairs resampled, predictions held
    fixed), for comparison on the same trial."""
    rng = np.random.default_rng(seed)
    m = len(pairs.observed)
    draws = [bv.concordance(pairs.predicted[i], pairs.observed[i])
             for i in (rng.integers(0, m, m) for _ in range(n_boot))]  # fmt: skip
    low, high = np.nanquantile(draws, [0.025, 0.975])
    return float(low), float(high)


def interval_replicate(role: str, n: int, seed: int, n_boot: int) -> dict:
    """c- and Eavg-for-benefit intervals (refitting bootstrap, as reported) against the true
    c- and Eavg-for-benefit of the model fitted on the whole trial, computed on
    :func:`population` from the true probabilities (no outcome noise)."""
    warnings.simplefilter("ignore")
    study = simulate("rct", n, seed, rct_design=rct.RctDesign(mx1_role=role))
    data = bm.benefit_data(
        build_features(CONFIG, study), study.patients, "arm", rct.CONTROL_ARM.name
    )
    v = bv.validate_benefit(data.X, data.treated, data.y, seed=seed, n_boot=n_boot)
    model = bm.fit_benefit_model(bm.PRIMARY, data.X, data.treated, data.y, seed)
    pop, p1, p0 = population(role)
    benefit = model.benefit(pop.X)
    ti, ci = bv.match_on_benefit(benefit, pop.treated)
    pred = (benefit[ti] + benefit[ci]) / 2
    true_pair = p1[ti] - p0[ci]
    c_true = bv.expected_c_for_benefit(benefit, pop.treated, p1, p0)
    e_true = float(np.mean(np.abs(bv.loess(pred, true_pair) - pred)))
    old_low, old_high = pair_bootstrap_c(v.pairs, seed)
    c, e = v.c_for_benefit, v.eavg_for_benefit
    return {"role": role, "n": n, "seed": seed, "c": c.estimate, "c_true": c_true,
            "c_cover": c.low <= c_true <= c.high, "c_width": c.high - c.low,
            "c_cover_pairs": old_low <= c_true <= old_high, "c_width_pairs": old_high - old_low,
            "eavg": e.estimate, "eavg_true": e_true, "eavg_cover": e.low <= e_true <= e.high,
            "eavg_width": e.high - e.low}  # fmt: skip


def _rate(x) -> dict:
    x = np.asarray(x, dtype=float)
    p = float(x.mean())
    return {"value": round(p, 4), "mcse": round(float(np.sqrt(p * (1 - p) / len(x))), 4)}


def _mean(x) -> dict:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return {
        "value": round(float(x.mean()), 4),
        "mcse": round(float(x.std(ddof=1) / np.sqrt(len(x))), 4),
        "n": len(x),
    }


def summarise(rows: pd.DataFrame, population_ate: float) -> dict:
    cover_sate = (rows["ate_low"] <= rows["sate"]) & (rows["sate"] <= rows["ate_high"])
    cover_pate = (rows["ate_low"] <= population_ate) & (population_ate <= rows["ate_high"])
    return {
        "replicates": len(rows),
        "population_ate": round(population_ate, 4),
        "ate_bias_vs_sample_ate": _mean(rows["ate"] - rows["sate"]),
        "ate_bias_vs_population_ate": _mean(rows["ate"] - population_ate),
        "ate_coverage_sample_ate": _rate(cover_sate),
        "ate_coverage_population_ate": _rate(cover_pate),
        "ate_ci_width": _mean(rows["ate_high"] - rows["ate_low"]),
        "group_coverage_mx1_quartiles": _mean(rows["mx1_cover"]),
        "group_coverage_predicted_quarters": _mean(rows["pred_cover"]),
        "predicted_minus_true_group_benefit": _mean(rows["pred_minus_true"]),
        "true_benefit_top_minus_bottom_predicted_quarter": _mean(
            rows["pred_top_minus_bottom_true"]
        ),
        "c_for_benefit_reported": _mean(rows["c_for_benefit"]),
        "c_for_benefit_with_true_benefit": _mean(rows["c_for_benefit_true"]),
        "c_for_benefit_reported_minus_true": _mean(
            rows["c_for_benefit"] - rows["c_for_benefit_true"]
        ),
        "eavg_for_benefit": _mean(rows["eavg_for_benefit"]),
        "mx1_called_predictive_or": _rate(rows["predictive_or"]),
        "mx1_called_predictive_wald": _rate(rows["predictive_wald"]),
        "mx1_called_predictive_rd": _rate(rows["predictive_rd"]),
        "mx1_called_prognostic": _rate(rows["prognostic_called"]),
    }


def full_results(rows: pd.DataFrame) -> dict:
    """The summary per scenario and size of :func:`replicate` rows."""
    # the population ATE of a scenario: the mean true benefit over every simulated patient
    # of that scenario (both sizes; replicate trials are independent draws of it)
    weights = rows["n"] * rows["sate"]
    population = (
        weights.groupby(rows["role"]).sum() / rows["n"].groupby(rows["role"]).sum()
    ).to_dict()
    return {
        f"{role}/{n}": summarise(group, population[role])
        for (role, n), group in rows.groupby(["role", "n"])
    }


def verdict_results(rows: pd.DataFrame) -> dict:
    """The summary per scenario of :func:`verdict_replicate` rows."""
    return {
        f"{role}/{n}": {"replicates": len(g)}
        | {k: _rate(g[k]) for k in ("predictive_or", "predictive_wald", "predictive_lr_chi2")}
        for (role, n), g in rows.groupby(["role", "n"])
    }


def interval_results(rows: pd.DataFrame) -> dict:
    """The summary per scenario of :func:`interval_replicate` rows."""
    return {
        f"{role}/{n}": {"replicates": len(g)}
        | {k: _rate(g[k]) for k in ("c_cover", "c_cover_pairs", "eavg_cover")}
        | {k: _mean(g[k]) for k in ("c", "c_true", "c_width", "c_width_pairs", "eavg",
                                    "eavg_true", "eavg_width")}
        for (role, n), g in rows.groupby(["role", "n"])
    }  # fmt: skip


#: mode -> (the replicate function's name, the summary of its rows, the result file's name)
MODES = {
    "full": ("replicate", full_results, "benefit"),
    "verdict": ("verdict_replicate", verdict_results, "benefit_verdict"),
    "intervals": ("interval_replicate", interval_results, "benefit_intervals"),
}

#: the columns of the table printed at the end of a full run
TABLE_KEYS = ["ate_bias_vs_sample_ate", "ate_coverage_population_ate", "ate_coverage_sample_ate",
              "group_coverage_mx1_quartiles", "group_coverage_predicted_quarters",
              "c_for_benefit_reported", "c_for_benefit_with_true_benefit",
              "mx1_called_predictive_or", "mx1_called_predictive_wald", "mx1_called_predictive_rd",
              "predictive_or", "predictive_wald", "predictive_lr_chi2", "c_cover", "c_cover_pairs",
              "c", "c_true", "c_width", "c_width_pairs"]  # fmt: skip


def write_results(mode: str, rows: list[dict], meta: dict) -> dict:
    """``benchmarks/results/<mode's name>.json`` from the rows so far (rewritten after every
    round)."""
    _, results_of, name = MODES[mode]
    table = pd.DataFrame(rows)
    out = {"benchmark": name, "primary_model": bm.PRIMARY, **meta,
           "rounds_done": int(table["round"].max()) + 1 if "round" in table else None,
           "results": results_of(table)}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    return out


def print_table(out: dict) -> None:
    """Value (MCSE) of the main figures per cell, to stderr."""
    table = pd.DataFrame(
        {
            cell: {k: f"{r[k]['value']:.3f} ({r[k]['mcse']:.3f})" for k in TABLE_KEYS if k in r}
            | {"replicates": r["replicates"]}
            for cell, r in out["results"].items()
        }
    ).T
    print(table.to_string(), file=sys.stderr)
    if "wall_s" in out:
        print(f"wall {out['wall_s']} s", file=sys.stderr)


def tasks_of_round(args, counts: dict[int, int], r: int) -> list[tuple]:
    """The trials of round ``r``: every cell advances each round (stop any time, cells stay
    even). Trial ``i`` of a scenario has seed ``1000 i + k`` (``k`` the scenario's place in
    ``rct.MX1_ROLES``) whatever scenarios, sizes or mode are run, so runs over the same
    seeds analyse the same trials; ``--first`` starts at trial ``i = first``."""
    extra = (args.interval_boot,) if args.mode == "intervals" else ()
    return [(role, n, 1000 * i + k, *extra)
            for n in SIZES if n in args.sizes and counts.get(n)
            for k, role in enumerate(rct.MX1_ROLES) if role in args.roles
            for i in range(args.first + r * counts[n] // args.rounds,
                           args.first + (r + 1) * counts[n] // args.rounds)]  # fmt: skip


def run(args, counts: dict[int, int]) -> dict:
    """Run the rounds of ``args.mode``: each trial's row is appended to ``--rows-file`` as it
    finishes and the result file is rewritten after every round."""
    # by reference to the importable module (not __main__): a cached population stays in
    # each worker
    from benchmarks import bench_benefit as module

    function = getattr(module, MODES[args.mode][0])
    start, rows, out = time.perf_counter(), [], None
    with Parallel(n_jobs=args.jobs, return_as="generator_unordered") as parallel:
        for r in range(args.rounds):
            tasks = tasks_of_round(args, counts, r)
            for row in parallel(delayed(function)(*task) for task in tasks):
                row = {**row, "round": r, "mode": args.mode}
                rows.append(row)
                append_row(args.rows_file, row)
            meta = {"wall_s": round(time.perf_counter() - start, 1), "jobs": args.jobs,
                    "first": args.first, "rows_file": args.rows_file}  # fmt: skip
            out = write_results(args.mode, rows, meta)
            print(f"round {r + 1}/{args.rounds} done at {out['wall_s']} s",
                  file=sys.stderr, flush=True)  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--replicates", type=int, default=200, help="RCTs per scenario at 140 patients"
    )
    parser.add_argument(
        "--replicates-large", type=int, default=100, help="RCTs per scenario at 1,000"
    )
    parser.add_argument(
        "--rounds", type=int, default=8, help="rounds; results are written after each"
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--roles",
        nargs="+",
        choices=rct.MX1_ROLES,
        default=list(rct.MX1_ROLES),
        help="MX1+ scenarios to run (default: all)",
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=int,
        choices=SIZES,
        default=list(SIZES),
        help="trial sizes to run (default: both)",
    )
    parser.add_argument(
        "--verdict",
        type=int,
        default=0,
        help="instead: the MX1+ verdict only, on this many RCTs per scenario at the first size",
    )
    parser.add_argument(
        "--intervals",
        type=int,
        default=0,
        help="instead: c-/E-for-benefit interval coverage on this many RCTs per scenario",
    )
    parser.add_argument(
        "--interval-boot", type=int, default=50, help="refits per interval (with --intervals)"
    )
    parser.add_argument(
        "--first",
        type=int,
        default=0,
        help="start at trial i = FIRST of each cell (to extend an earlier run over new seeds)",
    )
    parser.add_argument(
        "--rows-file", help="append each trial's row (JSON lines) to this file as it finishes"
    )
    parser.add_argument(
        "--summarise-rows",
        nargs="+",
        metavar="FILE",
        help="no trials: the result of the rows in these JSON-lines files (one mode)",
    )
    args = parser.parse_args()
    args.mode = "intervals" if args.intervals else "verdict" if args.verdict else "full"
    if args.summarise_rows:
        rows = [row for path in args.summarise_rows for row in read_rows(path)]
        modes = {row["mode"] for row in rows}
        if len(modes) != 1:
            parser.error(f"--summarise-rows: rows of one mode expected, got {sorted(modes)!r}")
        out = write_results(modes.pop(), rows, {"rows_files": args.summarise_rows})
    elif args.mode == "full":
        out = run(args, dict(zip(SIZES, (args.replicates, args.replicates_large), strict=True)))
    else:  # the lighter modes run at the first size only
        out = run(args, {args.sizes[0]: args.intervals or args.verdict})
    print_table(out)


if __name__ == "__main__":
    main()
