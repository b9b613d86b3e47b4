"""The default model on real longitudinal liver data: the Mayo PBC sequential cohort (pbcseq).

Data: ``pbcseq`` of R's survival package (Mayo Clinic primary biliary cholangitis trial,
312 patients, labs at registration and about yearly after); a CSV is in the public
``vincentarelbundock/Rdatasets`` repository at ``csv/survival/pbcseq.csv``. Pass its path;
the data are never copied into the repository (the study is written to a temporary folder).

The study, as this product reads a delivery: one patient per ``id`` (``sex``, ``age``,
etiology ``PBC``); labs by ``day`` since registration: bilirubin (mg/dL), albumin (g/dL),
prothrombin time ``pt`` (s), platelets (10^9/L), alkaline phosphatase ``alp`` and ``ast``
(U/L), cholesterol (mg/dL), ascites (grade 0/1), and edema, hepatomegaly and spiders
(signs). Baseline: the registration visit (days -30..0).

Labels (``--endpoint``), each mirroring one of the product's endpoints at about one year
(the visit closest to day 365, days 275-455; patients without one are excluded by the
feature builder, with the reason, as in any study):

- ``albumin`` (fixed before any model was fitted): **serum albumin at least 0.1 g/dL above
  its value at registration**.
- ``child_pugh`` (added after the first run of ``albumin``, before any run of its own):
  **Child-Pugh at least 1 point lower than at registration**, the product's default
  endpoint, with the PBC bilirubin bands, PT over a control of 10 s (pbcseq has PT in
  seconds, no INR, no control) and no encephalopathy (not recorded): both assumed for
  every patient and said in the assumptions, as ``assume`` does.

A third and fourth label (``--followup-day 730``), fixed before any model was fitted on
them and after the one-year results above were known: the same two endpoints at about two
years (the visit closest to day 730, days 640-820). The default primary's rule (the
endpoint's baseline value unpenalised, :func:`msc_response.modeling.models.unpenalised_columns`)
was proposed after the one-year results had been seen, so only these labels test it on
real data it was not chosen on.

Split: 70/30 by patient with ``numpy.random.default_rng(20250238)``. On the 70%, ``fit``
(as ``train`` runs it) validates every candidate and the baseline-score model (logistic
on baseline albumin): validated AUROC (.632+) with its bootstrap interval. Each model is
then refit on the 70% and scored on the 30%: held-out AUROC with DeLong's interval.

Run: ``python -m benchmarks.real_cohort_pbcseq PATH/pbcseq.csv [--bootstrap 200]
[--repeats 10] [--endpoint albumin|child_pugh] [--followup-day 365|730]``; the result goes to
``benchmarks/results/real_cohort_pbcseq_<endpoint>[_day<N>].json`` (the day when not 365).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from msc_response.config import config_from_dict
from msc_response.errors import MscResponseWarning
from msc_response.features import build_features
from msc_response.modeling.fit import fit, refit
from msc_response.reporting.intervals import auroc_delong

from ._common import write_result

SEED = 20250238
#: pbcseq column -> (test, unit) of the study's labs table.
LABS = {"bili": ("bilirubin", "mg/dL"), "albumin": ("albumin", "g/dL"), "protime": ("pt", "s"),
        "platelet": ("platelets", "10^9/L"), "alk.phos": ("alp", "U/L"), "ast": ("ast", "U/L"),
        "chol": ("cholesterol", "mg/dL"), "ascites": ("ascites", "grade"), "edema": ("edema", "sign"),
        "hepato": ("hepatomegaly", "flag"), "spiders": ("spiders", "flag")}  # fmt: skip
CANDIDATES = ["lightgbm", "logistic_l2", "logistic_rcs"]


def write_study(csv: Path, out: Path) -> Path:
    """The pbcseq CSV as a study directory (patients.csv, labs.csv)."""
    raw = pd.read_csv(csv, dtype={"id": str})
    first = raw.sort_values("day").drop_duplicates("id")
    patients = pd.DataFrame({"patient_id": first["id"], "sex": first["sex"].str.upper(),
                             "age_years": first["age"].round(2), "etiology": "PBC"})  # fmt: skip
    long = raw.melt(id_vars=["id", "day"], value_vars=list(LABS), var_name="column").dropna()
    labs = pd.DataFrame({"patient_id": long["id"], "day": long["day"].astype(int),
                         "test": long["column"].map(lambda c: LABS[c][0]), "value": long["value"],
                         "unit": long["column"].map(lambda c: LABS[c][1])})  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    patients.to_csv(out / "patients.csv", index=False)
    labs.to_csv(out / "labs.csv", index=False)
    return out


#: The two labels (see the module docstring): endpoint and assumptions.
ENDPOINTS = {
    "albumin": ({"score": "albumin", "direction": "increase", "min_change": 0.1}, {}),
    "child_pugh": ({"score": "child_pugh", "direction": "decrease", "min_change": 1},
                   {"pt_control": 10.0, "encephalopathy": 0}),
}  # fmt: skip


def make_config(data: Path, endpoint: str, primary: str, repeats: int, n_boot: int, day: int = 365):
    ep, assume = ENDPOINTS[endpoint]
    return config_from_dict({
        "name": "pbcseq", "data": str(data), "baseline_window": [-30, 0], "assume": assume,
        "lab_features": "all",  # every lab above is a feature (edema, spiders: not known tests)
        "endpoint": {**ep, "followup_day": day, "window_days": 90},
        "model": {"candidates": CANDIDATES, "primary": primary, "repeats": repeats,
                  "bootstrap": n_boot, "seed": SEED, "n_jobs": 2},
    })  # fmt: skip


def split(ids: np.ndarray) -> np.ndarray:
    """True for the 70% training patients (a fixed permutation of the sorted ids)."""
    order = np.random.default_rng(SEED).permutation(np.sort(ids))
    train = set(order[: int(round(0.7 * len(ids)))])
    return np.array([i in train for i in ids])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", type=Path, help="pbcseq.csv (Rdatasets csv/survival/pbcseq.csv)")
    ap.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="albumin")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--followup-day", type=int, choices=(365, 730), default=365)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pbcseq_") as tmp:
        study = write_study(args.csv, Path(tmp) / "study")
        config = make_config(
            study, args.endpoint, "logistic_rcs", args.repeats, args.bootstrap, args.followup_day
        )
        features = build_features(config, study)
    table = features.table
    in_train = split(table["patient_id"].to_numpy())
    train = SimpleNamespace(table=table[in_train].reset_index(drop=True),
                            feature_columns=features.feature_columns, flow=features.flow,
                            lab_units=features.lab_units)  # fmt: skip
    test = table[~in_train].reset_index(drop=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MscResponseWarning)
        result = fit(config, train, simulated=False)
    y_test = test["response"].to_numpy(dtype=int)
    models = {}
    for name, mv in result.models.items():
        lo, hi = mv.intervals()["roc_auc"]
        held = auroc_delong(
            y_test, refit(mv.spec, result.X, result.y, config=config).predict_proba(test)
        )
        models[name] = {"role": mv.spec.role, "validated_auroc_632plus": round(mv.roc_auc, 4),
                        "validated_ci": [round(lo, 4), round(hi, 4)],
                        "held_out_auroc": round(held.estimate, 4),
                        "held_out_ci": [round(held.low, 4), round(held.high, 4)]}  # fmt: skip
    out = {"endpoint": args.endpoint, "followup_day": args.followup_day, "flow": features.flow, "n_train": int(in_train.sum()), "n_test": int((~in_train).sum()),
           "responders_train": int(result.y.sum()), "responders_test": int(y_test.sum()),
           "features": result.X.columns.tolist(), "models": models,
           "primary_minus_best_baseline": (None if result.baseline_comparison is None
                                           else result.baseline_comparison.to_dict()),
           "warnings": sorted({str(w.message) for w in caught}),
           "settings": {"bootstrap": args.bootstrap, "repeats": args.repeats, "seed": SEED}}  # fmt: skip
    day = "" if args.followup_day == 365 else f"_day{args.followup_day}"
    write_result(f"real_cohort_pbcseq_{args.endpoint}{day}", out)
    print(f"\n{'model':<18}{'validated (.632+)':>26}{'held-out (DeLong)':>26}", file=sys.stderr)
    for name, m in models.items():
        v, h = m["validated_ci"], m["held_out_ci"]
        print(f"{name:<18}{m['validated_auroc_632plus']:>8.3f} ({v[0]:.3f}-{v[1]:.3f})    "
              f"{m['held_out_auroc']:>8.3f} ({h[0]:.3f}-{h[1]:.3f})", file=sys.stderr)  # fmt: skip
    if result.baseline_comparison is not None:
        print(result.baseline_comparison.describe(), file=sys.stderr)


if __name__ == "__main__":
    main()
