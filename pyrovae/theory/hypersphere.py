r"""Berger & Sebag's hypersphere non-identifiability case: the decoder radius that a fixed-σ VAE prefers.

The setting of Theorem 1 (Berger & Sebag 2020, §3.1): data lie on the sphere :math:`S_{D-1}(R)\subset\mathbb{R}^D`
(no noise on the data), the observation model is :math:`\mathcal{N}(\mu(z), \sigma^2 I)` with a fixed σ,
and with an arbitrarily powerful encoder/decoder the ELBO is tight, so the VAE maximises the marginal
likelihood of Eq. (4), :math:`p_\theta(x) = \int \mathcal{N}(x;\mu,\sigma^2 I)\,p_\theta(\mu)\,d\mu`. By
symmetry the best :math:`p_\theta(\mu)` is uniform on a concentric sphere :math:`S_{D-1}(r)` (Eq. 6),
and what is left to optimise is the one number r. Eq. (7)-(8) give, up to constants,

.. math::
    p_\theta(x) \propto e^{-r^2/2\sigma^2}\int_0^\pi \sin^{D-2}\phi\;
    \exp\!\Big(\frac{rR}{\sigma^2}\cos\phi\Big)\,d\phi .

**Closed form used here.** The angle φ between a uniform point of :math:`S_{D-1}` and a fixed
direction has density :math:`\sin^{D-2}\phi / B` with :math:`B=\sqrt\pi\,\Gamma(\tfrac{D-1}2)/\Gamma(\tfrac D2)`,
and :math:`E[e^{\kappa\cos\phi}] = {}_0F_1(;\tfrac D2;\tfrac{\kappa^2}4)
= \Gamma(\tfrac D2)(2/\kappa)^{\nu} I_\nu(\kappa)`, :math:`\nu = \tfrac D2 - 1` (the von Mises-Fisher
normaliser). Keeping every constant, for any x with :math:`\|x\| = R`,

.. math::
    \log p_\theta(x) = -\tfrac D2\log(2\pi\sigma^2) - \frac{R^2 + r^2}{2\sigma^2}
    + \log {}_0F_1\!\big(;\tfrac D2;\tfrac{\kappa^2}4\big),\qquad \kappa = \frac{rR}{\sigma^2}.

Every data point has the same norm R, so this is also the expected log-likelihood (the ELBO at its
optimum) of the whole infinite data set. It depends on σ only through R/σ and r/σ, plus
:math:`-D\log\sigma`.

**The threshold.** Differentiating (the paper's Eq. 9 after an integration by parts) gives the
first-order condition :math:`r = R\,A_D(rR/\sigma^2)` with :math:`A_D = I_{D/2}/I_{D/2-1} < 1`, so any
optimum has r < R. Near r = 0, :math:`\log{}_0F_1(;b;x) = x/b + O(x^2)`, hence

.. math::
    \log p_\theta(x)\big|_r - \log p_\theta(x)\big|_0
    = \frac{r^2}{2\sigma^2}\Big(\frac{R^2}{D\sigma^2} - 1\Big) + O(r^4),

and the quartic coefficient is negative (:math:`\log{}_0F_1` is concave in x). The exact collapse
threshold is therefore :math:`\sigma^* = R/\sqrt D` (a continuous, pitchfork-like transition), which
the numerical maximisation below confirms. Theorem 1's :math:`R/\sqrt{D-1}` comes from bounding
:math:`\sin^2\phi\le 1` in Eq. (9): it is a *sufficient* condition for collapse (r = 0 is indeed the
optimum whenever :math:`\sigma\ge R/\sqrt{D-1}`), not the tight one. The paper's own Fig. 2 reading,
"this change occurs for R/σ ≈ √2" at D = 2, agrees with :math:`\sqrt D`, not with :math:`\sqrt{D-1}=1`;
and the sentence after the proof ("a local maximum for :math:`R<\sigma\sqrt{D-1}`") should read
:math:`\sqrt D`.

References:
    Berger & Sebag, "Variational Auto-Encoders: Not All Failures Are Equal" (2020):
    Theorem 1, Eqs. (4)-(9), Fig. 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from pyrovae.errors import ConfigError

__all__ = [
    "log_angular_mgf",
    "bessel_ratio",
    "log_likelihood",
    "log_likelihood_gap",
    "optimal_radius",
    "is_collapsed",
    "collapse_threshold",
    "exact_threshold",
    "theorem1_threshold",
    "monte_carlo_log_likelihood",
    "optimal_radius_grid",
    "ThresholdResult",
    "check_dim",
    "check_positive",
]

# ----------------------------------------------------------------------------------------------
# validation


def check_dim(D) -> int:
    """``D`` as an ``int`` >= 2 (the ambient dimension), else a :class:`~pyrovae.errors.ConfigError`."""
    if isinstance(D, bool) or not float(D).is_integer() or int(D) < 2:
        raise ConfigError(f"the ambient dimension D must be an integer >= 2, got {D!r}")
    return int(D)


def check_positive(name: str, value) -> None:
    """A :class:`~pyrovae.errors.ConfigError` naming ``name`` unless every entry of ``value`` is finite and > 0."""
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ConfigError(f"{name} must be finite and > 0, got {value!r}")


def _check_radius(r) -> np.ndarray:
    arr = np.asarray(r, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ConfigError(f"the decoder radius r must be finite and >= 0, got {r!r}")
    return arr


# ----------------------------------------------------------------------------------------------
# log 0F1(; D/2; kappa^2/4) = log E[exp(kappa cos phi)], accurate from kappa = 0 to large kappa

_SERIES_TERMS = 160


def _log_hyp0f1_series(b: float, x: np.ndarray) -> np.ndarray:
    """log1p of sum_{k>=1} x^k / (k! (b)_k): exact near x = 0, where the collapse decision is made."""
    term = np.ones_like(x)
    total = np.zeros_like(x)
    for k in range(1, _SERIES_TERMS + 1):
        term = term * x / (k * (b + k - 1.0))
        total = total + term
        if k > x.max(initial=0.0) ** 0.5 and np.all(term <= 1e-17 * total):  # past the peak, converged
            break
    return np.log1p(total)


def _log_bessel_i_debye(nu: float, kappa: np.ndarray) -> np.ndarray:
    """Debye's uniform expansion of log I_nu(kappa) (DLMF 10.41.3, two correction terms): only used
    where scipy's exponentially scaled ive underflows (large nu, moderate kappa)."""
    z = kappa / nu
    sq = np.sqrt(1.0 + z * z)
    eta = sq + np.log(z / (1.0 + sq))
    t = 1.0 / sq
    u1 = (3 * t - 5 * t**3) / 24.0
    u2 = (81 * t**2 - 462 * t**4 + 385 * t**6) / 1152.0
    return -0.5 * np.log(2 * np.pi * nu) - 0.5 * np.log(sq) + nu * eta + np.log1p(u1 / nu + u2 / nu**2)


