"""The user's columns by name, and the small command-line bugs of the issue on Pyro and ArviZ users'
needs: a response is a column named y, y1, y2, … (not "year"), --x-cols / --y-cols choose by name,
a τ the data set has not is refused, rich markup and Markdown pipes are printed as text."""

from __future__ import annotations

import json

from pyrovae.data.files import load_csv
from pyrovae.experiments.results import ResultTable
from tests.cli.cli_helpers import assert_one_error_line, invoke

TINY = ["--n", "40", "--max-steps", "10", "-K", "5", "--quiet"]


def _csv(tmp_path, text: str):
    path = tmp_path / "data.csv"
    path.write_text(text)
    return path


def test_a_column_that_only_begins_with_y_is_an_input(tmp_path):
    d = load_csv(_csv(tmp_path, "year,yield,y\n1,2,3\n4,5,6\n7,8,9\n"))
    assert d.condition.tolist() == [[1, 2], [4, 5], [7, 8]] and d.observed.tolist() == [[3], [6], [9]]


def test_columns_chosen_by_name(tmp_path):
    path = _csv(tmp_path, "a, B ,c,d\n1,2,3,4\n5,6,7,8\n9,10,11,12\n")
    d = load_csv(path, x_cols=["b"], y_cols=["D", "a"])
    assert d.condition.tolist() == [[2], [6], [10]] and d.observed.tolist() == [[4, 1], [8, 5], [12, 9]]
    assert load_csv(path, y_cols=["c"]).condition.tolist() == [[1, 2, 4], [5, 6, 8], [9, 10, 12]]  # the rest are inputs


def test_train_takes_the_columns_and_records_them(tmp_path):
    path = _csv(tmp_path, "year,height,weight\n" + "".join(f"{i},{i * 0.5},{i * 0.25 + 1}\n" for i in range(40)))
    result = invoke("train", "--data-file", path, "--x-cols", "year", "--y-cols", "height,weight", *TINY,
                    "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["x_cols"] == ["year"] and cfg["y_cols"] == ["height", "weight"]


def test_bad_column_choices_are_one_line(tmp_path):
    path = _csv(tmp_path, "a,b,c\n1,2,3\n4,5,6\n7,8,9\n")
    out = ["--out", tmp_path / "run"]
    assert_one_error_line(invoke("train", "--data-file", path, "--y-cols", "z", *TINY, *out), "no column 'z'", "a, b, c")
    assert_one_error_line(invoke("train", "--data-file", path, "--x-cols", "a,b", "--y-cols", "b", *TINY, *out),
                          "'b' is in both")
    assert_one_error_line(invoke("train", "--y-cols", "y1", *TINY, *out), "give data_file")
    assert_one_error_line(invoke("train", "--model", "vae", "--data-file", path, "--y-cols", "a", *TINY, *out),
                          "--model cvae")


def test_a_noise_level_the_data_set_does_not_have_is_refused(tmp_path):
    assert_one_error_line(invoke("train", "--dataset", "m1", "--tau", "0.3", *TINY, "--out", tmp_path / "r"),
                          "'m1' has no noise level tau")


def test_datasets_list_prints_the_install_hint_as_text():
    result = invoke("datasets", "list")
    assert result.exit_code == 0 and "pyrovae[data]" in result.output.replace("\n", "").replace("│", "").replace(" ", "")


def test_a_pipe_in_a_header_or_cell_does_not_break_the_markdown_table():
    table = ResultTable("t", "title", ["q(y|x) fit"], ["KL(q|p)", "n"])
    table.set("q(y|x) fit", "KL(q|p)", "a|b")
    table.set("q(y|x) fit", "n", "3")
    rows = [line for line in table.to_markdown().splitlines() if line.startswith("|")]
    cells = [len(line.replace("\\|", "").split("|")) for line in rows]
    assert len(set(cells)) == 1 and "KL(q\\|p)" in rows[0] and "q(y\\|x)" in rows[2] and "a\\|b" in rows[2]
