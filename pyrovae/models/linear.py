r"""The linear models of Yacoby, Pan & Doshi-Velez (2020, App. C) as Pyro programs with closed forms.

Two decoders whose observation noise is *tied* to the decoder weight so that the data
marginal does not depend on the learned parameter:

* :class:`ScalarDecoder` — Eq. 5 / App. C.1: :math:`x = \theta z + \varepsilon`,
  :math:`\varepsilon \sim N(0, \sigma_\varepsilon^2 - \theta^2)`, so :math:`p_\theta(x) = N(0, \sigma_\varepsilon^2)`
  for every :math:`|\theta| < \sigma_\varepsilon`.
* :class:`CholeskyDecoder` — Eq. 3 / App. C.2: :math:`x = \mathrm{Cholesky}(AA^\top + B) z + \varepsilon`,
  :math:`\varepsilon \sim N(0, \sigma_\varepsilon^2 I - B)`, ``B`` diagonal in :math:`[0, \sigma_\varepsilon^2)`,
  learning ``A`` (Case 1, LinearJTEx) or ``B`` (Case 2, Figure 1A/B).

:func:`linear_vae` puts either decoder in a :class:`~pyrovae.models.cvae.SigmaCVAE` (``condition_dim = 0``)
with a linear mean-field encoder and a :class:`TiedNoise` observation model, so the ordinary
trainer, algorithms and metrics apply. :meth:`LinearGaussian.from_decoder
<pyrovae.posterior.exact.LinearGaussian.from_decoder>` turns the decoder into its closed forms: posterior (Eq. 16, 23-24), marginal, mutual
information (Eq. 15, 22) and the best mean-field fit (C.3) all come from there.

Note: Eq. 15 of the paper prints :math:`\tfrac12[\log\frac{\sigma^2}{\sigma^2-\theta^2} - 4]`;
the mutual information of the joint Eq. 13 is :math:`\tfrac12\log\frac{\sigma^2}{\sigma^2-\theta^2}`
(the "−4" is a typo: it would make I negative at θ = 0). The range "0 ≤ θ ≤ σ²" of C.1 is
likewise :math:`|\theta| < \sigma_\varepsilon`.

References:
    Yacoby, Pan & Doshi-Velez (2020), *Characterizing and Avoiding Problematic Global Optima of
    Variational Autoencoders*, Sec. 1, App. C.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from pyrovae.errors import ConfigError
from pyrovae.models.cvae import SigmaCVAE
from pyrovae.models.noise import ObservationNoise
from pyrovae.validation import finite_matrix

__all__ = [
    "ScalarDecoder",
    "CholeskyDecoder",
    "TiedNoise",
    "LinearEncoder",
    "CubeRootEncoder",
    "cube_root",
    "linear_vae",
    "posterior_matching_gap",
    "vae_objective_gap",
    "scalar_mutual_information",
    "cholesky_mutual_information",
    "cholesky_posterior",
]


def _check_sigma_eps(sigma_eps: float) -> float:
    sigma_eps = float(sigma_eps)
    if not (math.isfinite(sigma_eps) and sigma_eps > 0):
        raise ConfigError(f"sigma_eps must be positive, got {sigma_eps}")
    return sigma_eps


def _logit(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p) - torch.log1p(-p)


class ScalarDecoder(nn.Module):
    r""":math:`x = \theta z`, noise variance :math:`\sigma_\varepsilon^2 - \theta^2` (App. C.1).

    :math:`\theta = \sigma_\varepsilon \tanh(u)` keeps :math:`|\theta| < \sigma_\varepsilon`; ``learn=False`` freezes it.
    """

    def __init__(self, theta: float, sigma_eps: float, learn: bool = True, dtype: torch.dtype = torch.float64):
        super().__init__()
        self.sigma_eps = _check_sigma_eps(sigma_eps)
        theta = float(theta)
        if not abs(theta) < self.sigma_eps:
            raise ConfigError(f"need |theta| < sigma_eps, got theta={theta}, sigma_eps={self.sigma_eps}")
        raw = torch.tensor(math.atanh(theta / self.sigma_eps), dtype=dtype)
        if learn:
            self.raw_theta = nn.Parameter(raw)
        else:
            self.register_buffer("raw_theta", raw)

    @property
    def theta(self) -> torch.Tensor:
        return self.sigma_eps * torch.tanh(self.raw_theta)

    def weight(self) -> torch.Tensor:
        return self.theta.reshape(1, 1)

    def noise_var(self) -> torch.Tensor:
        return (self.sigma_eps**2 - self.theta**2).reshape(1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.theta


class CholeskyDecoder(nn.Module):
    r""":math:`x = \mathrm{Cholesky}(AA^\top + B) z`, noise covariance :math:`\sigma_\varepsilon^2 I - B` (App. C.2).

    Args:
        a: ``A``, ``(K, K)``.
        b_diag: the diagonal of ``B``, ``(K,)``, entries in :math:`[0, \sigma_\varepsilon^2)` (``(0, σ²)`` when learned).
        sigma_eps: :math:`\sigma_\varepsilon` (a standard deviation; the paper's :math:`\sigma_\varepsilon^2 = 0.01`
            is ``sigma_eps = 0.1``).
        learn: ``"A"`` (Case 1: LinearJTEx, Fig. 1C-F), ``"B"`` (Case 2: Fig. 1A-B) or ``"none"``.
        cube: apply :math:`(\cdot)^3` element-wise after the linear map (CubicJTEx, App. E).
    """

    def __init__(self, a, b_diag, sigma_eps: float, learn: str = "A", cube: bool = False,
                 dtype: torch.dtype = torch.float64):
        super().__init__()
        self.sigma_eps = _check_sigma_eps(sigma_eps)
        a = torch.as_tensor(a, dtype=dtype)
        b = torch.as_tensor(b_diag, dtype=dtype)
        k = a.shape[0] if a.dim() == 2 else -1
        if a.dim() != 2 or a.shape != (k, k) or b.shape != (k,):
            raise ConfigError(f"need A (K, K) and B's diagonal (K,), got {tuple(a.shape)} and {tuple(b.shape)}")
        s2 = self.sigma_eps**2
        if (b < 0).any() or (b >= s2).any():
            raise ConfigError("B's diagonal must lie in [0, sigma_eps^2)")
        if learn not in ("A", "B", "none"):
            raise ConfigError(f"learn must be 'A', 'B' or 'none', got {learn!r}")
        self.learn, self.cube, self.dim = learn, bool(cube), k
        if learn == "A":
            self.a = nn.Parameter(a.clone())
        else:
            self.register_buffer("a", a.clone())
        if learn == "B":
            if (b <= 0).any():
                raise ConfigError("a learned B needs its diagonal strictly inside (0, sigma_eps^2)")
            self.raw_b = nn.Parameter(_logit(b / s2))
        else:
            self.register_buffer("raw_b", b.clone())

    @property
    def b_diag(self) -> torch.Tensor:
        if self.learn == "B":
            return self.sigma_eps**2 * torch.sigmoid(self.raw_b)
        return self.raw_b

    def weight(self) -> torch.Tensor:
        """``Cholesky(AAᵀ + B)``, ``(K, K)``."""
        return torch.linalg.cholesky(self.a @ self.a.T + torch.diag(self.b_diag))

    def noise_var(self) -> torch.Tensor:
        return self.sigma_eps**2 - self.b_diag

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z @ self.weight().T
        return h.pow(3) if self.cube else h


class TiedNoise(ObservationNoise):
    """The decoder's own noise standard deviations, ``sqrt(noise_var())`` per output.

    Not a free parameter (``learned`` is False): it moves only with the decoder's θ, so the
    trainer's ``fixed`` algorithm, β-schedules and Lagging Inference all accept it.
    """

    reads_decoder = True

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self._decoder = [decoder]  # a list: not registered twice as a sub-module

    def scale(self, mean: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        return self._decoder[0].noise_var().sqrt().to(mean.dtype)

    @property
    def sigma(self) -> float:
        return float(self._decoder[0].noise_var().detach().sqrt().mean())


class LinearEncoder(nn.Module):
    """Linear mean-field Gaussian encoder (App. E: LinearJTEx and Gaussian): ``loc = W x + b``, ``log var = V x + c``."""

    def __init__(self, in_dim: int, latent_dim: int):
        super().__init__()
        self.loc = nn.Linear(in_dim, latent_dim)
        self.log_var = nn.Linear(in_dim, latent_dim)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.loc(inputs), torch.exp(0.5 * self.log_var(inputs))


_CBRT_DELTA = 1e-3


def cube_root(u: torch.Tensor) -> torch.Tensor:
    r"""Odd cube root :math:`\operatorname{sign}(u)\,[(|u| + \delta)^{1/3} - \delta^{1/3}]`, :math:`\delta = 10^{-3}`.

    Equal to :math:`\sqrt[3]{u}` up to :math:`\delta^{1/3} = 0.1` in absolute terms for large ``|u|``, but with
    a finite slope :math:`\tfrac13\delta^{-2/3} \approx 33` at 0 (the exact cube root's is infinite)."""
    return torch.sign(u) * ((u.abs() + _CBRT_DELTA).pow(1.0 / 3.0) - _CBRT_DELTA ** (1.0 / 3.0))


class CubeRootEncoder(nn.Module):
    r"""The CubicJTEx inference network of App. E: a hidden layer of 4 units, half sigmoid and half
    cube root (:func:`cube_root`), then 20 ReLU units, then mean-field Gaussian location and log-variance heads.

    The cube root undoes the decoder's element-wise cube, so the hidden layer sees inputs of order
    :math:`\sqrt[3]{x}` instead of ``x`` (CubicJTEx's second coordinate reaches ±200). With a plain ReLU
    network on the raw data the initial log-variance head reaches ~28, the sampled codes ~10⁶, their
    cube ~10¹⁸ and the float32 gradient overflows at the first step (the "Cholesky error" of the
    first Table-1 runs: the overflowing step turned ``A`` into NaN)."""

    def __init__(self, in_dim: int, latent_dim: int, hidden: int = 4, width: int = 20):
        super().__init__()
        if hidden < 2 or hidden % 2:
            raise ConfigError(f"hidden must be an even number >= 2, got {hidden}")
        self.first = nn.Linear(in_dim, hidden)
        self.second = nn.Linear(hidden, width)
        self.loc = nn.Linear(width, latent_dim)
        self.log_var = nn.Linear(width, latent_dim)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.first(inputs)
        half = u.shape[-1] // 2
        h = torch.cat([torch.sigmoid(u[..., :half]), cube_root(u[..., half:])], dim=-1)
        h = torch.relu(self.second(h))
        return self.loc(h), torch.exp(0.5 * self.log_var(h))


def linear_vae(decoder: nn.Module, encoder: nn.Module | None = None, widths: Sequence[int] = ()) -> SigmaCVAE:
    """An unconditional :class:`SigmaCVAE` around ``decoder`` with :class:`TiedNoise`.

    ``encoder`` defaults to a :class:`LinearEncoder` (``widths=()``) or a ReLU
    :class:`~pyrovae.models.nets.GaussianEncoder` with the given hidden widths.
    The model's dtype follows the decoder's (float64 by default; ``.float()`` it for the trainer,
    which works on float32 data sets). :meth:`~pyrovae.posterior.exact.LinearGaussian.from_decoder` works in float64 either way.
    """
    k = decoder.weight().shape[0]
    d = decoder.weight().shape[1]
    dtype = decoder.weight().dtype
    model = SigmaCVAE(0, k, d, encoder_widths=(2,), decoder_widths=(2,), activation="relu")
    if encoder is None:
        if widths:
            from pyrovae.models.nets import GaussianEncoder

            encoder = GaussianEncoder(k, list(widths), d, "relu")
        else:
            encoder = LinearEncoder(k, d)
    model.encoder = encoder
    model.decoder = decoder
    model.noise = TiedNoise(decoder)
    return model.to(dtype)


def _precision(weight: torch.Tensor, noise_var: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(weight.shape[1], dtype=weight.dtype, device=weight.device)
    return eye + weight.T @ (weight / noise_var[:, None])


def posterior_matching_gap(weight: torch.Tensor, noise_var: torch.Tensor) -> torch.Tensor:
    r""":math:`\min_\phi \mathbb{E}_x KL[q_\phi(z|x) \| p_\theta(z|x)]` over mean-field Gaussians (App. C.3).

    The posterior covariance :math:`\Lambda^{-1}` does not depend on ``x`` and the best mean-field
    fit keeps the mean with variances :math:`1/\Lambda_{ii}`, so the gap is
    :math:`\tfrac12[\sum_i \log\Lambda_{ii} - \log\det\Lambda]` for every ``x``. Differentiable.
    """
    lam = _precision(weight, noise_var)
    return 0.5 * (torch.diagonal(lam).log().sum() - torch.logdet(lam))


def vae_objective_gap(weight: torch.Tensor, noise_var: torch.Tensor, data_cov: torch.Tensor) -> torch.Tensor:
    r""":math:`L(\theta, \phi^*) = KL[p(x) \| p_\theta(x)] + \min_\phi \mathbb{E}_x KL[q_\phi \| p_\theta(z|x)]`
    for zero-mean Gaussian data with covariance ``data_cov``: the negative ELBO minus the data
    entropy, the quantity of Sec. 1 (``L(θ_GT, φ_GT) = 0.532``). Differentiable."""
    model_cov = weight @ weight.T + torch.diag(noise_var)
    k = data_cov.shape[0]
    chol = torch.linalg.cholesky(model_cov)
    kl = 0.5 * (torch.cholesky_solve(data_cov, chol).diagonal().sum() - k
                + 2 * chol.diagonal().log().sum() - torch.logdet(data_cov))
    return kl + posterior_matching_gap(weight, noise_var)


def scalar_mutual_information(theta: float, sigma_eps: float) -> float:
    r""":math:`I_\theta(X; Z) = \tfrac12\log\frac{\sigma_\varepsilon^2}{\sigma_\varepsilon^2 - \theta^2}` (Eq. 15, corrected)."""
    return 0.5 * math.log(sigma_eps**2 / (sigma_eps**2 - theta**2))


def _cholesky_parameters(a, b_diag, sigma_eps) -> tuple[torch.Tensor, torch.Tensor, float]:
    r"""``A`` (K, K), ``B``'s diagonal (K,) in :math:`[0, \sigma_\varepsilon^2)` and a positive
    :math:`\sigma_\varepsilon` as float64 tensors, or a :class:`~pyrovae.errors.ConfigError`: a full ``B``
    matrix would otherwise be read through ``torch.diag`` as its diagonal (and summed whole by Eq. 22)."""
    sigma_eps = _check_sigma_eps(sigma_eps)
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b_diag, dtype=torch.float64)
    if a.dim() != 2 or a.shape[0] != a.shape[1]:
        raise ConfigError(f"A must be a square (K, K) matrix, got shape {tuple(a.shape)}")
    if b.shape != (a.shape[0],):
        raise ConfigError(f"B is diagonal: pass its diagonal, shape ({a.shape[0]},), got shape {tuple(b.shape)}")
    if not (bool(torch.isfinite(a).all()) and bool(torch.isfinite(b).all())):
        raise ConfigError("A and B must be finite")
    if bool((b < 0).any()) or bool((b >= sigma_eps**2).any()):
        raise ConfigError(f"B's diagonal must lie in [0, sigma_eps^2) = [0, {sigma_eps**2:g}), got {b.tolist()}")
    return a, b, sigma_eps


def cholesky_mutual_information(a: torch.Tensor, b_diag: torch.Tensor, sigma_eps: float) -> torch.Tensor:
    r"""Eq. 22: :math:`\tfrac12[\log\det(AA^\top + \sigma_\varepsilon^2 I) - \sum_i \log(\sigma_\varepsilon^2 - B_{ii})]`
    (float64). ``b_diag`` is B's diagonal; a full matrix, a wrong shape or an entry outside
    :math:`[0, \sigma_\varepsilon^2)` raises :class:`~pyrovae.errors.ConfigError`."""
    a, b_diag, sigma_eps = _cholesky_parameters(a, b_diag, sigma_eps)
    eye = torch.eye(a.shape[0], dtype=a.dtype)
    return 0.5 * (torch.logdet(a @ a.T + sigma_eps**2 * eye) - torch.log(sigma_eps**2 - b_diag).sum())


def cholesky_posterior(a, b_diag, sigma_eps: float, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Eq. 23-24 written out literally: :math:`\Sigma_{z|x} = (I + L^\top (\sigma^2 I - B)^{-1} L)^{-1}`,
    :math:`\mu_{z|x} = \Sigma_{z|x} L^\top (\sigma^2 I - B)^{-1} x`, :math:`L = \mathrm{Cholesky}(AA^\top + B)`.
    Returns ``(mean (N, K), cov (K, K))``. Parameters are checked as in :func:`cholesky_mutual_information`;
    ``x`` must be a finite ``(N, K)`` matrix (:class:`~pyrovae.errors.DataError` otherwise)."""
    a, b_diag, sigma_eps = _cholesky_parameters(a, b_diag, sigma_eps)
    observed = finite_matrix("x", torch.as_tensor(observed, dtype=a.dtype), a.shape[0])
    chol = torch.linalg.cholesky(a @ a.T + torch.diag(b_diag))
    noise_inv = torch.diag(1.0 / (sigma_eps**2 - b_diag))
    cov = torch.linalg.inv(torch.eye(a.shape[0], dtype=a.dtype) + chol.T @ noise_inv @ chol)
    mean = (cov @ chol.T @ noise_inv @ observed.T).T
    return mean, cov