def log_angular_mgf(kappa, D: int) -> np.ndarray:
    r"""log E[exp(κ cos φ)] for φ the angle of a uniform point of :math:`S_{D-1}` to a fixed axis.

    This is the integral of Berger & Sebag Eq. (8) normalised by its value at κ = 0:
    :math:`\log\int_0^\pi \sin^{D-2}\phi\,e^{\kappa\cos\phi}d\phi - \log\int_0^\pi\sin^{D-2}\phi\,d\phi
    = \log{}_0F_1(;\tfrac D2;\tfrac{\kappa^2}4) = \log\Gamma(\tfrac D2) + \nu\log\tfrac2\kappa + \log I_\nu(\kappa)`,
    ν = D/2 − 1. It is 0 at κ = 0 and ≈ κ²/(2D) near 0. Evaluated by its power series for
    :math:`\kappa^2/4 \le 25 + 5D/2` (no cancellation near 0), by ``scipy.special.ive`` above that, and by
    Debye's expansion where ``ive`` underflows (D in the hundreds).

    References:
        Berger & Sebag (2020), Eq. (8); DLMF 10.25.2 and 10.41.3.
    """
    D = check_dim(D)
    kappa = np.abs(np.asarray(kappa, dtype=float))
    b = D / 2.0
    nu = b - 1.0
    x = kappa * kappa / 4.0
    out = np.empty_like(kappa)
    small = x <= 25.0 + 5.0 * b
    if np.any(small):
        out[small] = _log_hyp0f1_series(b, x[small])
    big = ~small
    if np.any(big):
        k = kappa[big]
        with np.errstate(divide="ignore"):
            log_ive = np.log(special.ive(nu, k))
        bad = ~np.isfinite(log_ive)
        if np.any(bad):  # ive underflowed: nu >> kappa, use the uniform asymptotic expansion
            log_ive[bad] = _log_bessel_i_debye(nu, k[bad]) - k[bad]
        out[big] = special.gammaln(b) + nu * np.log(2.0 / k) + log_ive + k
    return out


