r"""Dai, Wang & Wipf's soft-threshold decoder: a bad local minimum at the collapsed VAE (Proposition 1).

The model (Dai, Wang & Wipf 2020, §4): decoder mean :math:`\mu_x = \pi_\alpha(W_x z) + b_x` with the soft threshold
:math:`\pi_\alpha(u) = \mathrm{sign}(u)(|u|-\alpha)_+` (Eq. 5; α = 0 is the affine decoder),
decoder covariance :math:`\gamma I`, prior :math:`\mathcal N(0, I)`, and a free Gaussian encoder
:math:`q(z|x^{(i)}) = \mathcal N(\mu_z^{(i)}, \mathrm{diag}(\sigma_z^{(i)})^2)` per data point. The energy
(Eq. 6) is

.. math::
    \mathcal L = \sum_{i=1}^n \Big\{ \mathbb E_{q}\Big[\tfrac1\gamma\|x^{(i)} - \pi_\alpha(W_x z) - b_x\|^2\Big]
    + d\log\gamma + \|\sigma_z^{(i)}\|^2 - \log|\mathrm{diag}(\sigma_z^{(i)})^2| + \|\mu_z^{(i)}\|^2 \Big\}.

**Closed form of the expectation (our derivation).** Under q, each output coordinate
:math:`u_j = (W_x z)_j` is univariate Gaussian with mean :math:`m_j = \sum_k W_{jk}\mu_{z,k}` and
variance :math:`s_j^2 = \sum_k W_{jk}^2\sigma_{z,k}^2`, and the squared error separates over j:
:math:`\mathbb E(x_j - b_j - \pi_\alpha(u_j))^2
= (x_j-b_j)^2 - 2(x_j-b_j)\mathbb E\pi_\alpha(u_j) + \mathbb E\pi_\alpha(u_j)^2`.
Since :math:`\pi_\alpha(u) = (u-\alpha)_+ - (-u-\alpha)_+` and the two parts have disjoint supports,
with :math:`a_\pm = (\pm m - \alpha)/s` and Φ, φ the standard normal CDF and PDF,

.. math::
    \mathbb E(\pm u - \alpha)_+ = (\pm m - \alpha)\Phi(a_\pm) + s\,\varphi(a_\pm), \qquad
    \mathbb E(\pm u - \alpha)_+^2 = \big((\pm m-\alpha)^2 + s^2\big)\Phi(a_\pm) + (\pm m - \alpha)\,s\,\varphi(a_\pm),

:math:`\mathbb E\pi_\alpha(u) = \mathbb E(u-\alpha)_+ - \mathbb E(-u-\alpha)_+` and
:math:`\mathbb E\pi_\alpha(u)^2 = \mathbb E(u-\alpha)_+^2 + \mathbb E(-u-\alpha)_+^2` (the paper's Lemma 3,
Eqs. 12-13, are the α-shifted special cases). For α = 0 these reduce to m and :math:`m^2+s^2`, which we
use directly (a polynomial, smooth at W = 0). For α > 0 and s = 0 (W = 0) the point-mass limit
:math:`\pi_\alpha(m)` is used through a NaN-safe double ``torch.where``: it has the right derivatives of
every order at W = 0 because the exact function is flat there (all derivatives of
:math:`e^{-\alpha^2/2s^2}` vanish). The energy is therefore an ordinary differentiable float64 torch
function, and autograd gives exact gradients and Hessians.

**Readings of the paper.**

* Constants: Eq. (6) as printed equals :math:`-2\,\mathrm{ELBO} - nd\log 2\pi + n\kappa`. The paper says
  the energy at (7) "has a value of nd", which holds only if the KL's :math:`-\kappa` per point is kept;
  Eq. (6) as printed gives :math:`nd + n\kappa`. :func:`vae_energy` implements Eq. (6) exactly as printed
  (6 for the two-point data); :func:`negative_elbo` gives the properly normalised −ELBO.
* The "global minimum" of Proposition 1 is an infimum: with γ learned, the energy is unbounded below
  (Appendix B.1 shows it → −∞ along a perfect-reconstruction family as δ → 0). No finite global
  minimiser exists; :func:`perfect_reconstruction_point` returns that family.
* "Strict local minimum" at (7): the Hessian is positive *semi*-definite, exactly 0 on the
  :math:`W_x` block (Appendix B.2's own table), so the second-order test is inconclusive there; strictness
  comes from the flat but strictly increasing energy along :math:`W_x` (the gradient "points back").
  For α = 0 the same point has a negative Hessian eigenvalue (3 − √17 for the two-point data): a saddle.

References:
    Dai, Wang & Wipf, "The Usual Suspects? Reassessing Blame for VAE Posterior Collapse" (ICML 2020),
    Dai, Wang & Wipf (2020): Eqs. (5)-(7), Proposition 1, Appendix B (Lemma 3, B.1, B.2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pyrovae.errors import ConfigError

__all__ = [
    "VAEParams",
    "two_point_data",
    "soft_threshold",
    "soft_threshold_moments",
    "vae_energy",
    "negative_elbo",
    "vae_energy_monte_carlo",
    "collapsed_point",
    "perfect_reconstruction_point",
    "optimal_gamma",
    "gradient",
    "gradient_norm",
    "hessian",
    "hessian_eigenvalues",
]

DTYPE = torch.float64


@dataclass(frozen=True)
class VAEParams:
    r"""The parameters of Dai et al. Eq. (6): θ = {W_x, b_x, γ} and φ = {μ_z^(i), σ_z^(i)}.

    Shapes: ``W`` (d, κ), ``b`` (d,), ``mu_z`` (n, κ), ``sigma_z`` (n, κ), ``gamma`` () — float64.
    :meth:`flatten` orders them W, b, μ_z, σ_z, γ (row-major), the coordinates of :func:`hessian`.
    """

    W: torch.Tensor
    b: torch.Tensor
    mu_z: torch.Tensor
    sigma_z: torch.Tensor
    gamma: torch.Tensor

    @property
    def shape(self) -> tuple[int, int, int]:
        """(n, d, κ)."""
        return self.mu_z.shape[0], self.W.shape[0], self.W.shape[1]

    def flatten(self) -> torch.Tensor:
        return torch.cat([self.W.reshape(-1), self.b.reshape(-1), self.mu_z.reshape(-1),
                          self.sigma_z.reshape(-1), self.gamma.reshape(-1)])

    @classmethod
    def unflatten(cls, vec: torch.Tensor, n: int, d: int, kappa: int) -> "VAEParams":
        sizes = [d * kappa, d, n * kappa, n * kappa, 1]
        if vec.ndim != 1 or vec.numel() != sum(sizes):
            raise ConfigError(f"a parameter vector for (n, d, kappa) = ({n}, {d}, {kappa}) has {sum(sizes)} "
                              f"entries, got shape {tuple(vec.shape)}")
        W, b, mu, sig, g = torch.split(vec, sizes)
        return cls(W.reshape(d, kappa), b, mu.reshape(n, kappa), sig.reshape(n, kappa), g.reshape(()))

    def labels(self) -> list[str]:
        """Names of the flattened coordinates (for reports)."""
        n, d, k = self.shape
        return ([f"W[{j},{a}]" for j in range(d) for a in range(k)] + [f"b[{j}]" for j in range(d)]
                + [f"mu_z[{i},{a}]" for i in range(n) for a in range(k)]
                + [f"sigma_z[{i},{a}]" for i in range(n) for a in range(k)] + ["gamma"])


def two_point_data() -> torch.Tensor:
    """The data of Dai et al. Appendix B: n = 2, d = 2, x^(1) = (1, 1), x^(2) = (-1, -1) (float64)."""
    return torch.tensor([[1.0, 1.0], [-1.0, -1.0]], dtype=DTYPE)


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not math.isfinite(alpha) or alpha < 0:
        raise ConfigError(f"the soft-threshold alpha must be finite and >= 0, got {alpha!r}")
    return alpha


def _check_data(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=DTYPE)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ConfigError(f"data must be an (n, d) matrix, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ConfigError("data must be finite")
    return x


def _check_params(p: VAEParams, x: torch.Tensor) -> None:
    n, d = x.shape
    k = p.W.shape[-1] if p.W.ndim == 2 else -1
    want = {"W": (d, k), "b": (d,), "mu_z": (n, k), "sigma_z": (n, k), "gamma": ()}
    for name, shape in want.items():
        if tuple(getattr(p, name).shape) != shape or k < 1:
            raise ConfigError(f"{name} must have shape {shape} for data of shape {(n, d)}, "
                              f"got {tuple(getattr(p, name).shape)}")
    if not bool((p.gamma > 0).all()):
        raise ConfigError(f"the decoder variance gamma must be > 0, got {float(p.gamma):g}")
    if not bool((p.sigma_z > 0).all()):
        raise ConfigError("the encoder standard deviations sigma_z must all be > 0")


def soft_threshold(u: torch.Tensor, alpha: float) -> torch.Tensor:
    r"""Dai et al. Eq. (5): :math:`\pi_\alpha(u) = \mathrm{sign}(u)(|u|-\alpha)_+`, α ≥ 0."""
    alpha = _check_alpha(alpha)
    # written with where (not sign * clamp(abs)) so that double backward stays in plain autograd
    return torch.where(u > alpha, u - alpha, torch.where(u < -alpha, u + alpha, torch.zeros_like(u)))


def soft_threshold_moments(m: torch.Tensor, s2: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    r""":math:`(\mathbb E\pi_\alpha(u), \mathbb E\pi_\alpha(u)^2)` for :math:`u\sim\mathcal N(m, s^2)`, in closed form.

    The Gaussian moments behind Dai et al. Eq. (6) (derivation in the module docstring; Lemma 3,
    Eqs. 12-13, of their Appendix B are special cases). Differentiable everywhere, including s² = 0
    where the point-mass value is used (NaN-safe ``torch.where``).

    References:
        Dai, Wang & Wipf (2020), Eqs. (5)-(6), Lemma 3.
    """
    alpha = _check_alpha(alpha)
    if alpha == 0.0:
        return m, m * m + s2
    pos = s2 > 0
    s = torch.sqrt(torch.where(pos, s2, torch.ones_like(s2)))
    inv_sqrt_2pi = 1.0 / math.sqrt(2.0 * math.pi)

    def tail(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # E(v)_+, E(v)_+^2, v ~ N(c, s^2)
        a = c / s
        cdf = torch.special.ndtr(a)
        pdf = inv_sqrt_2pi * torch.exp(-0.5 * a * a)
        return c * cdf + s * pdf, (c * c + s * s) * cdf + c * s * pdf

    up1, up2 = tail(m - alpha)
    lo1, lo2 = tail(-m - alpha)
    point = soft_threshold(m, alpha)
    mean = torch.where(pos, up1 - lo1, point)
    second = torch.where(pos, up2 + lo2, point * point)
    return mean, second


def _reconstruction(p: VAEParams, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per-point E_q ||x_i - pi_alpha(W z) - b||^2, shape (n,)."""
    m = p.mu_z @ p.W.T                        # (n, d)
    s2 = (p.sigma_z**2) @ (p.W**2).T          # (n, d)
    e1, e2 = soft_threshold_moments(m, s2, alpha)
    resid = x - p.b
    return (resid * resid - 2 * resid * e1 + e2).sum(-1)


