r"""Exact posteriors of a linear-Gaussian decoder, and its best mean-field Gaussian fit.

Model (Yacoby, Pan & Doshi-Velez 2020, App. C.1-C.2; the probabilistic PCA of Tipping & Bishop 1999):

.. math::
    z \sim N(0, I_d), \qquad y \mid z \sim N(W z + b, \Sigma_\varepsilon).

Then, with posterior precision :math:`\Lambda = I + W^\top \Sigma_\varepsilon^{-1} W`,

.. math::
    p(z \mid y) = N\big(\Lambda^{-1} W^\top \Sigma_\varepsilon^{-1} (y - b),\ \Lambda^{-1}\big),
    \qquad p(y) = N(y; b, W W^\top + \Sigma_\varepsilon),

which is Yacoby, Pan & Doshi-Velez (2020) Eq. 16 (one dimension) and Eq. 23-24 (with
:math:`W = \mathrm{Cholesky}(AA^\top + B)`, :math:`\Sigma_\varepsilon = \sigma_\varepsilon^2 I - B`).
The mean-field Gaussian closest in :math:`KL[q \| p]` keeps the mean and has variances
:math:`1 / \Lambda_{ii}` (Yacoby, Pan & Doshi-Velez 2020 App. C.3, Eq. 25-27), and the mutual information is
:math:`I(Y; Z) = \tfrac12 \log\det \Lambda` (Yacoby, Pan & Doshi-Velez 2020 Eq. 15 and 22).

References:
    Yacoby, Pan & Doshi-Velez (2020), *Characterizing and Avoiding Problematic Global Optima of
    Variational Autoencoders*, Appendix C.
"""

from __future__ import annotations

import math

import torch

from pyrovae.errors import ConfigError, DataError
from pyrovae.posterior.target import LatentTarget

__all__ = [
    "LinearGaussian",
    "pedagogical_case1",
    "pedagogical_case2",
    "gaussian_kl",
    "linearize",
]

_LOG_2PI = math.log(2.0 * math.pi)


