r"""Likelihood Before Inference (LiBI; Yacoby, Pan & Doshi-Velez (2020), Sec. 2 and App. D).

Repeat ``R`` rounds:

1. **Generative model.** With amortised codes :math:`z_n = h(x_n; \varphi)`, minimise over θ and φ
   (Eq. 44)

   .. math::
      -\frac1N\sum_n \log p_\theta(x_n \mid h(x_n)) + \epsilon_{HZ} e^{HZ(\{h\})}
      + e^{\|\Sigma(\{h\}) - I\|^2 / \epsilon_\Sigma} + e^{\|\mu(\{h\})\|^2 / \epsilon_\mu},

   with HZ the differentiable Henze-Zirkler statistic (:func:`pyrovae.metrics.henze_zirkler`),
   :math:`\Sigma` the biased empirical covariance and :math:`\|\cdot\|` the Frobenius / Euclidean norm.
   :func:`libi_penalty` subtracts the constant :math:`\epsilon_{HZ} + 2` so that the penalties vanish at
   codes with zero mean, identity covariance and HZ = 0 (the same minimiser).
2. **Inference model.** With θ fixed, fit :math:`q_\phi` by the ELBO (Eq. 45-46).
3. **Re-initialise** ``h`` at the encoder mean :math:`\mu(x; \phi_t)` (``h`` has the encoder's
   architecture, so its weights are copied) and go back to 1.

The round whose θ gives the highest importance-sampled validation log-likelihood
(:func:`pyrovae.metrics.vae_log_likelihood`) is kept, with its φ ("return the best θ_t", App. D).

The model is any :class:`~pyrovae.models.cvae.SigmaCVAE` (``condition_dim = 0``) whose σ is not learned
(Yacoby, Pan & Doshi-Velez 2020 fixes the noise at the truth); the data are :class:`~pyrovae.data.base.Dataset`\ s.

References:
    Yacoby, Pan & Doshi-Velez (2020), Sec. 2, Eq. 7 and 44-46, App. D.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field

import pyro
import torch

from pyrovae.data.base import Dataset
from pyrovae.errors import ConfigError, TrainingDiverged
from pyrovae.inference.algorithms import PlainSVI
from pyrovae.inference.trainer import Trainer, TrainSettings
from pyrovae.metrics.likelihood import vae_log_likelihood
from pyrovae.metrics.normality import henze_zirkler
from pyrovae.optim import adam, minimise
from pyrovae.validation import integer_at_least

__all__ = ["LiBISettings", "LiBIResult", "libi_penalty", "code_log_likelihood", "LiBI"]


@dataclass
class LiBISettings:
    """``rounds`` = R; ``step1_steps`` / ``step2_steps`` full-batch Adam steps per round (lr 0.01, App. E);
    ``eps_hz``, ``eps_sigma``, ``eps_mu`` the penalty weights of Eq. 44; ``val_samples`` the importance
    samples of the validation log-likelihood used to pick the best round."""

    rounds: int = 1
    step1_steps: int = 2000
    step2_steps: int = 2000
    lr: float = 0.01
    eps_hz: float = 1.0
    eps_sigma: float = 0.5
    eps_mu: float = 0.5
    val_samples: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("rounds", "step1_steps", "step2_steps", "val_samples"):
            v = getattr(self, name)
            integer_at_least(f"LiBI {name}", v)
        for name in ("lr", "eps_sigma", "eps_mu"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"LiBI {name} must be positive, got {v!r}")
        if not (math.isfinite(self.eps_hz) and self.eps_hz >= 0):
            raise ConfigError(f"LiBI eps_hz must be >= 0, got {self.eps_hz!r}")


@dataclass
class LiBIResult:
    model: object
    best_round: int
    val_log_lik: float
    history: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)


_EXP_CAP = 30.0


def _expm1_capped(t: torch.Tensor) -> torch.Tensor:
    """``expm1(t)`` up to ``t = 30``, continued linearly with the same slope beyond (no overflow
    from a badly initialised code network; the minimiser is unchanged).

    The linear part is ``e³⁰ · relu(t − 30)``, whose gradient is exactly 0 below the cap. (Writing it
    as ``e³⁰ · (t − clamp(t))`` gives the same values but, in float32, gradients ``e³⁰ − e³⁰ + eᵗ`` that
    round to 0: the penalties then never acted on the codes.)"""
    return torch.expm1(t.clamp(max=_EXP_CAP)) + math.exp(_EXP_CAP) * torch.relu(t - _EXP_CAP)


def libi_penalty(codes: torch.Tensor, eps_hz: float = 1.0, eps_sigma: float = 0.5, eps_mu: float = 0.5,
                 parts: bool = False):
    r"""The smooth penalties of Eq. 44 minus their floor :math:`\epsilon_{HZ} + 2`: differentiable in ``codes`` (n, d).

    With ``parts=True`` returns ``{"hz", "cov", "mean", "total"}`` (HZ statistic, :math:`\|\Sigma - I\|_F^2`,
    :math:`\|\mu\|^2` and the penalty)."""
    if codes.dim() != 2 or codes.shape[0] < 3:
        raise ConfigError(f"codes must be (n, d) with n >= 3, got {tuple(codes.shape)}")
    mu = codes.mean(0)
    centred = codes - mu
    cov = centred.T @ centred / codes.shape[0]
    eye = torch.eye(codes.shape[1], dtype=codes.dtype, device=codes.device)
    cov_err = (cov - eye).pow(2).sum()
    mean_err = mu.pow(2).sum()
    hz = henze_zirkler(codes) if eps_hz > 0 else torch.zeros((), dtype=codes.dtype)
    total = eps_hz * _expm1_capped(hz) + _expm1_capped(cov_err / eps_sigma) + _expm1_capped(mean_err / eps_mu)
    if parts:
        return {"hz": hz, "cov": cov_err, "mean": mean_err, "total": total}
    return total


def code_log_likelihood(model, observed: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    r""":math:`\frac1N\sum_n \log p_\theta(y_n \mid z_n)` under the model's Gaussian decoder and noise."""
    condition = observed.new_zeros(observed.shape[0], 0)
    mean, sigma = model.mean_and_scale(condition, codes)
    return torch.distributions.Normal(mean, sigma).log_prob(observed).sum(-1).mean()