def vae_energy(params: VAEParams | torch.Tensor, alpha: float, x: torch.Tensor | None = None) -> torch.Tensor:
    r"""Dai et al. Eq. (6), exactly as printed, in closed form (float64 scalar, differentiable).

    ``params`` is a :class:`VAEParams` or a flat vector (:meth:`VAEParams.flatten` order, with κ
    inferred from its length); ``x`` defaults to the two-point data of Appendix B. Equals
    :math:`-2\,\mathrm{ELBO} - nd\log 2\pi + n\kappa` (see :func:`negative_elbo`).

    References:
        Dai, Wang & Wipf (2020), Eqs. (5)-(6).
    """
    alpha = _check_alpha(alpha)
    x = two_point_data() if x is None else _check_data(x)
    p = _as_params(params, x)
    _check_params(p, x)
    n, d = x.shape
    recon = _reconstruction(p, x, alpha).sum()
    kl_part = (p.sigma_z**2).sum() - torch.log(p.sigma_z**2).sum() + (p.mu_z**2).sum()
    return recon / p.gamma + n * d * torch.log(p.gamma) + kl_part


def negative_elbo(params: VAEParams | torch.Tensor, alpha: float, x: torch.Tensor | None = None) -> torch.Tensor:
    r"""The negative ELBO of the model behind Dai et al. Eq. (6), all constants kept (nats, summed over data).

    :math:`-\mathrm{ELBO} = \tfrac12\big(\text{Eq. 6} + nd\log 2\pi - n\kappa\big)`.

    References:
        Dai, Wang & Wipf (2020), Eq. (6).
    """
    x = two_point_data() if x is None else _check_data(x)
    p = _as_params(params, x)
    n, d = x.shape
    k = p.W.shape[-1]
    return 0.5 * (vae_energy(p, alpha, x) + n * d * math.log(2 * math.pi) - n * k)


