r"""The separability check of Yacoby, Pan & Doshi-Velez (2021), Sec. 7 ("Proposed benchmarks typify classes of real data")
and Sec. 9, guideline 1: how well can a simple classifier tell the cohorts apart?

"We train a classifier to predict y|x. Difficulty in training a good classifier indicates that
x|y = 0 and x|y = 1 lie roughly on the same manifold ... we expect this failure mode [functional
collapse] to occur when the classifier's average entropy :math:`E_{p(x,y)}[H[p(y|x)]]` is high."

:func:`separability` fits a standardised multinomial logistic regression (scikit-learn) in
stratified ``folds``-fold cross-validation and reports, on the held-out predictions, the
balanced accuracy and the mean predictive entropy :math:`\frac1n\sum_i H[\hat p(y|x_i)]` in nats,
also divided by its maximum :math:`\log K` (1 = the classifier learns nothing, 0 = certain).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from pyrovae.errors import DataError
from pyrovae import validation
from pyrovae.validation import integer_at_least

__all__ = ["Separability", "separability"]


@dataclass(frozen=True)
class Separability:
    balanced_accuracy: float  # cross-validated; chance = 1 / classes
    mean_entropy: float  # E_x H[p̂(y|x)] in nats
    normalised_entropy: float  # mean_entropy / log(classes), in [0, 1]
    classes: int
    n: int
    folds: int

    def to_dict(self) -> dict:
        return asdict(self)


def _as_array(a, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a, dtype=float)
    if not np.isfinite(a).all():
        raise DataError(f"{name} contains NaN or infinite values")
    return a


def separability(x, labels, folds: int = 5, seed: int = 0) -> Separability:
    """Cross-validated balanced accuracy and mean entropy of a logistic regression of ``labels`` on ``x``.

    Args:
        x: ``(n, p)`` features.
        labels: ``(n,)`` or ``(n, 1)`` integer-valued class labels (at least two classes, each with
            at least ``folds`` members).
        folds: cross-validation folds (>= 2).
        seed: shuffles the folds.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = integer_at_least("folds", folds, 2)
    seed = validation.seed("seed", seed)
    x, y = _as_array(x, "x"), _as_array(labels, "labels")
    if x.ndim == 1:
        x = x[:, None]
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if x.ndim != 2 or x.shape[1] < 1 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise DataError(f"need x (n, p) with p >= 1 and one label per row; got x {x.shape}, labels {y.shape}")
    if not np.array_equal(y, np.round(y)):
        raise DataError("labels must be integer class labels (this check is for discrete y)")
    classes, counts = np.unique(y.astype(int), return_counts=True)
    if len(classes) < 2:
        raise DataError(f"need at least two classes, got {len(classes)}")
    if counts.min() < folds:
        raise DataError(f"every class needs at least {folds} members for {folds}-fold cross-validation; "
                        f"the smallest has {counts.min()}")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(n_splits=int(folds), shuffle=True, random_state=int(seed))
    proba = cross_val_predict(clf, x, y.astype(int), cv=cv, method="predict_proba")
    pred = classes[proba.argmax(1)]
    entropy = float(-(proba * np.log(np.clip(proba, 1e-300, None))).sum(1).mean())
    return Separability(float(balanced_accuracy_score(y.astype(int), pred)), entropy, entropy / math.log(len(classes)),
                        len(classes), int(x.shape[0]), int(folds))
