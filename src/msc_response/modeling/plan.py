"""Planning the next trial: power of candidate randomised designs by Monte Carlo (in memory).

A design file (YAML) lists candidate designs; each is simulated ``replicates`` times per
sample size with the randomised simulator (:mod:`msc_response.simulator.rct`) under an
assumed MX1+ role, and analysed the way the product analyses a trial:

* **primary endpoint** (Child-Pugh fall >= 1 by day 28): success when the Newcombe 95%
  interval of the risk difference (MSC - standard care) lies above 0 (one-sided 2.5%);
* **MX1+ x treatment interaction**: success when the verdict is ``predictive``
  (odds-ratio scale, two-sided 5%: :func:`~.benefit_validation.interaction_test`);
* **patients treated per extra responder**: ``1 / ATE`` with the ATE the mean true benefit
  of the enrolled patients (their potential outcomes are known), delta-method MCSE.

An MX1+-enriched design enrols only patients whose baseline MX1+ fraction is at or above
the ``enrich_mx1_quantile`` of the screened population (screening more patients to fill
it); patients are randomised before the selection, so the arms are close to, not
exactly, balanced. Every power is given with its Monte Carlo standard error.

Design file::

    mx1_role: both          # the assumed truth (simulator/rct.py)
    replicates: 200
    seed: 1
    designs:
      - name: all-comers
        n_per_arm: [70, 140]
        regimen: 1.0e8x3
      - name: MX1+ enriched (top half)
        n_per_arm: [70, 140]
        regimen: 1.0e8x3
        enrich_mx1_quantile: 0.5
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..errors import ConfigError
from ..simulator import rct, simulate_tables
from .benefit_validation import interaction_test, risk_difference

#: Baseline cell column of the simulated tables: the MX1+ fraction on day 0.
_BASELINE_DAY = 0


@dataclass(frozen=True)
class CandidateDesign:
    name: str
    n_per_arm: tuple[int, ...]
    regimen: str = "1.0e8x3"
    enrich_mx1_quantile: float | None = None


@dataclass(frozen=True)
class PlanSpec:
    designs: tuple[CandidateDesign, ...]
    mx1_role: str = "both"
    replicates: int = 200
    seed: int = 1


def load_plan(path: str | Path) -> PlanSpec:
    """A :class:`PlanSpec` from YAML; errors name the key and show the bad value."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"design: cannot read {str(path)!r}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"design: {path.name} is not valid YAML: {err}") from err
    if not isinstance(raw, dict) or not isinstance(raw.get("designs"), list) or not raw["designs"]:
        raise ConfigError(f"design: {path.name} needs a non-empty list 'designs', got {raw!r}")
    known = {"designs", "mx1_role", "replicates", "seed"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"design: unknown key {unknown[0]!r}; known keys: {sorted(known)}")
    designs = []
    for i, d in enumerate(raw["designs"]):
        where = f"designs[{i}]"
        if not isinstance(d, dict) or not isinstance(d.get("name"), str):
            raise ConfigError(f"{where}: expected a mapping with a 'name', got {d!r}")
        sizes = d.get("n_per_arm")
        if (
            not isinstance(sizes, list)
            or not sizes
            or not all(isinstance(n, int) and n >= 10 for n in sizes)
        ):
            raise ConfigError(
                f"{where}.n_per_arm: expected a list of whole numbers >= 10, got {sizes!r}"
            )
        q = d.get("enrich_mx1_quantile")
        if q is not None and not (isinstance(q, int | float) and 0 < q < 1):
            raise ConfigError(
                f"{where}.enrich_mx1_quantile: expected null or a number in (0, 1), got {q!r}"
            )
        extra = sorted(set(d) - {"name", "n_per_arm", "regimen", "enrich_mx1_quantile"})
        if extra:
            raise ConfigError(f"{where}: unknown key {extra[0]!r}")
        regimen = str(d.get("regimen", "1.0e8x3"))
        rct.parse_regimen(regimen)  # raises naming the value
        designs.append(
            CandidateDesign(d["name"], tuple(sizes), regimen, None if q is None else float(q))
        )
    spec = PlanSpec(
        tuple(designs), raw.get("mx1_role", "both"), raw.get("replicates", 200), raw.get("seed", 1)
    )
    if spec.mx1_role not in rct.MX1_ROLES:
        raise ConfigError(
            f"design: mx1_role: expected one of {list(rct.MX1_ROLES)}, got {spec.mx1_role!r}"
        )
    if not (isinstance(spec.replicates, int) and spec.replicates >= 2):
        raise ConfigError(f"replicates: expected a whole number >= 2, got {spec.replicates!r}")
    if not (isinstance(spec.seed, int) and spec.seed >= 0):
        raise ConfigError(f"seed: expected a whole number >= 0, got {spec.seed!r}")
    return spec


