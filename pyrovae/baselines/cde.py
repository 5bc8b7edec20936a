r"""Nonparametric conditional density estimators that Liu & Wang's Table 3 compares against.

Each baseline is fitted on ``(x, y)`` with a univariate response and returns the estimated
conditional density :math:`\hat f(y \mid x)` of every test input on a grid of ``y`` values;
:func:`density_moments` turns a density on a grid into the conditional mean and standard
deviation by numerical integration (the trapezoidal rule), as App. F of Liu & Wang (2025) does
("for other methods, the estimates are calculated by numerical integration").

* :class:`ConditionalKDE` (CKDE, Hall et al. 2004): a Gaussian product kernel with App. F's bandwidth
  :math:`h = 1.06\,\sigma\,n^{-1/(2t+d)}` for y and for each column of x (:func:`paper_bandwidth`:
  σ the column's SD, t = 2 the order of the Gaussian kernel, d = dim X), evaluated in vectorised
  form. ``bandwidth="normal_reference"`` (or ``"cv_ml"``, ``"cv_ls"``) takes ``statsmodels``'
  bandwidths instead (``normal_reference`` is :math:`1.06\,\sigma\,n^{-1/(4 + d + 1)}`: it counts y
  in the dimension); the test suite checks our density against ``statsmodels``' own ``pdf``.
* :class:`NNKCDEBaseline` (Dalmasso et al. 2020, package ``nnkcde``): a kernel density of the
  responses of the ``k`` nearest neighbours of ``x``; ``k`` and the bandwidth are chosen on a
  validation split by the CDE loss :math:`\int \hat f(y|x)^2 dy - 2\hat f(y_{val}|x)`, computed
  here (the package's ``estimate_loss`` is off by a factor 1/bandwidth for a 1-D response).
* :class:`FlexCodeBaseline` (Izbicki & Lee 2017, package ``flexcode``): a Fourier basis
  expansion of the density in ``y`` (at most 40 terms, App. F) whose coefficients are
  regressed on ``x`` by k-nearest neighbours (``k`` by 5-fold cross-validation); the number of
  terms is chosen on the validation split (``FlexCodeModel.tune``). FlexCode's optional bump
  removal and sharpening are not used (App. F does not mention them; on M1 and M2 they made the
  moments worse in a trial). The Fourier basis spans the training range of y, so a heavy right
  tail (M1's exp term, M2's multiplicative noise) leaves it few terms per unit of y and inflates
  the estimated SD.

``nnkcde`` and ``flexcode`` are optional (``pip install 'pyrovae[baselines]'`` plus the steps
in the README); :func:`baseline_available` says whether one can run and, if not, why.

References:
    Liu & Wang, *Doubly Robust Conditional VAE via Decoder Calibration* (Liu & Wang 2025), Sec. 5.2, App. F.
    Dalmasso, Pospisil, Lee, Izbicki, Freeman & Malz, *Conditional density estimation tools in
    python and R with applications to photometric redshifts and likelihood-free cosmological
    inference*, Astronomy and Computing 2020.
    Izbicki & Lee, *Converting high-dimensional regression to high-dimensional conditional
    density estimation*, EJS 2017.
    Hall, Racine & Li, *Cross-validation and the estimation of conditional probability
    densities*, JASA 2004.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import warnings
from typing import Sequence

import numpy as np

from pyrovae.errors import ConfigError, DataError, UnknownNameError

__all__ = [
    "density_moments", "y_grid", "paper_bandwidth", "ConditionalKDE", "NNKCDEBaseline", "FlexCodeBaseline",
    "BASELINES", "baseline_available", "make_baseline", "INSTALL_HINT",
]

INSTALL_HINT = {
    "ckde": "pip install statsmodels  (or: pip install 'pyrovae[baselines]'); the paper's bandwidth needs nothing",
    "nnkcde": "pip install scikit-learn statsmodels && pip install --no-deps --no-build-isolation nnkcde",
    "flexcode": "pip install scikit-learn PyWavelets && pip install --no-deps flexcode",
}
_MODULES = {"ckde": (), "nnkcde": ("nnkcde", "sklearn", "statsmodels"),
            "flexcode": ("flexcode", "sklearn", "pywt")}


def baseline_available(name: str) -> tuple[bool, str]:
    """``(True, "")`` if the baseline's packages import, else ``(False, reason with the install command)``."""
    if name not in _MODULES:
        raise UnknownNameError(f"unknown baseline {name!r}; known: {', '.join(_MODULES)}")
    missing = [m for m in _MODULES[name] if importlib.util.find_spec(m) is None]
    if missing:
        return False, f"not installed ({', '.join(missing)}); install with: {INSTALL_HINT[name]}"
    return True, ""


