"""``msc-response scores`` end to end through the CLI."""

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from msc_response.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
runner = CliRunner()


def test_scores_example_table(tmp_path):
    out = tmp_path / "scored.parquet"
    result = runner.invoke(app, ["scores", str(EXAMPLES / "visits.csv"), str(out)])
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(out).set_index("visit")
    assert df.loc["worked-cp-12", "child_pugh"] == 12
    assert df.loc["worked-cp-12", "child_pugh_class"] == "C"
    assert df.loc["worked-meld-20", "meld"] == 20
    assert df.loc["worked-meldna-29", "meld_na"] == 29
    assert df.loc["worked-meldna-20", "meld_na"] == 20
    assert df.loc["normal", "meld"] == 6
    # PT over control 5 s -> 2 points, no INR: Child-Pugh computed, MELD missing
    assert df.loc["pt-instead-of-inr", "child_pugh"] == 2 + 2 + 2 + 2 + 1
    assert pd.isna(df.loc["pt-instead-of-inr", "meld"])
    # PBC: bilirubin 3.5 is 1 point under the cholestatic bands
    assert df.loc["pbc-bands", "child_pugh"] == 1 + 2 + 1 + 2 + 1
    assert pd.isna(df.loc["missing-creatinine", "meld"])
    # other columns pass through unchanged
    assert df.loc["worked-cp-12", "etiology"] == "HBV"


def test_si_headers_give_the_same_scores(tmp_path):
    out = tmp_path / "scored.csv"
    result = runner.invoke(app, ["scores", str(EXAMPLES / "visits_si.csv"), str(out)])
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out)
    assert df.loc[0, "meld"] == 20
    assert df.loc[0, "albumin_g_L"] == 30  # passes through in the user's unit


def test_bad_input_reports_every_problem_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "bilirubin,albumin,inr,creatinine,sodium,ascites,encephalopathy,sex\n"
        "1.0,38,1.1,1.0,135,0,0,M\n"
        "abc,3.0,1.1,1.0,135,3,0,X\n"
    )
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["scores", str(bad), str(out)])
    assert result.exit_code == 2
    text = result.output
    assert "bad.csv, row 1, column 'albumin'" in text and "looks like g/L" in text
    assert "row 2, column 'bilirubin': value 'abc' is not a number" in text
    assert "row 2, column 'ascites'" in text
    assert "row 2, column 'sex'" in text
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [bad]


def test_missing_file_and_bad_extension_exit_2(tmp_path):
    result = runner.invoke(app, ["scores", str(tmp_path / "nope.csv"), str(tmp_path / "o.csv")])
    assert result.exit_code == 2 and "file not found" in result.output
    result = runner.invoke(app, ["scores", str(EXAMPLES / "visits.csv"), str(tmp_path / "o.xlsx")])
    assert result.exit_code == 2 and "'.xlsx'" in result.output


def test_both_canonical_and_si_column_is_an_error(tmp_path):
    bad = tmp_path / "both.csv"
    bad.write_text("bilirubin,bilirubin_umol_L\n1.0,17.1\n")
    result = runner.invoke(app, ["scores", str(bad), str(tmp_path / "o.csv")])
    assert result.exit_code == 2
    assert "both 'bilirubin' and 'bilirubin_umol_L'" in result.output
