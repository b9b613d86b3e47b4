"""What a page shows: provenance, feature labels with their code names, numbers as what they are."""

from __future__ import annotations

import base64
import re
from importlib.metadata import version

import pandas as pd
import pytest

from msc_response.config import config_from_dict
from msc_response.feature_labels import feature_label, feature_labels
from msc_response.reporting.page import Page, number

SPEC = [
    {"name": "baseline_mx1_monocytes_fraction", "kind": "cells", "source": "MX1+ monocytes", "unit": "fraction"},
    {"name": "baseline_bilirubin", "kind": "lab", "source": "bilirubin", "unit": "mg/dL"},
    {"name": "female", "kind": "patient", "source": "sex", "unit": "flag"},
]  # fmt: skip


@pytest.mark.parametrize(("name", "label"), [
    ("baseline_mx1_monocytes_fraction", "MX1+ monocytes, baseline (fraction of monocytes)"),
    ("change_mx1_monocytes_fraction", "MX1+ monocytes, change from baseline to landmark (fraction of monocytes)"),
    ("baseline_bilirubin", "Bilirubin, baseline (mg/dL)"),
    ("baseline_inr", "INR, baseline"),
    ("baseline_meld_na", "MELD-Na, baseline (points)"),
    ("cumulative_dose_1e8", "Cumulative MSC dose (10^8 cells)"),
    ("age_years", "Age (years)"),
    ("something_new", "something_new"),
])  # fmt: skip
def test_labels_follow_the_feature_naming_rules(name, label):
    assert feature_label(name) == label


def test_the_spec_unit_is_the_labels_unit():
    assert feature_label("baseline_albumin", "g/L", "albumin") == "Albumin, baseline (g/L)"
    assert feature_labels(SPEC)["female"] == "Female sex (1 = female, 0 = male)"


def test_numbers_never_show_a_sign_on_zero():
    assert (
        number(-0.0004, 3) == "0.000" and number(-0.0006, 3) == "-0.001" and number(2, 1) == "2.0"
    )


def _html(page: Page) -> str:
    return page.html()


def test_tables_show_labels_whole_numbers_mappings_and_no_empty_table():
    cfg = config_from_dict({"name": "pages"})
    page = Page("t", simulated=False, config=cfg.to_dict(), feature_spec=SPEC)
    s = page.section("numbers")
    s.table(pd.DataFrame({"predictor": ["baseline_mx1_monocytes_fraction", "female = 1"],
                          "count": [49.0, 3.0], "estimate": [-0.00001, 0.25],
                          "oracle": [{"albumin": 0.70871, "meld": 0.69}, None]}), "c")  # fmt: skip
    s.table(pd.DataFrame({"predictor": []}), "Missing values")
    s.definitions({"oracle AUROC": {"albumin": 0.7087}, "n": 49, "slope": -0.0001})
    html = _html(page)
    assert (
        '<abbr title="baseline_mx1_monocytes_fraction">MX1+ monocytes, baseline (fraction of monocytes)</abbr>'
        in html
    )
    assert '<abbr title="female">Female sex (1 = female, 0 = male)</abbr> = 1' in html
    assert ">49<" in html and "49.0" not in html and ">0.000<" in html and "-0.00" not in html
    assert "albumin 0.709, meld 0.690" in html and "{" not in re.sub(
        r"<style>.*</style>", "", html, flags=re.S
    )
    assert "<dd>albumin 0.709</dd><dt>n</dt><dd>49</dd><dt>slope</dt><dd>0.000</dd>" in html
    assert "<p>Missing values: none.</p>" in html and html.count("<table>") == 2  # + the glossary
    assert "Glossary of feature names" in html and ">baseline_bilirubin<" in html


def test_every_page_says_what_made_it():
    cfg = config_from_dict({"name": "pages"})
    html = _html(Page("t", simulated=True, config=cfg.to_dict()))
    m = re.search(r'<p class="provenance">(.*?)</p>', html)
    assert m, html[:500]
    text = m.group(1)
    assert f"msc-response {version('msc-response')}" in text
    assert re.search(r"git commit ([0-9a-f]{12}|unknown);", text)
    assert f"config digest {cfg.digest()};" in text and re.search(
        r"written \d{4}-\d\d-\d\d \d\d:\d\d UTC", text
    )
    other = config_from_dict({"name": "pages", "landmark_day": 7})
    assert other.digest() != cfg.digest() and len(cfg.digest()) == 12


def test_git_commit_is_unknown_outside_a_checkout(tmp_path, monkeypatch):
    import shutil
    import subprocess
    import sys

    from msc_response import provenance

    # a copy of the package outside any git checkout: the commit is not the working directory's
    copy = tmp_path / "site" / "msc_response"
    shutil.copytree(__import__("msc_response").__path__[0], copy)
    out = subprocess.run([sys.executable, "-c", "from msc_response import provenance; print(provenance.git_commit())"],
                         capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(copy.parent),
                         "PATH": "/usr/bin:/bin"}, check=True)  # fmt: skip
    assert out.stdout.strip() == "unknown"
    assert re.fullmatch(r"[0-9a-f]{40}", provenance.git_commit())  # this checkout


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_figure_given_as_a_drawing_function_is_drawn_where_the_page_renders(n_jobs):
    """The training page hands its workers functions that draw (plain data travels, not
    drawn figures): the picture is byte for byte the one drawn here first."""
    from functools import partial

    from msc_response.plotting import png_bytes
    from msc_response.reporting import figures

    change = pd.DataFrame({"level": ["arm", "all"], "arm": ["a", "all"], "n": [10, 12], "mean": [-1.0, -2.5],
                           "ci_low": [-2.0, -3.5], "ci_high": [0.0, -1.5]})  # fmt: skip
    drawn_here = png_bytes(figures.plot_changes(change, "t", "points"), simulated=True)
    page = Page("p", simulated=True, n_jobs=n_jobs)
    section = page.section("s")
    section.figure(partial(figures.plot_changes, change, "t", "points"), "change")
    section.figure(partial(figures.plot_changes, change, "t", "points"), "again")  # two: workers
    html = page.html()
    uri = "data:image/png;base64," + base64.b64encode(drawn_here).decode("ascii")
    assert html.count(uri) == 2
