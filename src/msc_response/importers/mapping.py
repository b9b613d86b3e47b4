"""What site codes mean: the default mappings of SDTM and FHIR codes, and the mapping file.

The defaults cover what every site writes the same way (SDTM controlled terminology for
LBTESTCD, LOINC for FHIR, the usual spellings of units). Everything a site decides for
itself - where ascites, encephalopathy and dialysis are kept, which treatment names are
MSC, where MX1+ monocyte fractions are, what a local code means - goes in a mapping file
(YAML; ``examples/import_mapping_sdtm.yaml`` and ``examples/import_mapping_fhir.yaml``
show every key). Ascites, encephalopathy and dialysis have no default on purpose: they
are not laboratory tests, and a guess at where a site keeps them would be silently wrong.

The accepted unit of every contract test comes from :mod:`msc_response.units`; this
module only knows how sites *spell* units (``umol/l``, ``µmol/L``, ``{INR}``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .. import units
from ..errors import ConfigError

#: SDTM controlled terminology (LBTESTCD) -> contract test.
SDTM_TESTS: dict[str, str] = {
    "BILI": "bilirubin",
    "ALB": "albumin",
    "CREAT": "creatinine",
    "SODIUM": "sodium",
    "INR": "inr",
    "PT": "pt",
    "PLAT": "platelets",
}

#: Specimens (LBSPEC) in which an LB test code means the test itself; the same code in
#: another specimen (bilirubin in urine) is a test of its own (:func:`specimen_test`).
BLOOD_SPECIMENS = frozenset({"", "BLOOD", "SERUM", "PLASMA", "SERUM OR PLASMA", "SERUM/PLASMA",
                             "WHOLE BLOOD", "VENOUS BLOOD", "ARTERIAL BLOOD"})  # fmt: skip


def specimen_test(name: str, specimen: str) -> str:
    """The test a code measured in ``specimen`` is: itself in blood, ``BILI_URINE`` in urine.

    A test in another specimen is never merged into the blood test: the two have
    different units and meanings (albumin in urine is not serum albumin).
    """
    spec = specimen.strip().upper()
    if spec in BLOOD_SPECIMENS:
        return name
    return f"{name}_{re.sub(r'[^A-Z0-9]+', '_', spec).strip('_')}"


LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"

#: LOINC code -> contract test (platelets: not a score input, but every liver panel has it).
LOINC_TESTS: dict[str, str] = {
    "1975-2": "bilirubin",  # Bilirubin.total [Mass/volume] in Serum or Plasma
    "42719-5": "bilirubin",  # Bilirubin.total [Mass/volume] in Blood
    "14631-6": "bilirubin",  # Bilirubin.total [Moles/volume] in Serum or Plasma
    "1751-7": "albumin",  # Albumin [Mass/volume] in Serum or Plasma
    "61151-7": "albumin",  # Albumin [Mass/volume] in Serum or Plasma by Bromocresol green (BCG) dye binding method
    "2862-1": "albumin",  # Albumin [Mass/volume] in Serum or Plasma by Electrophoresis
    "6301-6": "inr",  # INR in Platelet poor plasma by Coagulation assay
    "34714-6": "inr",  # INR in Blood by Coagulation assay
    "46418-0": "inr",  # INR in Capillary blood by Coagulation assay
    "2160-0": "creatinine",  # Creatinine [Mass/volume] in Serum or Plasma
    "38483-4": "creatinine",  # Creatinine [Mass/volume] in Blood
    "14682-9": "creatinine",  # Creatinine [Moles/volume] in Serum or Plasma
    "2951-2": "sodium",  # Sodium [Moles/volume] in Serum or Plasma
    "2947-0": "sodium",  # Sodium [Moles/volume] in Blood
    "5902-2": "pt",  # Prothrombin time (PT)
    "777-3": "platelets",  # Platelets [#/volume] in Blood by Automated count
    "26515-7": "platelets",  # Platelets [#/volume] in Blood
}

#: What the display text of a source code says when it measures a contract test: where a
#: test is absent, the report lists the unmapped codes that look like it (a site's local
#: code for creatinine is found by its text, then named in a mapping file).
LOOKS_LIKE: dict[str, re.Pattern] = {
    "bilirubin": re.compile(r"bili", re.IGNORECASE),
    "albumin": re.compile(r"albumin", re.IGNORECASE),
    "creatinine": re.compile(r"creatinin", re.IGNORECASE),
    "sodium": re.compile(r"sodium|\bNa\b", re.IGNORECASE),
    "inr": re.compile(r"\bINR\b|international normali[sz]ed", re.IGNORECASE),
    "pt": re.compile(r"prothrombin time|\bPT\b", re.IGNORECASE),
}

#: How sites spell the contract's units (compared case-insensitively, spaces removed).
UNIT_SPELLINGS: dict[str, str] = {
    "mg/dl": "mg/dL",
    "umol/l": "umol/L",
    "µmol/l": "umol/L",  # micro sign
    "μmol/l": "umol/L",  # Greek mu
    "micromol/l": "umol/L",
    "g/dl": "g/dL",
    "g/l": "g/L",
    "mmol/l": "mmol/L",
    "meq/l": "mEq/L",
    "ratio": "ratio",
    "{ratio}": "ratio",
    "{inr}": "ratio",
    "inr": "ratio",
    "s": "s",
    "sec": "s",
    "seconds": "s",
    "grade": "grade",
    "{grade}": "grade",
    "flag": "flag",
}

#: A blank or dimensionless unit ("", UCUM "1") means the test's one accepted unit when
#: that unit is itself dimensionless (INR, grades, flags) - never for seconds or mg/dL.
DIMENSIONLESS = frozenset({"", "1"})
#: The unit written for a test the contract does not know whose unit is blank (UCUM's "1").
DIMENSIONLESS_UNIT = "1"
DIMENSIONLESS_CONTRACT_UNITS = frozenset({"ratio", "grade", "flag"})

#: Units of a cell fraction: factor to a fraction 0-1.
FRACTION_UNITS: dict[str, float] = {
    "%": 0.01,
    "": 1.0,
    "1": 1.0,
    "fraction": 1.0,
    "{fraction}": 1.0,
}

#: The default rule for MSC infusions: a treatment name that says mesenchymal, or the
#: token MSC (``UC-MSC``, ``hUC-MSCs``, ``MSC infusion``) - not ``MSCT`` or ``ATMSCAN``.
MSC_PATTERN = re.compile(r"mesenchymal|(?<![A-Za-z])MSCs?(?![A-Za-z])", re.IGNORECASE)

#: A dose unit in cells: ``cells``, ``10^8 cells``, ``x10^8 cells``, ``10*8{cells}``, ``1e8 cells``.
_CELL_DOSE = re.compile(
    r"^(?:[x×]\s*)?(?:10\s*(?:\^|\*\*|\*|e)\s*(?P<p>\d+)|1e(?P<q>\d+))?\s*\{?\s*cells?\s*\}?$",
    re.IGNORECASE,
)


def cells_per_dose_unit(unit) -> float | None:
    """Cells per unit of a dose (``"10^8 cells"`` -> 1e8); None for anything else (per kg too)."""
    if unit is None:
        return None
    m = _CELL_DOSE.match(str(unit).strip())
    if m is None:
        return None
    power = m.group("p") or m.group("q")
    return 10.0 ** int(power) if power else 1.0


@dataclass(frozen=True)
class Source:
    """Where a site keeps one test: an SDTM domain and test code, or a FHIR code."""

    domain: str | None = None  # SDTM: a findings domain (LB, FA, QS, ...)
    testcd: str | None = None  # SDTM: its --TESTCD value
    code: str | None = None  # FHIR: "system|code" (a bare code is LOINC)
    values: dict[str, float] = field(default_factory=dict)  # text results -> numbers
    parent: str | None = None  # cells only: the parent population


@dataclass(frozen=True)
class Etiology:
    """Where a site keeps the liver disease etiology (PBC/PSC change the Child-Pugh bands)."""

    domain: str | None = None  # SDTM: e.g. MH
    variable: str | None = None  # SDTM: e.g. MHTERM or MHDECOD
    where: dict[str, str] = field(default_factory=dict)  # SDTM: e.g. {MHCAT: ...}
    system: str | None = None  # FHIR: Condition.code coding system
    codes: dict[str, str] = field(default_factory=dict)  # FHIR: code -> etiology text


@dataclass(frozen=True)
class Mapping:
    """The defaults, with a site's mapping file applied."""

    format: str
    tests: dict[str, str]  # SDTM: LBTESTCD -> test; FHIR: "system|code" -> test
    findings: dict[str, Source] = field(default_factory=dict)  # test -> where (SDTM)
    cells: dict[str, Source] = field(default_factory=dict)  # population -> where
    unit_spellings: dict[str, str] = field(default_factory=lambda: dict(UNIT_SPELLINGS))
    msc_treatments: frozenset[str] = frozenset()  # extra MSC names or "system|code" (lower case)
    arm: str | None = None  # SDTM: ARM or ACTARM (default: ACTARM, else ARM)
    etiology: Etiology | None = None
    identifier_system: str | None = None  # FHIR: Patient.identifier system for patient_id
    file: str | None = None  # the mapping file's name, for the report

    def is_msc(self, *names) -> bool:
        """True if any of ``names`` (treatment text, display, ``system|code``) is an MSC infusion."""
        for name in names:
            if name is None or str(name).strip() == "":
                continue
            text = str(name).strip()
            if text.lower() in self.msc_treatments or MSC_PATTERN.search(text):
                return True
        return False

    def contract_unit(self, test: str, unit) -> str | None:
        """The contract's spelling of ``unit`` for ``test``, or None if the contract does not accept it.

        Tests the contract does not know keep the site's unit as written.
        """
        written = "" if unit is None else str(unit).strip()
        if test not in units.KNOWN_TESTS:
            # a blank unit (SPGRAV, PH) is declared dimensionless: the contract wants a unit
            return DIMENSIONLESS_UNIT if written in DIMENSIONLESS else written
        accepted = units.accepted_units(test)
        if written in accepted:
            return written
        spelled = self.unit_spellings.get(re.sub(r"\s+", "", written).lower())
        if spelled in accepted:
            return spelled
        if written in DIMENSIONLESS and len(accepted) == 1:
            if accepted[0] in DIMENSIONLESS_CONTRACT_UNITS:
                return accepted[0]
        return None