def _trial(design: CandidateDesign, role: str, n_per_arm: int, seed: int, threshold: float | None):
    """Treatment, outcome, baseline MX1+ and true benefit of one simulated trial."""
    rct_design = rct.RctDesign(regimens=(rct.parse_regimen(design.regimen),), mx1_role=role)
    need = 2 * n_per_arm
    screened = (
        need
        if threshold is None
        else int(np.ceil(need / (1 - design.enrich_mx1_quantile) * 1.3)) + 20
    )
    t = simulate_tables("rct", screened, seed, rct_design=rct_design)
    ids = t.patients["patient_id"].astype(str).to_numpy()
    cells = t.cells[t.cells["day"] == _BASELINE_DAY]
    mx1 = (
        cells.set_index(cells["patient_id"].astype(str))["fraction"]
        .reindex(ids)
        .to_numpy(dtype=float)
    )
    keep = np.ones(len(ids), dtype=bool) if threshold is None else mx1 >= threshold
    rows = np.flatnonzero(keep)[:need]
    treated = (t.patients["arm"].to_numpy()[rows] != rct.CONTROL_ARM.name).astype(int)
    y = t.truth["y_child_pugh"].to_numpy()[rows]
    return treated, y, mx1[rows], t.truth["true_benefit"].to_numpy()[rows]


def _screening_threshold(role: str, quantile: float, seed: int) -> float:
    """The MX1+ fraction at ``quantile`` of a screened population (10,000 patients)."""
    t = simulate_tables(
        "rct", 10_000, seed + 7919, rct_design=rct.RctDesign(mx1_role=role), baseline_only=True
    )
    return float(np.quantile(t.cells.loc[t.cells["day"] == _BASELINE_DAY, "fraction"], quantile))


def _power(successes) -> dict:
    x = np.asarray(successes, dtype=float)
    p = float(x.mean())
    return {"value": p, "mcse": float(np.sqrt(p * (1 - p) / len(x)))}


def plan(spec: PlanSpec) -> list[dict]:
    """Power (with MCSE) per candidate design and sample size; see the module docstring."""
    out = []
    for k, design in enumerate(spec.designs):
        threshold = None
        if design.enrich_mx1_quantile is not None:
            threshold = _screening_threshold(spec.mx1_role, design.enrich_mx1_quantile, spec.seed)
        for n in design.n_per_arm:
            primary, inter, ate = [], [], []
            for r in range(spec.replicates):
                seed = spec.seed * 1_000_003 + 10_007 * k + 101 * n + r
                t, y, mx1, truth = _trial(design, spec.mx1_role, n, seed, threshold)
                primary.append(risk_difference(y[t == 1], y[t == 0]).low > 0)
                inter.append(interaction_test(y, t, mx1, seed=seed)["verdict"] == "predictive")
                ate.append(truth.mean())
            a = np.asarray(ate)
            mean_ate = float(a.mean())
            nnt_se = (
                float(a.std(ddof=1) / np.sqrt(len(a)) / mean_ate**2)
                if mean_ate > 0
                else float("nan")
            )
            out.append({
                "design": design.name, "n_per_arm": n, "regimen": design.regimen,
                "enrich_mx1_quantile": design.enrich_mx1_quantile, "mx1_threshold": threshold,
                "replicates": spec.replicates, "mx1_role": spec.mx1_role,
                "power_primary": _power(primary), "power_interaction": _power(inter),
                "true_ate": {"value": mean_ate, "mcse": float(a.std(ddof=1) / np.sqrt(len(a)))},
                "treated_per_extra_responder": {"value": 1 / mean_ate if mean_ate > 0 else float("inf"),
                                                "mcse": nnt_se},
            })  # fmt: skip
    return out