def vae_energy_monte_carlo(params: VAEParams, alpha: float, x: torch.Tensor | None = None, *,
                           num_samples: int = 200_000, seed: int = 0) -> tuple[float, float]:
    r"""Monte-Carlo estimate of Dai et al. Eq. (6) (reparameterised samples of q), with its standard error.

    Independent of the closed form in :func:`vae_energy`; returns ``(estimate, standard error)``.

    References:
        Dai, Wang & Wipf (2020), Eq. (6).
    """
    alpha = _check_alpha(alpha)
    x = two_point_data() if x is None else _check_data(x)
    p = _as_params(params, x)
    _check_params(p, x)
    n, d = x.shape
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        eps = torch.randn((int(num_samples),) + tuple(p.mu_z.shape), generator=g, dtype=DTYPE)
        z = p.mu_z + p.sigma_z * eps                                  # (S, n, κ)
        mean_x = soft_threshold(z @ p.W.T, alpha) + p.b               # (S, n, d)
        per_sample = ((x - mean_x) ** 2).sum((-1, -2)) / p.gamma      # (S,)
        rest = n * d * torch.log(p.gamma) + (p.sigma_z**2).sum() - torch.log(p.sigma_z**2).sum() + (p.mu_z**2).sum()
        est = per_sample.mean() + rest
        se = per_sample.std() / math.sqrt(int(num_samples))
    return float(est), float(se)