def fhir_code_key(system, code) -> str:
    """The mapping key of a FHIR coding: bare for LOINC, ``system|code`` otherwise."""
    return str(code) if system in (None, LOINC) else f"{system}|{code}"


def default_mapping(fmt: str) -> Mapping:
    """The mapping used without a mapping file."""
    if fmt == "sdtm":
        return Mapping("sdtm", dict(SDTM_TESTS))
    if fmt == "fhir":
        return Mapping("fhir", dict(LOINC_TESTS))
    raise ConfigError(f"source_format: expected 'sdtm' or 'fhir', got {fmt!r}")


# ----------------------------------------------------------------------------------------
# the mapping file

_KEYS = {
    "sdtm": {"format", "tests", "findings", "cells", "units", "msc_treatments", "arm", "etiology"},
    "fhir": {"format", "tests", "cells", "units", "msc_treatments", "etiology", "patient_id"},
}


def _need(cond: bool, key: str, value, expected: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")


def _str_map(raw, key: str) -> dict[str, str]:
    _need(isinstance(raw, dict), key, raw, "a mapping of names")
    for k, v in raw.items():
        _need(isinstance(v, str | int | float) and str(v) != "", f"{key}.{k}", v, "a name")
    return {str(k): str(v) for k, v in raw.items()}


def _source(raw, key: str, fmt: str, *, cells: bool) -> Source:
    _need(isinstance(raw, dict), key, raw, "a mapping")
    allowed = ({"domain", "testcd"} if fmt == "sdtm" else {"code"}) | {"values"}
    allowed |= {"parent"} if cells else set()
    for k in raw:
        if k not in allowed:
            raise ConfigError(f"{key}.{k}: unknown key; expected one of {sorted(allowed)}")
    needed = ("domain", "testcd") if fmt == "sdtm" else ("code",)
    for k in needed + (("parent",) if cells else ()):
        _need(isinstance(raw.get(k), str) and raw[k].strip() != "", f"{key}.{k}", raw.get(k),
              "a non-empty text")  # fmt: skip
    values = raw.get("values", {})
    _need(isinstance(values, dict), f"{key}.values", values, "a mapping of text to numbers")
    for k, v in values.items():
        _need(isinstance(v, int | float) and not isinstance(v, bool), f"{key}.values.{k}", v,
              "a number")  # fmt: skip
    domain = raw.get("domain")
    return Source(
        domain=domain.strip().upper() if domain else None,
        testcd=raw.get("testcd"),
        code=raw.get("code"),
        values={str(k).strip().upper(): float(v) for k, v in values.items()},
        parent=raw.get("parent"),
    )


def load_mapping(path: str | Path | None, fmt: str) -> Mapping:
    """The default mapping of ``fmt``, with the mapping file at ``path`` (if any) applied.

    Raises
    ------
    ConfigError
        The file cannot be read, or a key is unknown or has a bad value (the key is named).
    """
    base = default_mapping(fmt)
    if path is None:
        return base
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"mapping: cannot read {str(path)!r}: {err}") from None
    raw = {} if raw is None else raw
    _need(isinstance(raw, dict), "mapping file", raw, "a mapping of keys")
    for k in raw:
        if k not in _KEYS[fmt]:
            raise ConfigError(
                f"{k}: unknown key for --from {fmt}; expected one of {sorted(_KEYS[fmt])}"
            )
    if "format" in raw:
        _need(
            raw["format"] == fmt,
            "format",
            raw["format"],
            f"{fmt!r} (this is an import --from {fmt})",
        )

    tests = dict(base.tests)
    tests.update(_str_map(raw.get("tests", {}), "tests"))
    findings = {}
    if "findings" in raw:
        _need(isinstance(raw["findings"], dict), "findings", raw["findings"], "a mapping of tests")
        findings = {str(t): _source(s, f"findings.{t}", fmt, cells=False)
                    for t, s in raw["findings"].items()}  # fmt: skip
    cells = {}
    if "cells" in raw:
        _need(isinstance(raw["cells"], dict), "cells", raw["cells"], "a mapping of populations")
        cells = {str(p): _source(s, f"cells.{p}", fmt, cells=True) for p, s in raw["cells"].items()}
    spellings = dict(UNIT_SPELLINGS)
    for written, unit in _str_map(raw.get("units", {}), "units").items():
        spellings[re.sub(r"\s+", "", written).lower()] = unit
    msc = raw.get("msc_treatments", [])
    _need(isinstance(msc, list) and all(isinstance(m, str) for m in msc), "msc_treatments", msc,
          "a list of treatment names or codes")  # fmt: skip
    arm = raw.get("arm")
    if arm is not None:
        _need(arm in ("ARM", "ACTARM"), "arm", arm, "'ARM' or 'ACTARM'")
    identifier_system = None
    if "patient_id" in raw:
        pid = raw["patient_id"]
        _need(isinstance(pid, dict) and set(pid) == {"identifier_system"}
              and isinstance(pid["identifier_system"], str), "patient_id", pid,
              "{identifier_system: SYSTEM}")  # fmt: skip
        identifier_system = pid["identifier_system"]
    return Mapping(
        format=fmt,
        tests=tests,
        findings=findings,
        cells=cells,
        unit_spellings=spellings,
        msc_treatments=frozenset(m.strip().lower() for m in msc),
        arm=arm,
        etiology=_etiology(raw["etiology"], fmt) if "etiology" in raw else None,
        identifier_system=identifier_system,
        file=path.name,
    )


def _etiology(raw, fmt: str) -> Etiology:
    _need(isinstance(raw, dict), "etiology", raw, "a mapping")
    allowed = {"domain", "variable", "where"} if fmt == "sdtm" else {"system", "codes"}
    for k in raw:
        if k not in allowed:
            raise ConfigError(f"etiology.{k}: unknown key; expected one of {sorted(allowed)}")
    if fmt == "sdtm":
        for k in ("domain", "variable"):
            _need(isinstance(raw.get(k), str) and raw[k] != "", f"etiology.{k}", raw.get(k),
                  "a non-empty text")  # fmt: skip
        where = _str_map(raw.get("where", {}), "etiology.where")
        return Etiology(domain=raw["domain"].upper(), variable=raw["variable"].upper(),
                        where={k.upper(): v for k, v in where.items()})  # fmt: skip
    _need(isinstance(raw.get("system"), str), "etiology.system", raw.get("system"), "a code system")
    return Etiology(system=raw["system"], codes=_str_map(raw.get("codes", {}), "etiology.codes"))
