"""``pyrovae check-separability DATA``: Yacoby, Pan & Doshi-Velez's guideline-1 check — can a simple classifier tell
the cohorts apart? (:func:`pyrovae.metrics.separability.separability`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pyrovae.cli.common import cli_errors, console
from pyrovae.errors import DataError

__all__ = ["features_and_labels", "separability_command"]


def features_and_labels(data: str):
    """``(x, labels, name)`` of a registered semi-supervised data set (all its true labels), of a UCI
    file named as the repository names it (``cmc.data``, ``messidor_features.arff``), or of a CSV file
    (columns ``x…`` are features, the one ``y…`` column — or the last column — the label)."""
    from pyrovae.data.files import load_csv
    from pyrovae.data.registry import DATASETS, make_dataset
    from pyrovae.data.semisupervised_real import REAL_FILES, load_real

    if data in DATASETS:
        ds = make_dataset(data)
        labels = getattr(ds, "labels", None)
        if labels is None:
            raise DataError(f"data set {data!r} has no class labels; use a semi-supervised one or a CSV file")
        return ds.observed, labels, data
    path = Path(data)
    if not path.exists():
        raise DataError(f"{data!r} is neither a registered data set nor an existing file")
    by_file = {f: n for n, f in REAL_FILES.items()}
    if path.name in by_file:  # a UCI file in its own format (cmc.data, messidor_features.arff)
        ds = load_real(by_file[path.name], path)
        return ds.observed, ds.labels, path.name
    ds = load_csv(path)
    if ds.condition.shape[1] < 1 or ds.observed.shape[1] != 1:
        raise DataError(f"{path}: need at least one feature column and exactly one label column, got "
                        f"{ds.condition.shape[1]} and {ds.observed.shape[1]}")
    return ds.condition, ds.observed, path.name


@cli_errors
def separability_command(
    data: str = typer.Argument(..., help="A registered data set with labels, a UCI cmc.data / messidor_features.arff, "
                               "or a CSV file (x… features, one y label column)."),
    folds: int = typer.Option(5, help="Cross-validation folds."),
    seed: int = typer.Option(0, help="Shuffles the folds."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Balanced accuracy and mean entropy of a cross-validated logistic regression of y | x (Yacoby, Pan & Doshi-Velez 2021,
    Sec. 7): high entropy means the cohorts overlap and M2 is prone to functional collapse."""
    from pyrovae.metrics.separability import separability

    x, labels, name = features_and_labels(data)
    result = separability(x, labels, folds=folds, seed=seed)
    if as_json:
        console.print_json(json.dumps({"data": name, **result.to_dict()}))
        return
    console.print(f"{name}: n = {result.n}, {result.classes} classes, {result.folds}-fold logistic regression")
    console.print(f"  balanced accuracy {result.balanced_accuracy:.3f} (chance {1 / result.classes:.3f})")
    console.print(f"  mean entropy of p(y|x) {result.mean_entropy:.3f} nats = {result.normalised_entropy:.3f} of the maximum")