class LiBI:
    """Run LiBI on ``model`` (a :class:`SigmaCVAE` with ``condition_dim = 0`` and a fixed or tied σ)."""

    def __init__(self, model, settings: LiBISettings | None = None):
        if getattr(model, "condition_dim", 0) != 0:
            raise ConfigError("LiBI is written for unconditional models (condition_dim = 0)")
        if getattr(model.noise, "learned", False):
            raise ConfigError("LiBI keeps the decoder noise at its given value; the model's σ is learned")
        self.model = model
        self.settings = settings or LiBISettings()
        self.code_net = copy.deepcopy(model.encoder)  # h(x; varphi): the inference model's architecture

    def _codes(self, observed: torch.Tensor) -> torch.Tensor:
        return self.code_net(observed)[0]

    def generative_parameters(self) -> list[torch.nn.Parameter]:
        """What step 1 moves: θ (every parameter of the model outside its encoder that requires a
        gradient) and the code network h, whose codes are its location alone (its log-variance head,
        kept so that step 3 copies the encoder whole, takes no part in Eq. 44)."""
        enc_ids = {id(p) for p in self.model.encoder.parameters()}
        theta = [p for p in self.model.parameters() if id(p) not in enc_ids and p.requires_grad]
        return theta + [p for name, p in self.code_net.named_parameters() if not name.startswith("log_var.")]

    def generative_loss(self, observed: torch.Tensor) -> torch.Tensor:
        """Step 1's objective (Eq. 44): the codes' negative log-likelihood plus the penalties."""
        s = self.settings
        codes = self._codes(observed)
        return -code_log_likelihood(self.model, observed, codes) + libi_penalty(codes, s.eps_hz, s.eps_sigma, s.eps_mu)

    def step1(self, observed: torch.Tensor) -> dict:
        s, model = self.settings, self.model
        if minimise(lambda: self.generative_loss(observed), adam(self.generative_parameters(), s.lr),
                    s.step1_steps).status == "nan":
            raise TrainingDiverged("LiBI step 1 reached a non-finite loss")
        with torch.no_grad():
            codes = self._codes(observed)
            parts = libi_penalty(codes, s.eps_hz, s.eps_sigma, s.eps_mu, parts=True)
            return {"code_nll": float(-code_log_likelihood(model, observed, codes)),
                    **{f"penalty_{k}": float(v) for k, v in parts.items()}}

    def inference_trainer(self, observed: torch.Tensor) -> Trainer:
        """Step 2's engine: the ELBO (Eq. 45-46) on ``y``, the encoder alone trained (the decoder fixed)."""
        s = self.settings
        data = Dataset("libi-step2", observed.new_zeros(observed.shape[0], 0), observed)
        settings = TrainSettings(K=s.step2_steps, lr=s.lr, max_steps=s.step2_steps, tol=0.0, trainable=("encoder",),
                                 convergence="last-step", checkpoint_every=10**9)
        return Trainer(self.model, data, PlainSVI(), settings)

    def step2(self, observed: torch.Tensor) -> dict:
        """The inference network by the ELBO with the decoder fixed (the engine, encoder only)."""
        with pyro.validation_enabled(False):
            result = self.inference_trainer(observed).run()
        if result.status == "nan":
            raise TrainingDiverged("LiBI step 2 reached a non-finite loss")
        return {"neg_elbo": float(result.history["loss"].iloc[-1])}

    def step3(self) -> None:
        self.code_net.load_state_dict(self.model.encoder.state_dict())

    def fit(self, train: Dataset, validation: Dataset | None = None) -> LiBIResult:
        s = self.settings
        dtype = next(self.model.parameters()).dtype
        observed = train.observed.to(dtype)
        val = (validation or train).observed.to(dtype)
        torch.manual_seed(s.seed)
        best = (-math.inf, -1, None)
        history = []
        for r in range(s.rounds):
            row = {"round": r, **self.step1(observed), **self.step2(observed)}
            with torch.no_grad():
                ll = float(vae_log_likelihood(self.model, val.new_zeros(val.shape[0], 0), val,
                                              num_samples=s.val_samples, seed=s.seed + r).mean())
            row["val_log_lik"] = ll
            history.append(row)
            if ll > best[0] or best[2] is None:
                best = (ll, r, copy.deepcopy(self.model.state_dict()))
            self.step3()
        self.model.load_state_dict(best[2])
        return LiBIResult(self.model, best[1], best[0], history, asdict(s))