def _matrix(a, name: str) -> np.ndarray:
    a = np.asarray(a.detach().cpu().numpy() if hasattr(a, "detach") else a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or not np.isfinite(a).all():
        raise DataError(f"{name} must be a finite matrix (n, columns), got shape {a.shape}")
    return a


def _response(observed) -> np.ndarray:
    observed = _matrix(observed, "y")
    if observed.shape[1] != 1:
        raise DataError(f"the conditional density baselines need a univariate response, got {observed.shape[1]} columns")
    return observed[:, 0]


def y_grid(observed, size: int = 1024, margin: float = 0.1) -> np.ndarray:
    """An even grid over the range of ``y`` widened by ``margin`` × range on each side."""
    observed = _response(observed)
    lo, hi = float(observed.min()), float(observed.max())
    pad = margin * max(hi - lo, 1e-8)
    return np.linspace(lo - pad, hi + pad, int(size))


def density_moments(grid: np.ndarray, density: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Mean and SD of densities on a grid by the trapezoidal rule.

    ``density`` is ``(m, G)`` on ``grid`` ``(G,)`` (or ``(m, G)``, one grid per row); each row is
    renormalised to integrate to one, then :math:`\int y f` and
    :math:`\sqrt{\int (y - \text{mean})^2 f}`. Returns two ``(m,)`` arrays.
    """
    density = np.clip(np.asarray(density, dtype=np.float64), 0.0, None)
    grid = np.broadcast_to(np.asarray(grid, dtype=np.float64), density.shape)
    mass = np.trapezoid(density, grid, axis=-1)
    if (mass <= 0).any() or not np.isfinite(mass).all():
        raise DataError("a conditional density integrates to zero (or not finitely) on the grid; widen the grid")
    f = density / mass[:, None]
    mean = np.trapezoid(grid * f, grid, axis=-1)
    var = np.trapezoid((grid - mean[:, None]) ** 2 * f, grid, axis=-1)
    return mean, np.sqrt(np.clip(var, 0.0, None))


def _gauss(u: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)


def _split(condition: np.ndarray, observed: np.ndarray, validation: float, seed: int):
    n = condition.shape[0]
    if not 0 < validation < 1:
        raise ConfigError(f"the validation fraction must be in (0, 1), got {validation}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(validation * n)))
    val, train = perm[:n_val], perm[n_val:]
    return condition[train], observed[train], condition[val], observed[val]


def _cde_loss(grid: np.ndarray, density: np.ndarray, y_val: np.ndarray) -> float:
    r"""CDE loss :math:`\frac1m\sum_i \int \hat f(y|x_i)^2 dy - 2 \hat f(y_i|x_i)` on a grid."""
    sq = np.trapezoid(density**2, grid, axis=-1)
    at_y = np.array([np.interp(y_val[i], grid, density[i], left=0.0, right=0.0) for i in range(len(y_val))])
    return float(np.mean(sq - 2 * at_y))


def paper_bandwidth(values, condition_dim: int, kernel_order: int = 2) -> np.ndarray:
    r"""Liu & Wang's (2025) App. F bandwidth :math:`h = 1.06\,\sigma\,n^{-1/(2t+d)}`, one per column of
    ``values`` (n, k): σ the column's SD (divisor n), t = ``kernel_order`` (2 for the Gaussian kernel, whose
    first non-zero moment is the second), d = ``condition_dim`` the dimension of X (not of (X, Y))."""
    values = _matrix(values, "values")
    n = values.shape[0]
    return 1.06 * values.std(axis=0) * n ** (-1.0 / (2 * int(kernel_order) + int(condition_dim)))


class ConditionalKDE:
    r"""Conditional KDE :math:`\hat f(y|x) = \sum_i K_h(x - x_i) K_{h_y}(y - y_i) / \sum_i K_h(x - x_i)`.

    Gaussian kernels; ``bandwidth="paper"``: App. F's rule (:func:`paper_bandwidth`), otherwise one of
    ``statsmodels``' bandwidth methods (``normal_reference``; ``cv_ml`` / ``cv_ls`` are :math:`O(n^2)`
    and slow).
    """

    name = "ckde"

    def __init__(self, bandwidth: str = "paper", chunk: int = 256):
        self.bandwidth, self.chunk = bandwidth, int(chunk)

    def fit(self, condition, observed) -> "ConditionalKDE":
        self.condition, self.observed = _matrix(condition, "x"), _response(observed)
        if self.bandwidth == "paper":
            h = paper_bandwidth(np.column_stack([self.observed, self.condition]), self.condition.shape[1])
            self.h_y, self.h_x = float(h[0]), h[1:]
            return self
        if importlib.util.find_spec("statsmodels") is None:
            raise ConfigError(f"CKDE's {self.bandwidth!r} bandwidth needs statsmodels: {INSTALL_HINT['ckde']}")
        from statsmodels.nonparametric.kernel_density import KDEMultivariateConditional

        with warnings.catch_warnings():  # statsmodels' own FutureWarning about numpy's random state
            warnings.simplefilter("ignore", FutureWarning)
            kde = KDEMultivariateConditional(endog=self.observed[:, None], exog=self.condition, dep_type="c",
                                             indep_type="c" * self.condition.shape[1], bw=self.bandwidth)
        self.statsmodels_kde = kde
        self.h_y, self.h_x = float(kde.bw[0]), np.asarray(kde.bw[1:], dtype=np.float64)
        return self

    def density(self, condition, grid: np.ndarray) -> np.ndarray:
        """``(m, G)``: the conditional density of each row of ``x`` at the ``grid`` points."""
        condition = _matrix(condition, "x")
        out = np.empty((condition.shape[0], len(grid)))
        ky = _gauss((np.asarray(grid)[None, :] - self.observed[:, None]) / self.h_y) / self.h_y  # (n, G)
        for start in range(0, condition.shape[0], self.chunk):
            xs = condition[start:start + self.chunk]
            d2 = (((xs[:, None, :] - self.condition[None, :, :]) / self.h_x) ** 2).sum(-1)  # (c, n)
            logw = -0.5 * d2
            w = np.exp(logw - logw.max(1, keepdims=True))
            w /= w.sum(1, keepdims=True)
            out[start:start + self.chunk] = w @ ky
        return out


class NNKCDEBaseline:
    """Nearest-neighbour kernel CDE (``nnkcde``) with ``k`` and bandwidth tuned on a validation split."""

    name = "nnkcde"

    def __init__(self, k_grid: Sequence[int] = (10, 20, 50, 100, 200),
                 bandwidth_grid: Sequence[float] = (0.05, 0.1, 0.2, 0.4),
                 validation: float = 0.2, max_validation: int = 500, tune_grid: int = 256, seed: int = 0):
        self.k_grid, self.bandwidth_grid = [int(k) for k in k_grid], [float(b) for b in bandwidth_grid]
        self.validation, self.max_validation, self.tune_grid, self.seed = validation, max_validation, tune_grid, seed

    def fit(self, condition, observed) -> "NNKCDEBaseline":
        import nnkcde

        condition, observed = _matrix(condition, "x"), _response(observed)
        xt, yt, xv, yv = _split(condition, observed, self.validation, self.seed)
        xv, yv = xv[: self.max_validation], yv[: self.max_validation]
        scale = float(np.std(observed))
        grid = y_grid(observed, self.tune_grid)
        model = nnkcde.NNKCDE(xt, yt)
        best = (math.inf, None, None)
        for k in self.k_grid:
            if k > len(yt):
                continue
            for b in self.bandwidth_grid:
                dens = model.predict(xv, grid, k=k, bandwidth=b * scale)
                loss = _cde_loss(grid, dens, yv)
                if loss < best[0]:
                    best = (loss, k, b * scale)
        if best[1] is None:
            raise ConfigError(f"NNKCDE: every k in {self.k_grid} exceeds the {len(yt)} training points")
        self.loss, self.k, self.bandwidth_value = best
        self.model = nnkcde.NNKCDE(condition, observed, k=self.k)
        return self

    def density(self, condition, grid: np.ndarray) -> np.ndarray:
        return self.model.predict(_matrix(condition, "x"), np.asarray(grid), k=self.k, bandwidth=self.bandwidth_value)


class FlexCodeBaseline:
    """FlexCode with a Fourier basis (≤ ``max_basis`` terms) and k-NN regression of the coefficients."""

    name = "flexcode"

    def __init__(self, max_basis: int = 40, k_grid: Sequence[int] = (5, 10, 20, 50, 100),
                 validation: float = 0.2, seed: int = 0, n_jobs: int = 1):
        self.max_basis, self.k_grid = int(max_basis), [int(k) for k in k_grid]
        self.validation, self.seed, self.n_jobs = validation, seed, n_jobs

    def fit(self, condition, observed) -> "FlexCodeBaseline":
        import flexcode
        from flexcode.regression_models import NN

        condition, observed = _matrix(condition, "x"), _response(observed)
        xt, yt, xv, yv = _split(condition, observed, self.validation, self.seed)
        k = list(self.k_grid) if len(self.k_grid) > 1 else self.k_grid[0]  # a list means: choose by 5-fold CV
        model = flexcode.FlexCodeModel(NN, max_basis=self.max_basis, basis_system="Fourier",
                                       regression_params={"k": k}, z_min=float(observed.min()), z_max=float(observed.max()))
        model.model.n_jobs = self.n_jobs  # the package defaults to every core (-1), in processes
        if model.model.models is not None:
            model.model.models.n_jobs = self.n_jobs
        with contextlib.redirect_stdout(io.StringIO()):  # GridSearchCV(verbose=2) prints every fold
            model.fit(xt, yt)
            model.tune(xv, yv)  # the number of basis terms only, as App. F (no bump removal or sharpening)
        self.model = model
        self.k = model.model.params.get("n_neighbors")
        self.n_basis = len(model.best_basis)
        return self

    def density(self, condition, grid: np.ndarray) -> np.ndarray:
        """FlexCode predicts on its own even grid over the training range; interpolate onto ``grid``."""
        cdes, own = self.model.predict(_matrix(condition, "x"), n_grid=len(grid))
        own = np.asarray(own).ravel()
        return np.stack([np.interp(grid, own, row, left=0.0, right=0.0) for row in cdes])


BASELINES = {"nnkcde": NNKCDEBaseline, "ckde": ConditionalKDE, "flexcode": FlexCodeBaseline}


def make_baseline(name: str, **options):
    """The baseline called ``name`` (``nnkcde``, ``ckde``, ``flexcode``) with ``options``."""
    try:
        cls = BASELINES[name]
    except KeyError:
        raise UnknownNameError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}") from None
    return cls(**options)