def bessel_ratio(kappa, D: int) -> np.ndarray:
    r""":math:`A_D(\kappa) = I_{D/2}(\kappa)/I_{D/2-1}(\kappa)`, the derivative of :func:`log_angular_mgf` in κ.

    Differentiating Berger & Sebag Eq. (8) in r gives the first-order condition
    :math:`r = R\,A_D(rR/\sigma^2)` for any optimum r > 0 (equivalent to their Eq. 9 after an
    integration by parts); :math:`0 \le A_D < 1`, so optimal radii are < R.

    References:
        Berger & Sebag (2020), Eq. (9).
    """
    D = check_dim(D)
    kappa = np.abs(np.asarray(kappa, dtype=float))
    return special.ive(D / 2.0, kappa) / special.ive(D / 2.0 - 1.0, kappa)


# ----------------------------------------------------------------------------------------------
# the objective of Eq. (8)


def log_likelihood(r, *, D: int, R: float, sigma: float) -> np.ndarray:
    r"""Berger & Sebag Eq. (8), normalised: :math:`\log p_\theta(x)` for a data point with :math:`\|x\|=R`.

    The model is :math:`p_\theta(x)=\int\mathcal N(x;\mu,\sigma^2 I)\,p_\theta(\mu)d\mu` (Eq. 4-5) with
    :math:`p_\theta(\mu)` uniform on the sphere of radius ``r`` (Eq. 6), in ambient dimension D:

    .. math::
        \log p_\theta(x) = -\tfrac D2\log(2\pi\sigma^2) - \frac{R^2+r^2}{2\sigma^2}
        + \log{}_0F_1\!\big(;\tfrac D2;\tfrac{(rR/\sigma^2)^2}4\big).

    Since every data point of :math:`S_{D-1}(R)` has the same value, this is the expected
    log-likelihood of the data (the tight ELBO of Theorem 1's proof). ``R`` may be any norm ≥ 0 of x,
    which makes this the (radial) density of the generative model everywhere. Vectorised over ``r``.

    References:
        Berger & Sebag (2020), Theorem 1, Eqs. (4)-(8).
    """
    D = check_dim(D)
    check_positive("sigma", sigma)
    R_arr = np.asarray(R, dtype=float)
    if not np.all(np.isfinite(R_arr)) or np.any(R_arr < 0):
        raise ConfigError(f"the data radius R must be finite and >= 0, got {R!r}")
    r = _check_radius(r)
    s2 = float(sigma) ** 2
    return (-0.5 * D * np.log(2 * np.pi * s2) - (R_arr**2 + r**2) / (2 * s2)
            + log_angular_mgf(r * R_arr / s2, D))


def log_likelihood_gap(r, *, D: int, R: float, sigma: float) -> np.ndarray:
    r""":math:`\log p_\theta(x)|_r - \log p_\theta(x)|_{r=0}` of Berger & Sebag Eq. (8).

    Equal to :math:`-r^2/2\sigma^2 + \log{}_0F_1(;\tfrac D2;\tfrac{(rR/\sigma^2)^2}4)`, computed without the
    constant terms so that its sign is exact even when it is ~1e-15 (close to the threshold).
    Positive somewhere on r > 0 iff the collapsed decoder r = 0 is not optimal.

    References:
        Berger & Sebag (2020), Eq. (8).
    """
    D = check_dim(D)
    check_positive("R", R)
    check_positive("sigma", sigma)
    return _gap(_check_radius(r), D, float(R), float(sigma))


