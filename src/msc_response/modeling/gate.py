"""The promotion gate: when a new model version may become ``champion``.

A version is promoted only when all of these hold:

1. **Enough patients.** n is at least Riley's minimum sample size; below it the version
   is aliased ``exploratory`` and never ``champion``.
2. **Better than the best baseline.** The lower bound of the 95% paired interval of the
   AUROC difference (primary minus the baseline with the highest validated AUROC),
   computed on the same bootstrap samples and cross-validation splits, is above 0.
3. **Not worse than the champion.** The current champion's stored recipe (its config
   and model kind, from its ``model_spec.json``) is re-validated on the same data and
   the same samples, and the lower bound of the paired interval of (new - champion) is
   above ``-NON_INFERIORITY_MARGIN``. A number stored elsewhere is never compared.

Checked on simulated null and alternative cohorts in ``benchmarks/bench_gate.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import validation

#: How much worse in AUROC a new version may be than the champion and still replace it.
NON_INFERIORITY_MARGIN = 0.02

ALIAS_CANDIDATE = "candidate"
ALIAS_EXPLORATORY = "exploratory"
ALIAS_CHAMPION = "champion"

#: The version tag the next training puts on a version whose run was killed before its
#: decision was recorded.
INCOMPLETE_TAG = "incomplete"


@dataclass(frozen=True)
class Comparison:
    """A paired comparison of the new model with a reference model, and its verdict."""

    model: str
    reference: str
    difference: validation.Difference
    margin: float  # the lower bound must exceed -margin (0: superiority)

    @property
    def passed(self) -> bool:
        return self.difference.ci[0] > -self.margin

    def describe(self) -> str:
        d = self.difference
        rule = "above 0" if self.margin == 0 else f"above -{self.margin:g} (non-inferiority)"
        verdict = "passes" if self.passed else "fails"
        return (
            f"AUROC {self.model} - {self.reference} = {d.estimate:+.3f} "
            f"(95% CI {d.ci[0]:+.3f} to {d.ci[1]:+.3f}); lower bound must be {rule}: {verdict}"
        )

    def to_dict(self) -> dict:
        d = self.difference
        return {"model": self.model, "reference": self.reference,
                "roc_auc_difference": round(d.estimate, 4),
                "roc_auc_difference_ci": [round(d.ci[0], 4), round(d.ci[1], 4)],
                "margin": self.margin, "passed": self.passed, "rule": self.describe()}  # fmt: skip


def against_baseline(model, baselines) -> Comparison | None:
    """``model`` against the baseline with the highest validated AUROC (None without baselines)."""
    if not baselines:
        return None
    best = max(baselines, key=lambda b: b.roc_auc)
    diff = validation.paired_difference(model.bootstrap, best.bootstrap)
    return Comparison(model.name, best.name, diff, 0.0)


def against_champion(model, champion, champion_label: str) -> Comparison:
    """``model`` against the re-validated champion (non-inferiority)."""
    diff = validation.paired_difference(model.bootstrap, champion.bootstrap)
    return Comparison(model.name, champion_label, diff, NON_INFERIORITY_MARGIN)


@dataclass(frozen=True)
class Decision:
    """The aliases a new version gets, and why."""

    aliases: tuple[str, ...]
    reason: str

    @property
    def promoted(self) -> bool:
        return ALIAS_CHAMPION in self.aliases


def decide(
    *,
    n: int,
    riley_min_n: int,
    baseline: Comparison | None,
    champion: Comparison | None,
    champion_problem: str | None = None,
) -> Decision:
    """Apply the three rules of this module; ``candidate`` is always given."""
    if n < riley_min_n:
        return Decision(
            (ALIAS_CANDIDATE, ALIAS_EXPLORATORY),
            f"exploratory: {n} patients is below Riley's minimum sample size of {riley_min_n}; "
            "never promoted to champion",
        )
    reasons = []
    if baseline is not None and not baseline.passed:
        reasons.append(f"does not beat the best baseline: {baseline.describe()}")
    if champion_problem:
        reasons.append(champion_problem)
    if champion is not None and not champion.passed:
        reasons.append(f"worse than the current champion: {champion.describe()}")
    if reasons:
        return Decision((ALIAS_CANDIDATE,), "not promoted: " + "; ".join(reasons))
    return Decision((ALIAS_CANDIDATE, ALIAS_CHAMPION), "promoted to champion")


#: The aliases ``make score`` tries, in this order (:func:`preferred_alias`).
SCORING_ORDER = (ALIAS_CHAMPION, ALIAS_EXPLORATORY, ALIAS_CANDIDATE)

#: What a model version is for its users: the ``model_status`` of its predictions.
STATUSES = (ALIAS_CHAMPION, ALIAS_CANDIDATE, ALIAS_EXPLORATORY)


def preferred_alias(aliases) -> str | None:
    """The alias to score with among ``aliases`` (:data:`SCORING_ORDER`), None when none is there."""
    return next((a for a in SCORING_ORDER if a in set(aliases)), None)


def status_of(aliases, *, exploratory: bool) -> str:
    """The status of a model version from its registry aliases and its spec's ``exploratory``.

    ``champion`` only while it holds the alias; a version trained below Riley's minimum
    is ``exploratory`` whatever else it holds; any other version is a ``candidate``
    (not promoted, or no longer the champion).
    """
    aliases = set(aliases)
    if exploratory or ALIAS_EXPLORATORY in aliases:
        return ALIAS_EXPLORATORY
    return ALIAS_CHAMPION if ALIAS_CHAMPION in aliases else ALIAS_CANDIDATE


def status_warning(status: str, model: str, *, simulated: bool) -> str | None:
    """The warning a user of ``model``'s predictions must read (None: a champion on real data).

    ``score`` and ``explain`` print it and the explain page shows it.
    """
    if status not in STATUSES:
        raise ValueError(f"status: expected one of {list(STATUSES)}, got {status!r}")
    parts = []
    if status == ALIAS_EXPLORATORY:
        parts.append(f"{model} is EXPLORATORY (trained on fewer patients than Riley's minimum): "
                     "NOT validated for use; treat its predictions as exploratory")  # fmt: skip
    elif status == ALIAS_CANDIDATE:
        parts.append(f"{model} is a CANDIDATE, not the champion (it was not promoted, or no "
                     "longer is): NOT validated for use")  # fmt: skip
    if simulated:
        parts.append(f"{model} was trained on SIMULATED data: its predictions describe the "
                     "simulator, not patients")  # fmt: skip
    return ". ".join(parts) if parts else None
