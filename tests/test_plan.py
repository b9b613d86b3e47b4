"""msc-response plan: power of candidate randomised designs by Monte Carlo."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from msc_response.cli import app
from msc_response.modeling.plan import load_plan, plan

runner = CliRunner()


def write(path, **over):
    spec = {"mx1_role": "predictive", "replicates": 3, "seed": 2,
            "designs": [{"name": "all-comers", "n_per_arm": [30]},
                        {"name": "enriched", "n_per_arm": [30], "enrich_mx1_quantile": 0.5}], **over}  # fmt: skip
    path.write_text(yaml.safe_dump(spec))
    return path


def test_enrichment_on_a_predictive_marker_raises_the_true_effect_and_results_repeat(tmp_path):
    spec = load_plan(write(tmp_path / "p.yaml"))
    results = plan(spec)
    by = {r["design"]: r for r in results}
    assert by["enriched"]["true_ate"]["value"] > by["all-comers"]["true_ate"]["value"] + 0.05
    for r in results:
        for key in ("power_primary", "power_interaction"):
            assert 0 <= r[key]["value"] <= 1 and r[key]["mcse"] >= 0
        assert r["treated_per_extra_responder"]["value"] == pytest.approx(
            1 / r["true_ate"]["value"]
        )
    assert plan(spec) == results  # seeded: the same file gives the same numbers


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"designs": []}, "non-empty list 'designs'"),
        ({"designs": [{"name": "a", "n_per_arm": [5]}]}, "designs[0].n_per_arm"),
        (
            {"designs": [{"name": "a", "n_per_arm": [30], "enrich_mx1_quantile": 1.5}]},
            "enrich_mx1_quantile",
        ),
        ({"mx1_role": "sometimes"}, "mx1_role"),
        ({"replicates": 1}, "replicates"),
        ({"power": 0.9}, "unknown key 'power'"),
    ],
)
def test_bad_design_files_exit_2_naming_the_key(tmp_path, over, message):
    result = runner.invoke(app, ["plan", "--design", str(write(tmp_path / "p.yaml", **over)),
                                 "--out", str(tmp_path / "o")])  # fmt: skip
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_cli_plan_writes_the_numbers_and_a_page(tmp_path):
    out = tmp_path / "o"
    spec = write(
        tmp_path / "p.yaml", designs=[{"name": "all-comers", "n_per_arm": [20, 30]}], replicates=2
    )
    result = runner.invoke(app, ["plan", "--design", str(spec), "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "plan.json").read_text())
    assert data["simulated"] is True and [r["n_per_arm"] for r in data["results"]] == [20, 30]
    html = (out / "index.html").read_text()
    assert html.count("<img") == 2 and "SIMULATED" in html