def _gap(r: np.ndarray, D: int, R: float, sigma: float) -> np.ndarray:
    s2 = sigma * sigma
    return -(r**2) / (2 * s2) + log_angular_mgf(r * R / s2, D)


def optimal_radius(*, D: int, R: float, sigma: float, n_grid: int = 401, xtol: float = 1e-12) -> float:
    r"""argmax over r ≥ 0 of Berger & Sebag Eq. (8): the decoder radius the VAE prefers.

    Global search: Eq. (8) on a grid of ``n_grid`` radii in [0, R] (any stationary point has r < R,
    see the module docstring), then bounded Brent refinement (``scipy.optimize.minimize_scalar``)
    in the bracket around the best grid point. Returns exactly ``0.0`` when no r > 0 beats r = 0
    (the collapse of Theorem 1), otherwise the maximiser (absolute tolerance ``xtol * R``).

    References:
        Berger & Sebag (2020), Theorem 1 and Eqs. (8)-(9).
    """
    D = check_dim(D)
    check_positive("R", R)
    check_positive("sigma", sigma)
    if int(n_grid) < 3:
        raise ConfigError(f"n_grid must be >= 3, got {n_grid!r}")
    R = float(R)
    sigma = float(sigma)
    grid = np.linspace(0.0, R, int(n_grid))
    vals = _gap(grid, D, R, sigma)
    i = int(np.argmax(vals))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    res = optimize.minimize_scalar(
        lambda r: -float(_gap(np.array([max(r, 0.0)]), D, R, sigma)[0]),
        bounds=(lo, hi), method="bounded", options={"xatol": xtol * R},
    )
    best_r, best_val = float(res.x), -float(res.fun)
    if vals[i] > best_val:
        best_r, best_val = float(grid[i]), float(vals[i])
    return best_r if best_val > 0.0 and best_r > 0.0 else 0.0


def is_collapsed(*, D: int, R: float, sigma: float, n_grid: int = 401) -> bool:
    """True when the optimal decoder radius of Berger & Sebag Eq. (8) is 0 (Theorem 1's failure)."""
    return optimal_radius(D=D, R=R, sigma=sigma, n_grid=n_grid) == 0.0


def theorem1_threshold(D: int, R: float) -> float:
    r"""Berger & Sebag Theorem 1's bound :math:`R/\sqrt{D-1}`: for σ at or above it the VAE collapses.

    A sufficient condition only (it bounds sin²φ ≤ 1 in Eq. 9); the exact threshold is
    :func:`exact_threshold`.
    """
    D = check_dim(D)
    check_positive("R", R)
    return float(R) / np.sqrt(D - 1.0)


def exact_threshold(D: int, R: float) -> float:
    r""":math:`R/\sqrt D`: the smallest σ at which r = 0 maximises Berger & Sebag Eq. (8).

    From the second-order expansion of Eq. (8) at r = 0 (module docstring); it agrees with the
    paper's Fig. 2 reading R/σ ≈ √2 at D = 2.
    """
    D = check_dim(D)
    check_positive("R", R)
    return float(R) / np.sqrt(float(D))


@dataclass(frozen=True)
class ThresholdResult:
    """Bracket of the empirical collapse threshold of Berger & Sebag Theorem 1 (Eq. 8 maximised over r):
    at ``sigma_low`` the optimal radius is > 0, at ``sigma_high`` it is 0."""

    sigma: float          # midpoint of the final bracket
    sigma_low: float
    sigma_high: float
    iterations: int