def _as_params(params: VAEParams | torch.Tensor, x: torch.Tensor) -> VAEParams:
    if isinstance(params, VAEParams):
        return params
    vec = torch.as_tensor(params)
    n, d = x.shape
    if vec.ndim != 1:
        raise ConfigError(f"a flat parameter vector is 1-D, got shape {tuple(vec.shape)}")
    k, rem = divmod(vec.numel() - d - 1, d + 2 * n)   # numel = dκ + d + 2nκ + 1
    if rem or k < 1:
        raise ConfigError(f"cannot read a parameter vector of length {vec.numel()} for data of shape {(n, d)}")
    return VAEParams.unflatten(vec, n, d, k)


def collapsed_point(x: torch.Tensor | None = None, kappa: int = 1) -> VAEParams:
    r"""Dai et al. Eq. (7): the posterior-collapsed stationary point of Eq. (6).

    :math:`W_x = 0`, :math:`b_x = \bar x`, :math:`\mu_z^{(i)} = 0`, :math:`\sigma_z^{(i)} = 1` (so
    :math:`q(z|x) = \mathcal N(0, I)`), :math:`\gamma = \bar\gamma = \frac1{nd}\sum_i\|x^{(i)}-\bar x\|^2`
    (so :math:`p_\theta(x) = \mathcal N(\bar x, \bar\gamma I)`). A local minimum for α > 0
    (Proposition 1), a saddle for α = 0.

    References:
        Dai, Wang & Wipf (2020), Eq. (7), Proposition 1, Appendix B.2.
    """
    x = two_point_data() if x is None else _check_data(x)
    if int(kappa) < 1:
        raise ConfigError(f"the latent dimension kappa must be >= 1, got {kappa!r}")
    n, d = x.shape
    xbar = x.mean(0)
    gamma_bar = ((x - xbar) ** 2).sum() / (n * d)
    if not gamma_bar > 0:
        raise ConfigError("Eq. (7) needs data that are not all equal (gamma_bar = 0)")
    k = int(kappa)
    return VAEParams(W=torch.zeros(d, k, dtype=DTYPE), b=xbar.clone(), mu_z=torch.zeros(n, k, dtype=DTYPE),
                     sigma_z=torch.ones(n, k, dtype=DTYPE), gamma=gamma_bar.reshape(()))


def optimal_gamma(params: VAEParams, alpha: float, x: torch.Tensor | None = None) -> torch.Tensor:
    r"""The γ minimising Dai et al. Eq. (6) with everything else fixed: total expected squared error / (nd)."""
    x = two_point_data() if x is None else _check_data(x)
    n, d = x.shape
    return (_reconstruction(params, x, _check_alpha(alpha)).sum() / (n * d)).reshape(())


