"""What a reader sees for each feature column: a label with its unit, from the naming rules.

The feature builder (:mod:`msc_response.features`) names its columns by rules:
``age_years``, ``female``, ``baseline_<test>`` (a lab test, in the unit the features
use), ``baseline_<score>`` (a liver score), ``baseline_|landmark_|change_<population>_fraction``
(a cell population as a fraction of its parent population) and the regimen features of
:mod:`msc_response.domain`. This module is the one table that turns those names into
labels (``baseline_mx1_monocytes_fraction`` -> "MX1+ monocytes, baseline (fraction of
monocytes)"); pages show the label and keep the code name in a tooltip and a glossary.
"""

from __future__ import annotations

import re

from .units import CANONICAL_UNITS

#: Lab tests the project knows, as a reader names them.
TEST_LABELS = {
    "bilirubin": "Bilirubin", "albumin": "Albumin", "inr": "INR", "pt": "Prothrombin time",
    "pt_control": "Prothrombin time, control", "creatinine": "Creatinine", "sodium": "Sodium",
    "ascites": "Ascites", "encephalopathy": "Hepatic encephalopathy (West Haven)",
    "dialysis": "Dialysis in the past week", "platelets": "Platelets", "pta": "Prothrombin activity",
    "alt": "ALT (alanine aminotransferase)", "ast": "AST (aspartate aminotransferase)",
}  # fmt: skip

#: Liver scores (``features.BASELINE_SCORES``).
SCORE_LABELS = {"child_pugh": "Child-Pugh score", "meld": "MELD", "meld_na": "MELD-Na",
                "meld3": "MELD 3.0"}  # fmt: skip

#: Features named once, with their unit.
FIXED_LABELS = {
    "age_years": "Age (years)",
    "female": "Female sex (1 = female, 0 = male)",
    "dose_per_infusion_1e8": "MSC dose per infusion (10^8 cells)",
    "n_infusions": "MSC infusions (number)",
    "cumulative_dose_1e8": "Cumulative MSC dose (10^8 cells)",
    "interval_days": "Interval between infusions (days)",
}

#: Cell populations by the slug their feature names carry.
POPULATIONS = {"mx1_monocytes": "MX1+ monocytes"}

#: How a unit of the feature spec reads in a label ("" for none: INR is a ratio).
_UNIT_TEXT = {"ratio": "", "flag": "1 = yes, 0 = no", "points": "points", "grade": "grade"}

_WHEN = {
    "baseline": "baseline",
    "landmark": "landmark",
    "change": "change from baseline to landmark",
}


def _with_unit(text: str, unit: str | None) -> str:
    shown = _UNIT_TEXT.get(unit, unit) if unit else ""
    return f"{text} ({shown})" if shown else text


def _parent(population: str) -> str:
    """The population a marker-defined population is a fraction of: "MX1+ monocytes" -> "monocytes"."""
    m = re.fullmatch(r"\S+[+-]\s+(.+)", population.strip())
    return m.group(1) if m else "its parent population"


def feature_label(name: str, unit: str | None = None, source: str | None = None) -> str:
    """The label of feature column ``name`` (``unit`` and ``source`` from the feature spec
    when known; otherwise the canonical unit and the population named in :data:`POPULATIONS`).

    An unknown name is returned as it is: it is then its own label.
    """
    if name in FIXED_LABELS:
        return FIXED_LABELS[name]
    m = re.fullmatch(r"(baseline|landmark|change)_(.+)_fraction", name)
    if m:
        when, slug = m.groups()
        population = source or POPULATIONS.get(slug, slug.replace("_", " "))
        return f"{population}, {_WHEN[when]} (fraction of {_parent(population)})"
    m = re.fullmatch(r"baseline_(.+)", name)
    if m:
        what = m.group(1)
        if what in SCORE_LABELS:
            return f"{SCORE_LABELS[what]}, baseline (points)"
        test = source or what
        label = TEST_LABELS.get(test, test.replace("_", " "))
        return _with_unit(f"{label}, baseline", unit or CANONICAL_UNITS.get(test))
    return name


def feature_labels(feature_spec: list[dict]) -> dict[str, str]:
    """``name -> label`` of every feature of a feature spec (``FeatureSet.feature_spec``)."""
    return {f["name"]: feature_label(f["name"], f.get("unit"), _source(f)) for f in feature_spec}


def _source(f: dict) -> str | None:
    # a lab's source is the test, a cell feature's the population; others name themselves
    return (
        f.get("source")
        if f.get("kind") in ("lab", "cells", "cells_landmark", "cells_change")
        else None
    )
