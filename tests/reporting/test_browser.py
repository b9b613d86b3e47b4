"""The study report renders in a real browser: every image loads, no console error, not blank."""

from __future__ import annotations

import numpy as np
import pytest

from browser_helpers import render
from msc_response import simulate
from msc_response.config import config_from_dict
from msc_response.reporting.build import write_study_report

pytestmark = pytest.mark.slow


def test_study_report_renders_in_headless_chromium(tmp_path):
    study = simulate("trial", seed=5)
    page = write_study_report(config_from_dict({"name": "cp-browser"}), study, tmp_path / "report")
    seen = render(page, tmp_path / "screenshot.png")
    assert len(seen.images) >= 8
    assert all(i["complete"] and i["naturalWidth"] > 0 for i in seen.images), seen.images
    assert seen.errors == [], seen.errors
    assert seen.text_length > 5000 and seen.title.startswith("SIMULATED")
    from PIL import Image

    pixels = np.asarray(Image.open(seen.screenshot).convert("L"))
    assert pixels.std() > 20  # not a blank page: text, tables and figures


def test_a_broken_image_and_a_script_error_are_seen(tmp_path):
    # the check above can fail: a missing image and a console error are reported
    page = tmp_path / "bad.html"
    page.write_text(
        "<html><body><p>x</p><img src='missing.png'><script>console.error('boom')</script></body></html>"
    )
    seen = render(page, tmp_path / "bad.png")
    assert seen.images[0]["naturalWidth"] == 0
    assert any("boom" in e["message"] for e in seen.errors)


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    """A model trained on a SIMULATED trial, validated on a fresh SIMULATED cohort of 300."""
    from conftest import private_store, train_and_fresh_cohort
    from msc_response.pipelines.validate import validate_registered_model

    root = tmp_path_factory.mktemp("browser-validate")
    with private_store(root, chdir=True):
        _, summary = train_and_fresh_cohort(root, "cp-browser-validate", 31, 300)
        yield (
            root,
            summary,
            validate_registered_model(summary["model_uri"], root / "fresh", n_boot=50),
        )


def test_validation_page_renders_with_provenance_and_every_bound_in_range(validated, tmp_path):
    from page_tables import bounds_checked, out_of_range

    _, summary, run = validated
    seen = render(run.page, tmp_path / "validation.png")
    assert (
        len(seen.images) >= 6
    )  # cohort figures, external ROC, calibration, decision curve, subgroups
    assert all(i["complete"] and i["naturalWidth"] > 0 for i in seen.images), seen.images
    assert seen.errors == [], seen.errors
    assert seen.title.startswith("SIMULATED - External validation")
    html = run.page.read_text()
    for fact in ("Provenance", summary["run_id"], f"version {summary['version']}", "training data digest",
                 "validation cohort simulated"):  # fmt: skip
        assert fact in html, fact
    assert out_of_range(run.page) == []
    assert bounds_checked(run.page) > 30


def test_training_report_has_every_bound_in_range_and_folds_per_model_details(validated, tmp_path):
    from page_tables import bounds_checked, out_of_range

    root, summary, _ = validated
    page = next((root / "reports").glob(f"*/{summary['run_id']}/index.html"))
    seen = render(page, tmp_path / "training.png")
    assert all(i["complete"] and i["naturalWidth"] > 0 for i in seen.images), seen.images
    assert seen.errors == [], seen.errors
    html = page.read_text()
    assert html.count("<details>") >= 3  # one per model, folded below the comparison figures
    assert 'alt="ROC curves of every model, the primary with its 95% band"' in html
    assert "Operating point of" in html and "sensitivity" in html
    assert out_of_range(page) == []
    assert bounds_checked(page) > 50


def _explain_page(tmp_path):
    """The explain page of a real LightGBM model (exploratory, trained on SIMULATED data)."""
    from msc_response.features import build_features
    from msc_response.modeling.fitted import FittedModel, LoadedModel
    from msc_response.modeling.models import ModelSpec, make_estimator, storable
    from msc_response.reporting.waterfall import explain_patient, write_explanation

    config = config_from_dict({"name": "cp-browser"})
    fs = build_features(config, simulate("trial", n_patients=66, seed=4))
    spec = ModelSpec("lightgbm", "lightgbm", "candidate", tuple(fs.feature_columns))
    y = fs.table["response"].to_numpy(dtype=int)
    est = make_estimator(spec, config, 1, int(min(y.sum(), len(y) - y.sum())))
    est.fit(fs.table[fs.feature_columns].astype(float), y)
    path = FittedModel.from_estimator("lightgbm", fs.feature_columns, storable(est)).save(tmp_path)
    model_spec = {"kind": "lightgbm", "feature_columns": fs.feature_columns, "feature_spec": fs.feature_spec,
                  "config": config.to_dict(), "threshold": 0.5, "trained_on_simulated_data": True,
                  "exploratory": True}  # fmt: skip
    model = LoadedModel(
        "models:/cp-browser/1", "cp-browser", "1", model_spec, str(path), "exploratory"
    )
    expl = explain_patient(model, fs, fs.table["patient_id"].iloc[0])
    return write_explanation(expl, tmp_path / "explain" / "patient.html"), config


def test_explain_page_renders_with_provenance_status_and_labels(tmp_path):
    page, config = _explain_page(tmp_path)
    seen = render(page, tmp_path / "explain.png")
    assert len(seen.images) == 1
    assert all(i["complete"] and i["naturalWidth"] > 0 for i in seen.images), seen.images
    assert seen.errors == [], seen.errors
    assert seen.title.startswith("SIMULATED")
    text = " ".join(seen.text.split())
    # provenance: package version, git commit, config digest, date
    assert f"config digest {config.digest()}" in text and "msc-response " in text
    assert "git commit " in text and " UTC" in text
    # the model's status, said on the page itself
    assert "is EXPLORATORY" in text and "NOT validated for use" in text
    # features by their labels, the code names in the glossary
    assert "MX1+ monocytes, baseline (fraction of monocytes)" in text
    assert "Glossary of feature names" in text and "baseline_mx1_monocytes_fraction" in text