def collapse_threshold(D: int, R: float, *, rtol: float = 1e-7, n_grid: int = 401,
                       max_iter: int = 200) -> ThresholdResult:
    r"""Empirical collapse threshold σ* of Berger & Sebag Theorem 1, by bisection on σ.

    σ* is the smallest σ at which the numerically optimal decoder radius (:func:`optimal_radius`) is 0.
    The bracket is grown geometrically from σ = R without using any formula, then halved until
    ``(sigma_high - sigma_low) <= rtol * sigma_high``. Collapse is monotone in σ (the optimum only
    depends on R/σ and moves to 0 as R/σ falls), which the bisection relies on.

    References:
        Berger & Sebag (2020), Theorem 1; compare :func:`theorem1_threshold` and
        :func:`exact_threshold`.
    """
    D = check_dim(D)
    check_positive("R", R)
    check_positive("rtol", rtol)
    R = float(R)
    lo = hi = R
    for _ in range(200):  # collapsed upper end
        if is_collapsed(D=D, R=R, sigma=hi, n_grid=n_grid):
            break
        hi *= 2.0
    else:  # pragma: no cover - the optimum is 0 for sigma >= R, so this cannot happen
        raise RuntimeError("no collapsed sigma found")
    for _ in range(200):  # non-collapsed lower end
        lo /= 2.0
        if not is_collapsed(D=D, R=R, sigma=lo, n_grid=n_grid):
            break
    it = 0
    while hi - lo > rtol * hi and it < max_iter:
        mid = 0.5 * (lo + hi)
        if is_collapsed(D=D, R=R, sigma=mid, n_grid=n_grid):
            hi = mid
        else:
            lo = mid
        it += 1
    return ThresholdResult(sigma=0.5 * (lo + hi), sigma_low=lo, sigma_high=hi, iterations=it)


# ----------------------------------------------------------------------------------------------
# Monte-Carlo check of Eq. (4)/(8)


def monte_carlo_log_likelihood(r: float, *, D: int, R: float, sigma: float, num_samples: int = 100_000,
                               seed: int = 0) -> tuple[float, float]:
    r"""Monte-Carlo estimate of Berger & Sebag Eq. (4) at a data point with :math:`\|x\| = R`.

    Draws μ uniformly on :math:`S_{D-1}(r)` (normalised Gaussians) and averages the Gaussian density of
    Eq. (5) at :math:`x = R e_1`, in log space. Returns ``(log p_hat, standard error of log p_hat)``,
    the latter by the delta method. Independent of every closed form in this module.

    References:
        Berger & Sebag (2020), Eqs. (4)-(6).
    """
    D = check_dim(D)
    check_positive("R", R)
    check_positive("sigma", sigma)
    r = float(_check_radius(r))
    if int(num_samples) < 2:
        raise ConfigError(f"num_samples must be >= 2, got {num_samples!r}")
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((int(num_samples), D))
    mu = r * g / np.linalg.norm(g, axis=1, keepdims=True)
    x = np.zeros(D)
    x[0] = R
    logk = -0.5 * D * np.log(2 * np.pi * sigma**2) - ((x - mu) ** 2).sum(1) / (2 * sigma**2)
    m = logk.max()
    w = np.exp(logk - m)
    mean = w.mean()
    se_rel = w.std(ddof=1) / np.sqrt(len(w)) / mean
    return float(m + np.log(mean)), float(se_rel)


# ----------------------------------------------------------------------------------------------
# figures


def optimal_radius_grid(dims, ratios, *, n_r: int = 400) -> np.ndarray:
    r"""Optimal r/R of Berger & Sebag Eq. (8) for every (D, R/σ), by a vectorised grid search in r.

    Uses σ = 1 without loss of generality (Eq. 8 depends on R/σ and r/σ only, up to a constant).
    Resolution 1/(n_r − 1) in r/R; a cell is 0 when no grid radius beats r = 0. Shape
    ``(len(dims), len(ratios))``.

    References:
        Berger & Sebag (2020), Eq. (8), Fig. 2.
    """
    ratios = np.asarray(ratios, dtype=float)
    if np.any(~np.isfinite(ratios)) or np.any(ratios < 0):
        raise ConfigError("ratios R/sigma must be finite and >= 0")
    rho = np.linspace(0.0, 1.0, int(n_r))
    out = np.zeros((len(dims), len(ratios)))
    for a, D in enumerate(dims):
        D = check_dim(D)
        Rs = ratios[:, None]                      # R/σ with σ = 1
        r = rho[None, :] * Rs
        gap = -(r**2) / 2 + log_angular_mgf(r * Rs, D).reshape(r.shape)
        j = np.argmax(gap, axis=1)
        best = gap[np.arange(len(ratios)), j]
        out[a] = np.where(best > 0, rho[j], 0.0)
    return out