def perfect_reconstruction_point(alpha: float, delta: float, *, gamma: str = "optimal") -> VAEParams:
    r"""Dai et al. Appendix B.1: the family whose energy → −∞ as δ → 0 (two-point data, κ = 1).

    :math:`\mu_z^{(1)} = 1`, :math:`\mu_z^{(2)} = -1`, :math:`W_x = (\alpha+1, \alpha+1)^\top`, :math:`b_x = 0`,
    :math:`\sigma_z^{(i)} = \delta`. With ``gamma="paper"``,
    :math:`\gamma = \mathbb E\,2(1-\pi_\alpha((\alpha+1)(1+\delta\epsilon)))^2`
    as printed (the per-point squared error, twice the optimal value); with ``gamma="optimal"`` (default)
    the γ minimising Eq. (6) given the rest, which is lower. Either way Eq. (6) ≈ 4 log δ + O(1), so
    the infimum of Eq. (6) is −∞ and Proposition 1's "global minimum" is the limit δ → 0 of this
    family (reconstruction exact, γ → 0).

    References:
        Dai, Wang & Wipf (2020), Proposition 1, Appendix B.1.
    """
    alpha = _check_alpha(alpha)
    delta = float(delta)
    if not math.isfinite(delta) or delta <= 0:
        raise ConfigError(f"delta must be finite and > 0, got {delta!r}")
    if gamma not in ("optimal", "paper"):
        raise ConfigError(f"gamma must be 'optimal' or 'paper', got {gamma!r}")
    x = two_point_data()
    w = alpha + 1.0
    p = VAEParams(W=torch.full((2, 1), w, dtype=DTYPE), b=torch.zeros(2, dtype=DTYPE),
                  mu_z=torch.tensor([[1.0], [-1.0]], dtype=DTYPE), sigma_z=torch.full((2, 1), delta, dtype=DTYPE),
                  gamma=torch.tensor(1.0, dtype=DTYPE))
    recon = _reconstruction(p, x, alpha)          # per point; equal for the two points by symmetry
    g = recon.sum() / 4.0 if gamma == "optimal" else recon[0]
    if not g > 0:
        raise ConfigError(f"delta = {delta:g} is too small for float64: the reconstruction error underflows")
    return VAEParams(p.W, p.b, p.mu_z, p.sigma_z, g.reshape(()))


def _flat(params: VAEParams | torch.Tensor) -> torch.Tensor:
    vec = params.flatten() if isinstance(params, VAEParams) else torch.as_tensor(params)
    return vec.detach().to(DTYPE).clone()


def gradient(params: VAEParams | torch.Tensor, alpha: float, x: torch.Tensor | None = None) -> torch.Tensor:
    """Gradient of Dai et al. Eq. (6) in the flattened coordinates of :meth:`VAEParams.flatten` (autograd)."""
    x = two_point_data() if x is None else _check_data(x)
    vec = _flat(params).requires_grad_(True)
    (g,) = torch.autograd.grad(vae_energy(vec, alpha, x), vec)
    return g.detach()


def gradient_norm(params: VAEParams | torch.Tensor, alpha: float, x: torch.Tensor | None = None) -> float:
    """Euclidean norm of the gradient of Dai et al. Eq. (6); ≈ 0 at the stationary point of Eq. (7)."""
    return float(gradient(params, alpha, x).norm())


def hessian(params: VAEParams | torch.Tensor, alpha: float, x: torch.Tensor | None = None) -> torch.Tensor:
    """Hessian of Dai et al. Eq. (6) in the flattened coordinates (``torch.autograd.functional.hessian``).

    References:
        Dai, Wang & Wipf (2020), Appendix B.2 (the block structure at Eq. 7).
    """
    x = two_point_data() if x is None else _check_data(x)
    return torch.autograd.functional.hessian(lambda v: vae_energy(v, alpha, x), _flat(params)).detach()


def hessian_eigenvalues(params: VAEParams | torch.Tensor, alpha: float, x: torch.Tensor | None = None) -> torch.Tensor:
    """Ascending eigenvalues of the (symmetrised) Hessian of Dai et al. Eq. (6)."""
    H = hessian(params, alpha, x)
    return torch.linalg.eigvalsh(0.5 * (H + H.T))
