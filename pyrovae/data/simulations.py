r"""Simulated regressions M1, M2 and M3 of Liu & Wang (2025, Sec. 5.2, App. F), with their true moments.

Each generator returns a :class:`~pyrovae.data.base.Dataset` whose ``truth`` holds the
closed-form conditional mean and standard deviation of :math:`y \mid x` at every row
(``truth["mean"]``, ``truth["sd"]``, each ``(n, 1)``) and the function that computes them at
any inputs (``truth["moments"]``: ``x (m, p) -> (mean (m, 1), sd (m, 1))``).

Reading of the paper. Appendix F gives the response models, the predictor dimensions
(5, 5, 2) and the sizes (N = 5,000 training points, k = 2,000 test points) but not the
distribution of the predictors; we take :math:`x \sim N(0, I_p)`, as the authors' public
simulation code does (``rng.normal(size=(n, p))``) and as the WGCS paper (Liu et al. 2021),
from which the three models come, does.

* **M1** (additive Gaussian noise), :math:`p = 5`:
  :math:`y = x_1^2 + \exp(x_2 + x_3/3) + \sin(x_4 + x_5) + \varepsilon`, :math:`\varepsilon \sim N(0, 1)`;
  :math:`E[y|x]` is the signal and :math:`SD[y|x] = 1`.
* **M2** (multiplicative non-Gaussian noise), :math:`p = 5`:
  :math:`y = g(x)\exp(\varepsilon/2)` with :math:`g = 5 + x_1^2/3 + x_2^2 + x_3^2 + x_4 + x_5` and
  :math:`\varepsilon \sim \tfrac12 N(-2, 1) + \tfrac12 N(2, 1)` (the paper's text, ``m2``). By the
  mixture's moment generating function :math:`E[e^{t\varepsilon}] = e^{t^2/2}\cosh(2t)`,

  .. math::
      E[y|x] = g\,e^{1/8}\cosh 1, \qquad
      SD[y|x] = |g|\sqrt{e^{1/2}\cosh 2 - e^{1/4}\cosh^2 1}.

  The authors' public code draws :math:`\varepsilon \sim N(0, 2^2)` and multiplies by
  :math:`\exp(\varepsilon/4)` instead (``m2-code``, ``m2(noise="code")``): a log-normal factor with
  log-scale SD 1/2, so :math:`E[y|x] = g\,e^{1/8}` and :math:`SD[y|x] = |g|\,e^{1/8}\sqrt{e^{1/4} - 1}`.

* **M3** (two-component Gaussian mixture), :math:`p = 2`, :math:`m = 1 + x_1 + x_2/2`:
  :math:`y \sim N(-m, 0.5^2)` if :math:`U = 0`, :math:`N(m, 1)` if :math:`U = 1`,
  :math:`U \sim \mathrm{Bernoulli}(0.7)`; hence

  .. math::
      E[y|x] = 0.4\,m, \qquad SD[y|x] = \sqrt{0.775 + 0.84\,m^2}.

References:
    Liu & Wang, *Doubly Robust Conditional VAE via Decoder Calibration* (Liu & Wang 2025), Sec. 5.2, App. F.
    Liu, Zhou, Jiao & Huang, *Wasserstein generative learning of conditional distribution*, 2021.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from pyrovae.data.base import Dataset
from pyrovae.errors import DataError
from pyrovae.validation import integer_at_least

__all__ = ["m1", "m2", "m2_code", "m3", "m1_moments", "m2_moments", "m2_code_moments", "m3_moments", "SIMULATIONS",
           "M2_MEAN_FACTOR", "M2_SD_FACTOR", "M2_CODE_MEAN_FACTOR", "M2_CODE_SD_FACTOR"]

# E[exp(eps/2)] and SD[exp(eps/2)] for eps ~ 0.5 N(-2, 1) + 0.5 N(2, 1)
M2_MEAN_FACTOR = math.exp(1 / 8) * math.cosh(1.0)
M2_SD_FACTOR = math.sqrt(math.exp(1 / 2) * math.cosh(2.0) - math.exp(1 / 4) * math.cosh(1.0) ** 2)
# the same for exp(eps/4), eps ~ N(0, 2^2) (the authors' code): log-normal with log-scale SD 1/2
M2_CODE_MEAN_FACTOR = math.exp(1 / 8)
M2_CODE_SD_FACTOR = math.exp(1 / 8) * math.sqrt(math.exp(1 / 4) - 1)

Moments = tuple[torch.Tensor, torch.Tensor]


def _inputs(condition: torch.Tensor, p: int, name: str) -> torch.Tensor:
    condition = torch.as_tensor(condition)
    if condition.dim() != 2 or condition.shape[1] != p:
        raise DataError(f"{name} needs inputs of shape (n, {p}), got {tuple(condition.shape)}")
    return condition


def m1_moments(condition: torch.Tensor) -> Moments:
    """True :math:`E[y|x]` and :math:`SD[y|x]` of M1 at inputs ``x`` (n, 5); each (n, 1)."""
    condition = _inputs(condition, 5, "M1")
    mean = condition[:, 0] ** 2 + torch.exp(condition[:, 1] + condition[:, 2] / 3) + torch.sin(condition[:, 3] + condition[:, 4])
    return mean.unsqueeze(1), torch.ones_like(mean).unsqueeze(1)


def _m2_g(condition: torch.Tensor) -> torch.Tensor:
    return 5 + condition[:, 0] ** 2 / 3 + condition[:, 1] ** 2 + condition[:, 2] ** 2 + condition[:, 3] + condition[:, 4]


def m2_moments(condition: torch.Tensor) -> Moments:
    """True :math:`E[y|x]` and :math:`SD[y|x]` of M2 at inputs ``x`` (n, 5); each (n, 1)."""
    g = _m2_g(_inputs(condition, 5, "M2"))
    return (g * M2_MEAN_FACTOR).unsqueeze(1), (g.abs() * M2_SD_FACTOR).unsqueeze(1)


def m2_code_moments(condition: torch.Tensor) -> Moments:
    """True moments of M2 with the authors' code's noise, exp(ε/4), ε ~ N(0, 2²); each (n, 1)."""
    g = _m2_g(_inputs(condition, 5, "M2"))
    return (g * M2_CODE_MEAN_FACTOR).unsqueeze(1), (g.abs() * M2_CODE_SD_FACTOR).unsqueeze(1)


def m3_moments(condition: torch.Tensor) -> Moments:
    """True :math:`E[y|x]` and :math:`SD[y|x]` of M3 at inputs ``x`` (n, 2); each (n, 1)."""
    condition = _inputs(condition, 2, "M3")
    m = 1 + condition[:, 0] + 0.5 * condition[:, 1]
    return (0.4 * m).unsqueeze(1), torch.sqrt(0.775 + 0.84 * m**2).unsqueeze(1)


def _dataset(name: str, condition: torch.Tensor, observed: torch.Tensor, moments: Callable[[torch.Tensor], Moments],
             n: int, seed: int) -> Dataset:
    dtype = torch.get_default_dtype()
    mean, sd = moments(condition)
    return Dataset(
        name=name, condition=condition.to(dtype), observed=observed.unsqueeze(1).to(dtype),
        truth={"mean": mean.to(dtype), "sd": sd.to(dtype), "moments": moments},
        params={"n": n, "seed": int(seed)},
    )


def m1(n: int = 5000, seed: int = 0) -> Dataset:
    r"""M1: :math:`y = x_1^2 + e^{x_2 + x_3/3} + \sin(x_4 + x_5) + N(0, 1)`, :math:`x \sim N(0, I_5)`."""
    n = integer_at_least("M1's n", n, 2)
    g = torch.Generator().manual_seed(int(seed))
    condition = torch.randn(n, 5, generator=g, dtype=torch.float64)
    mean, _ = m1_moments(condition)
    observed = mean[:, 0] + torch.randn(n, generator=g, dtype=torch.float64)
    return _dataset("m1", condition, observed, m1_moments, n, seed)


def m2(n: int = 5000, seed: int = 0, noise: str = "text") -> Dataset:
    r"""M2: :math:`y = g(x)\, e^{\varepsilon/2}`, :math:`\varepsilon \sim \frac12 N(-2,1) + \frac12 N(2,1)`, :math:`x \sim N(0, I_5)`
    (``noise="text"``, the paper's App. F); ``noise="code"``: :math:`y = g(x)\, e^{\varepsilon/4}`,
    :math:`\varepsilon \sim N(0, 2^2)` (the authors' public code). The same ``x`` for either."""
    n = integer_at_least("M2's n", n, 2)
    if noise not in ("text", "code"):
        raise DataError(f"M2's noise must be 'text' or 'code', got {noise!r}")
    gen = torch.Generator().manual_seed(int(seed))
    condition = torch.randn(n, 5, generator=gen, dtype=torch.float64)
    if noise == "code":
        observed = _m2_g(condition) * torch.exp(2.0 * torch.randn(n, generator=gen, dtype=torch.float64) / 4)
        return _dataset("m2-code", condition, observed, m2_code_moments, n, seed)
    sign = torch.where(torch.rand(n, generator=gen, dtype=torch.float64) < 0.5, -1.0, 1.0)
    eps = 2.0 * sign + torch.randn(n, generator=gen, dtype=torch.float64)
    observed = _m2_g(condition) * torch.exp(0.5 * eps)
    return _dataset("m2", condition, observed, m2_moments, n, seed)


def m2_code(n: int = 5000, seed: int = 0) -> Dataset:
    """M2 with the authors' code's noise (``m2(noise="code")``)."""
    return m2(n, seed, noise="code")


def m3(n: int = 5000, seed: int = 0) -> Dataset:
    r"""M3: :math:`y \sim N(-m, 0.5^2)` w.p. 0.3, :math:`N(m, 1)` w.p. 0.7, :math:`m = 1 + x_1 + x_2/2`, :math:`x \sim N(0, I_2)`."""
    n = integer_at_least("M3's n", n, 2)
    gen = torch.Generator().manual_seed(int(seed))
    condition = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    m = 1 + condition[:, 0] + 0.5 * condition[:, 1]
    u = torch.rand(n, generator=gen, dtype=torch.float64) < 0.7
    noise = torch.randn(n, generator=gen, dtype=torch.float64)
    observed = torch.where(u, m + noise, -m + 0.5 * noise)
    return _dataset("m3", condition, observed, m3_moments, n, seed)


SIMULATIONS: dict[str, Callable[..., Dataset]] = {"m1": m1, "m2": m2, "m2-code": m2_code, "m3": m3}