class LinearGaussian:
    r"""The decoder :math:`y = W z + b + \varepsilon`, :math:`\varepsilon \sim N(0, \Sigma_\varepsilon)`, prior :math:`N(0, I)`.

    Args:
        weight: ``W`` of shape ``(q, d)``, or ``(N, q, d)`` for one map per data point.
        bias: ``b`` of shape ``(q,)`` or ``(N, q)``.
        noise_cov: :math:`\Sigma_\varepsilon` of shape ``(q, q)`` or ``(N, q, q)``, symmetric positive definite.

    Batch dimensions broadcast against those of ``y`` (``(N, q)``) in every method.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, noise_cov: torch.Tensor):
        weight, bias, noise_cov = (torch.as_tensor(t) for t in (weight, bias, noise_cov))
        dtype = torch.promote_types(torch.promote_types(weight.dtype, bias.dtype), noise_cov.dtype)
        if not dtype.is_floating_point:
            dtype = torch.get_default_dtype()
        self.weight, self.bias, self.noise_cov = (t.to(dtype) for t in (weight, bias, noise_cov))
        if self.weight.dim() < 2:
            raise ConfigError(f"weight must be (q, d) or (N, q, d), got shape {tuple(self.weight.shape)}")
        q, d = self.weight.shape[-2:]
        if self.bias.shape[-1:] != (q,) or self.noise_cov.shape[-2:] != (q, q):
            raise ConfigError(
                f"shapes disagree: weight {tuple(self.weight.shape)}, bias {tuple(self.bias.shape)}, "
                f"noise_cov {tuple(self.noise_cov.shape)}"
            )
        try:
            self._noise_chol = torch.linalg.cholesky(self.noise_cov)
        except RuntimeError:
            raise ConfigError("noise_cov must be symmetric positive definite") from None
        eye = torch.eye(q, dtype=dtype, device=self.weight.device)
        self._noise_chol_inv = torch.linalg.solve_triangular(self._noise_chol, eye, upper=False)
        self.obs_dim, self.latent_dim = int(q), int(d)

    @classmethod
    def from_scale(cls, weight: torch.Tensor, bias: torch.Tensor, noise_scale: float | torch.Tensor) -> "LinearGaussian":
        """Diagonal noise from standard deviations: a scalar, ``(q,)`` or ``(N, q)``."""
        weight = torch.as_tensor(weight)
        scale = torch.as_tensor(noise_scale, dtype=weight.dtype)
        if (scale <= 0).any():
            raise ConfigError("noise_scale must be positive")
        scale = scale.expand(scale.shape[:-1] + weight.shape[-2:-1]) if scale.dim() else scale.expand(weight.shape[-2])
        return cls(weight, bias, torch.diag_embed(scale.pow(2)))

    @classmethod
    def from_decoder(cls, decoder) -> "LinearGaussian":
        r"""The closed forms of a linear decoder with tied noise (Yacoby, Pan & Doshi-Velez 2020, App. C;
        :mod:`pyrovae.models.linear`): ``weight()`` is :math:`W` (``(q, d)``), ``noise_var()`` the
        diagonal of :math:`\Sigma_\varepsilon`; in float64, without gradient. The cubic decoder has none."""
        if getattr(decoder, "cube", False):
            raise ConfigError("the cubic decoder has no closed-form posterior")
        with torch.no_grad():
            w = decoder.weight().detach().double()
            return cls(w, torch.zeros(w.shape[0], dtype=w.dtype), torch.diag(decoder.noise_var().detach().double()))

    # -- posterior ---------------------------------------------------------------------
    def _whitened_weight(self) -> torch.Tensor:
        r""":math:`\Sigma_\varepsilon^{-1} W`, shape ``(..., q, d)``."""
        return torch.cholesky_solve(self.weight, self._noise_chol)

    def precision(self) -> torch.Tensor:
        r"""Posterior precision :math:`\Lambda = I + W^\top \Sigma_\varepsilon^{-1} W` (inverse of Eq. 24)."""
        eye = torch.eye(self.latent_dim, dtype=self.weight.dtype, device=self.weight.device)
        return eye + self.weight.mT @ self._whitened_weight()

    def _check_y(self, observed: torch.Tensor) -> torch.Tensor:
        observed = torch.as_tensor(observed, dtype=self.weight.dtype, device=self.weight.device)
        if observed.shape[-1:] != (self.obs_dim,):
            raise DataError(f"the observed data must have {self.obs_dim} columns, got shape {tuple(observed.shape)}")
        return observed

    def posterior(self, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Mean ``(N, d)`` and covariance ``(N, d, d)`` of :math:`p(z \mid y)` (Yacoby, Pan & Doshi-Velez 2020 Eq. 23-24)."""
        observed = self._check_y(observed)
        lam = self.precision()
        chol = torch.linalg.cholesky(lam)
        cov = torch.cholesky_inverse(chol)
        rhs = (self._whitened_weight().mT @ (observed - self.bias).unsqueeze(-1))  # (N, d, 1)
        mean = torch.cholesky_solve(rhs, chol).squeeze(-1)
        cov = cov.expand(mean.shape[:-1] + cov.shape[-2:])
        return mean, cov

    def mean_field(self, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Best mean-field Gaussian in :math:`KL[q \| p(z \mid y)]`: the posterior mean and
        variances :math:`1 / \Lambda_{ii}` (Yacoby, Pan & Doshi-Velez 2020 App. C.3, Eq. 27). Returns ``(mean, var)``, each ``(N, d)``."""
        mean, _ = self.posterior(observed)
        var = 1.0 / torch.diagonal(self.precision(), dim1=-2, dim2=-1)
        return mean, var.expand_as(mean)

    def marginal_cov(self) -> torch.Tensor:
        r""":math:`W W^\top + \Sigma_\varepsilon`, the covariance of :math:`p(y)`."""
        return self.weight @ self.weight.mT + self.noise_cov

    def log_marginal(self, observed: torch.Tensor) -> torch.Tensor:
        r"""Exact :math:`\log p(y) = \log N(y; b, W W^\top + \Sigma_\varepsilon)`, shape ``(N,)``."""
        observed = self._check_y(observed)
        chol = torch.linalg.cholesky(self.marginal_cov())
        r = observed - self.bias
        white = torch.linalg.solve_triangular(chol, r.unsqueeze(-1), upper=False).squeeze(-1)
        half_logdet = torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
        return -0.5 * white.pow(2).sum(-1) - half_logdet - 0.5 * self.obs_dim * _LOG_2PI

    def log_likelihood(self, z: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        r""":math:`\log N(y; W z + b, \Sigma_\varepsilon)` for ``z`` of shape ``(..., N, d)``; returns ``(..., N)``."""
        observed = self._check_y(observed)
        r = observed - self.bias - (self.weight @ z.unsqueeze(-1)).squeeze(-1)
        white = (self._noise_chol_inv @ r.unsqueeze(-1)).squeeze(-1)
        half_logdet = torch.diagonal(self._noise_chol, dim1=-2, dim2=-1).log().sum(-1)
        return -0.5 * white.pow(2).sum(-1) - half_logdet - 0.5 * self.obs_dim * _LOG_2PI

    def mutual_information(self) -> torch.Tensor:
        r""":math:`I(Y; Z) = \tfrac12 \log\det(I + W^\top\Sigma_\varepsilon^{-1}W)` (Yacoby, Pan & Doshi-Velez 2020 Eq. 15, 22)."""
        return torch.linalg.slogdet(self.precision())[1] * 0.5

    def sample(self, num: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``num`` draws ``(z, y)`` from the joint; ``z`` is ``(num, d)``, ``y`` is ``(num, q)``.
        Only for a shared (unbatched) weight."""
        if self.weight.dim() != 2:
            raise ConfigError("sampling the joint needs one shared weight (q, d)")
        z = torch.randn(num, self.latent_dim, generator=generator, dtype=self.weight.dtype, device=self.weight.device)
        eps = torch.randn(num, self.obs_dim, generator=generator, dtype=self.weight.dtype, device=self.weight.device)
        return z, z @ self.weight.T + self.bias + eps @ self._noise_chol.T

    def as_target(self, observed: torch.Tensor, points=None) -> LatentTarget:
        """The same decoder as a :class:`~pyrovae.posterior.target.LatentTarget` for the grid and the samplers."""
        observed = self._check_y(observed)
        if observed.dim() != 2:
            raise DataError(f"the observed data must be a matrix (N, q), got shape {tuple(observed.shape)}")
        return LatentTarget(
            log_lik=lambda z: self.log_likelihood(z, observed),
            latent_dim=self.latent_dim,
            num_points=observed.shape[0],
            decoder_mean=lambda z: (self.weight @ z.unsqueeze(-1)).squeeze(-1) + self.bias,
            observed=observed,
            points=points,
            dtype=observed.dtype,
            device=observed.device,
        )


def pedagogical_case1(theta: float, sigma_eps: float) -> LinearGaussian:
    r"""Yacoby, Pan & Doshi-Velez (2020) App. C.1 (Eq. 10-12): :math:`x = \theta z + \varepsilon`, :math:`\varepsilon \sim N(0, \sigma_\varepsilon^2 - \theta^2)`.

    :math:`p(x) = N(0, \sigma_\varepsilon^2)` for every :math:`\theta^2 < \sigma_\varepsilon^2`; the posterior is Eq. 16.
    """
    theta, sigma_eps = float(theta), float(sigma_eps)
    if not theta**2 < sigma_eps**2:
        raise ConfigError(f"need theta^2 < sigma_eps^2, got theta={theta}, sigma_eps={sigma_eps}")
    dtype = torch.float64
    return LinearGaussian(
        torch.tensor([[theta]], dtype=dtype), torch.zeros(1, dtype=dtype), torch.tensor([[sigma_eps**2 - theta**2]], dtype=dtype)
    )


def pedagogical_case2(a: torch.Tensor, b_diag: torch.Tensor, sigma_eps: float) -> LinearGaussian:
    r"""Yacoby, Pan & Doshi-Velez (2020) App. C.2 (Eq. 17-19): :math:`x = \mathrm{Cholesky}(AA^\top + B) z + \varepsilon`,
    :math:`\varepsilon \sim N(0, \sigma_\varepsilon^2 I - B)`, ``B = diag(b_diag)`` with entries in :math:`[0, \sigma_\varepsilon^2)`.

    ``a`` is square ``(K, K)`` so that the latent and data dimensions agree, as in the paper.
    """
    a = torch.as_tensor(a, dtype=torch.float64)
    b_diag = torch.as_tensor(b_diag, dtype=torch.float64)
    k = a.shape[0]
    if a.shape != (k, k) or b_diag.shape != (k,):
        raise ConfigError(f"need A (K, K) and B's diagonal (K,), got {tuple(a.shape)} and {tuple(b_diag.shape)}")
    s2 = float(sigma_eps) ** 2
    if (b_diag < 0).any() or (b_diag >= s2).any():
        raise ConfigError("B's diagonal must lie in [0, sigma_eps^2)")
    weight = torch.linalg.cholesky(a @ a.T + torch.diag(b_diag))
    return LinearGaussian(weight, torch.zeros(k, dtype=torch.float64), s2 * torch.eye(k, dtype=torch.float64) - torch.diag(b_diag))


def gaussian_kl(mean_q: torch.Tensor, cov_q: torch.Tensor, mean_p: torch.Tensor, cov_p: torch.Tensor) -> torch.Tensor:
    r""":math:`KL[N(\mu_q, \Sigma_q) \| N(\mu_p, \Sigma_p)]` for batches ``(..., d)`` / ``(..., d, d)`` (Yacoby, Pan & Doshi-Velez 2020 Eq. 25)."""
    d = mean_q.shape[-1]
    chol_p = torch.linalg.cholesky(cov_p)
    chol_q = torch.linalg.cholesky(cov_q)
    # tr(Σp^{-1} Σq) = ||Lp^{-1} Lq||_F^2
    m = torch.linalg.solve_triangular(chol_p, chol_q, upper=False)
    diff = torch.linalg.solve_triangular(chol_p, (mean_p - mean_q).unsqueeze(-1), upper=False).squeeze(-1)
    logdet_p = 2.0 * torch.diagonal(chol_p, dim1=-2, dim2=-1).log().sum(-1)
    logdet_q = 2.0 * torch.diagonal(chol_q, dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (m.pow(2).sum((-2, -1)) + diff.pow(2).sum(-1) - d + logdet_p - logdet_q)


def linearize(target: LatentTarget, rtol: float = 1e-4, probe_scale: float = 3.0, num_probes: int = 8, seed: int = 0) -> LinearGaussian:
    r"""The :class:`LinearGaussian` equal to ``target``'s decoder, or a :class:`~pyrovae.errors.ConfigError`.

    The decoder mean is probed at :math:`z = 0`, the unit vectors and ``num_probes`` random
    points of scale ``probe_scale``; it counts as linear when every probe agrees with the
    affine map through the first :math:`d + 1` points within ``rtol`` (relative to the size of
    the outputs), and the decoder scale must not depend on :math:`z`. A decoder with tanh
    hidden layers fails this; one with only linear layers (``decoder_widths=()`` or
    ``activation`` omitted) passes, and then the exact posterior is the true one.
    """
    if target.decoder_mean is None:
        raise ConfigError("the exact posterior needs a decoder mean (a Gaussian decoder model); use --method grid, nuts or hmc")
    n, d = target.num_points, target.latent_dim
    kw = dict(dtype=target.dtype, device=target.device)
    gen = torch.Generator(device=target.device).manual_seed(seed)
    with torch.no_grad():
        basis = torch.cat([torch.zeros(1, d, **kw), torch.eye(d, **kw)])  # (d+1, d)
        f = target.decoder_mean(basis[:, None, :].expand(d + 1, n, d))  # (d+1, N, q)
        bias = f[0]
        weight = (f[1:] - bias).permute(1, 2, 0)  # (N, q, d)
        probes = probe_scale * torch.randn(num_probes, n, d, generator=gen, **kw)
        got = target.decoder_mean(probes)
        want = bias + (weight @ probes.unsqueeze(-1)).squeeze(-1)
        size = 1.0 + got.abs().amax()
        err = float((got - want).abs().amax() / size)
        if not math.isfinite(err) or err > rtol:
            raise ConfigError(
                f"the decoder is not linear in z (relative error {err:.2e} > {rtol:.0e}); "
                "the exact posterior needs a linear-Gaussian decoder: use --method grid, nuts or hmc"
            )
        if target.decoder_scale is None:
            raise ConfigError("the exact posterior needs the decoder scale")
        scales = target.decoder_scale(torch.cat([basis[:, None, :].expand(d + 1, n, d), probes]))  # broadcastable to (P, N, q)
        scales = torch.as_tensor(scales, **kw).expand(f.shape[0] + num_probes, n, f.shape[-1])
        if float((scales - scales[:1]).abs().amax()) > rtol * float(scales.abs().amax()):
            raise ConfigError("the decoder scale depends on z; the exact posterior needs a constant noise scale")
    if (weight - weight[:1]).abs().amax() <= rtol * (1.0 + weight.abs().amax()):
        weight = weight[0]
    noise_cov = torch.diag_embed(scales[0].pow(2))  # (N, q, q)
    if (noise_cov - noise_cov[:1]).abs().amax() == 0:
        noise_cov = noise_cov[0]
    return LinearGaussian(weight, bias, noise_cov)
