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


# ----------------------------------------------------------------------------------------
# nothing silently wrong: the table is read as written, or the run stops and says why


def test_semicolon_delimited_file_is_an_error_listing_the_columns_found(tmp_path):
    src = tmp_path / "visits.csv"
    src.write_text("bilirubin;albumin;inr\n1.2;3.0;1.1\n")
    out = tmp_path / "o.csv"
    result = runner.invoke(app, ["scores", str(src), str(out)])
    assert result.exit_code == 2, result.output
    assert "no score input column found" in result.output
    assert "the columns read are ['bilirubin;albumin;inr']" in result.output
    assert "separated by ';'" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["visits.csv"]
    # decimal commas make the same file unparsable: the message says why, too
    src.write_text("bilirubin;albumin;inr\n1,2;3,0;1,1\n")
    result = runner.invoke(app, ["scores", str(src), str(out)])
    assert result.exit_code == 2 and "separated by ';'" in result.output, result.output


def test_headers_are_matched_exactly_and_a_case_mismatch_is_named(tmp_path):
    src = tmp_path / "visits.csv"
    src.write_text("Bilirubin,Albumin,INR\n1.2,3.0,1.1\n")
    result = runner.invoke(app, ["scores", str(src), str(tmp_path / "o.csv")])
    assert result.exit_code == 2, result.output
    assert "column 'Bilirubin': is not read as 'bilirubin'" in result.output
    assert "the columns read are ['Bilirubin', 'Albumin', 'INR']" in result.output
    # one mis-cased column among good ones would silently empty MELD: an error too
    src.write_text("bilirubin,INR,creatinine\n1.2,1.1,1.0\n")
    result = runner.invoke(app, ["scores", str(src), str(tmp_path / "o.csv")])
    assert result.exit_code == 2 and "column 'INR': is not read as 'inr'" in result.output
    # a close but different name in a table with no input gets a suggestion
    src.write_text("bilirubine,x\n1.2,1\n")
    result = runner.invoke(app, ["scores", str(src), str(tmp_path / "o.csv")])
    assert result.exit_code == 2 and "'bilirubine' -> 'bilirubin'?" in result.output
    assert not (tmp_path / "o.csv").exists()


def test_pass_through_columns_are_written_exactly_as_read(tmp_path):
    src = tmp_path / "visits.csv"
    src.write_text(
        "id,visit_date,note,bilirubin,albumin,inr,creatinine,sodium,ascites,encephalopathy,dialysis,sex\n"
        '007,2024-01-05,"a, b",1.50,3.0,1.1,1.0,NA,0,0,0,\n'
        "0042,,NA,2.0,2.9,1.2,1.1,135,1,0,0,F\n"
    )
    out = tmp_path / "o.csv"
    result = runner.invoke(app, ["scores", str(src), str(out)])
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0].startswith("id,visit_date,note,bilirubin,albumin,inr,creatinine,sodium,")
    assert lines[1].startswith('007,2024-01-05,"a, b",1.50,3.0,1.1,1.0,NA,0,0,0,,')
    assert lines[2].startswith("0042,,NA,2.0,2.9,1.2,1.1,135,1,0,0,F,")
    # the scores are those of the numbers alone ('NA' sodium: no MELD-Na for that row)
    numbers = tmp_path / "numbers.csv"
    numbers.write_text(
        "bilirubin,albumin,inr,creatinine,sodium,ascites,encephalopathy,dialysis,sex\n"
        "1.5,3.0,1.1,1.0,,0,0,0,\n2.0,2.9,1.2,1.1,135,1,0,0,F\n"
    )
    expected = pd.read_csv(_scored(tmp_path, numbers, "n.csv"))
    got = pd.read_csv(out)
    for col in ("child_pugh", "child_pugh_class", "meld", "meld_na", "meld3"):
        pd.testing.assert_series_equal(got[col], expected[col])
    assert got["meld"].notna().all() and got["meld_na"].isna().tolist() == [True, False]
    # Parquet: as written too, and text stays text
    df = pd.read_parquet(_scored(tmp_path, src, "o.parquet"))
    assert df["id"].tolist() == ["007", "0042"] and df["note"].tolist() == ["a, b", "NA"]


def test_parquet_input_keeps_its_types_integer_ids_with_gaps_included(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "visits.parquet"
    table = pa.table({"patient": pa.array([2, None, 7], pa.int64()),
                      "bilirubin": [1.0, 2.0, 3.0], "inr": [1.1, 1.2, 1.3],
                      "creatinine": [1.0, 1.0, 1.0]})  # fmt: skip
    pq.write_table(table, src)
    out = tmp_path / "o.csv"
    assert runner.invoke(app, ["scores", str(src), str(out)]).exit_code == 0
    assert [line.split(",")[0] for line in out.read_text().splitlines()] == [
        "patient",
        "2",
        "",
        "7",
    ]
    back = pq.read_table(_scored(tmp_path, src, "o.parquet"))
    assert back.schema.field("patient").type == pa.int64()
    assert back.column("patient").to_pylist() == [2, None, 7]


def _scored(tmp_path, src, name):
    out = tmp_path / name
    result = runner.invoke(app, ["scores", str(src), str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_non_utf8_input_is_an_error_with_its_byte_offset_or_is_read_with_encoding(tmp_path):
    src = tmp_path / "visits.csv"
    src.write_bytes("name,bilirubin\nw\xf6rner,1.0\n".encode("latin-1"))
    out = tmp_path / "o.csv"
    result = runner.invoke(app, ["scores", str(src), str(out)])
    assert result.exit_code == 2, result.output
    assert "visits.csv: not UTF-8 text: byte 0xf6 at byte offset 16 (line 2)" in result.output
    assert "--encoding" in result.output and not out.exists()
    result = runner.invoke(app, ["scores", str(src), str(out), "--encoding", "latin-1"])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").splitlines()[1].startswith("wörner,1.0,")
    result = runner.invoke(app, ["scores", str(src), str(out), "--encoding", "klingon"])
    assert result.exit_code == 2 and "--encoding: unknown encoding 'klingon'" in result.output


def test_duplicated_columns_empty_and_header_only_files_exit_2_naming_the_file(tmp_path):
    cases = {
        "dup.csv": ("bilirubin,inr,bilirubin\n1,1.1,2\n", "dup.csv, column 'bilirubin': the column appears more than once"),
        "dup_other.csv": ("a,a,bilirubin\n1,2,3\n", "dup_other.csv, column 'a': the column appears more than once"),
        "empty.csv": ("", "empty.csv: the file is empty (0 bytes)"),
        "header.csv": ("bilirubin,inr\n", "header.csv: no rows: the file holds a header only"),
        "empty.parquet": ("", "empty.parquet: cannot read the file"),
    }  # fmt: skip
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        out = tmp_path / f"out_{Path(name).stem}.csv"
        result = runner.invoke(app, ["scores", str(tmp_path / name), str(out)])
        assert result.exit_code == 2 and message in result.output, (name, result.output)
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(cases)


def test_an_implausible_si_value_is_shown_as_written_with_its_conversion(tmp_path):
    bad = tmp_path / "si.csv"
    bad.write_text("bilirubin_umol_L,albumin,inr,creatinine,sodium\n2000,3.5,1.2,1.0,140\n")
    result = runner.invoke(app, ["scores", str(bad), str(tmp_path / "o.csv")])
    assert result.exit_code == 2
    assert (
        "si.csv, row 1, column 'bilirubin_umol_L': value 2000.0 umol/L (= 117 mg/dL) is not "
        "plausible (expected within 0.05-80 mg/dL)" in " ".join(result.output.split())
    )
