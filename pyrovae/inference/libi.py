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
:func:`fit_libi` runs several fits (restarts, data-set versions) as one batched program, each replicate
as it would run alone; :meth:`LiBI.fit` is its one-replicate case.

References:
    Yacoby, Pan & Doshi-Velez (2020), Sec. 2, Eq. 7 and 44-46, App. D.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Sequence

import pyro
import torch

from pyrovae.data.base import Dataset
from pyrovae.errors import ConfigError, TrainingDiverged
from pyrovae.inference.algorithms import PlainSVI
from pyrovae.inference.engine import ReplicateEngine
from pyrovae.inference.replicates import ReplicatedCVAE
from pyrovae.inference.trainer import Trainer, TrainSettings
from pyrovae.metrics.likelihood import vae_log_likelihood
from pyrovae.metrics.normality import henze_zirkler
from pyrovae.validation import integer_at_least

__all__ = ["LiBISettings", "LiBIResult", "libi_penalty", "code_log_likelihood", "LiBI", "fit_libi", "CodeFit",
           "inference_trainer"]


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
    best_round: int  # -1: no round finished (the fit diverged in its first)
    val_log_lik: float
    history: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    status: str = "done"  # done | nan (a loss turned non-finite in round len(history); the model is its best round's)


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
    r"""The smooth penalties of Eq. 44 minus their floor :math:`\epsilon_{HZ} + 2`: differentiable in ``codes``
    ``(n, d)``, or one penalty per replicate for ``(R, n, d)``.

    With ``parts=True`` returns ``{"hz", "cov", "mean", "total"}`` (HZ statistic, :math:`\|\Sigma - I\|_F^2`,
    :math:`\|\mu\|^2` and the penalty)."""
    if codes.dim() not in (2, 3) or codes.shape[-2] < 3:
        raise ConfigError(f"codes must be (n, d) or (R, n, d) with n >= 3, got {tuple(codes.shape)}")
    mu = codes.mean(-2)
    centred = codes - mu.unsqueeze(-2)
    cov = centred.mT @ centred / codes.shape[-2]
    eye = torch.eye(codes.shape[-1], dtype=codes.dtype, device=codes.device)
    cov_err = (cov - eye).pow(2).sum((-2, -1))
    mean_err = mu.pow(2).sum(-1)
    hz = henze_zirkler(codes) if eps_hz > 0 else torch.zeros(codes.shape[:-2], dtype=codes.dtype, device=codes.device)
    total = eps_hz * _expm1_capped(hz) + _expm1_capped(cov_err / eps_sigma) + _expm1_capped(mean_err / eps_mu)
    if parts:
        return {"hz": hz, "cov": cov_err, "mean": mean_err, "total": total}
    return total


def code_log_likelihood(model, observed: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    r""":math:`\frac1N\sum_n \log p_\theta(y_n \mid z_n)` under the model's Gaussian decoder and noise (a
    :class:`SigmaCVAE`, or a :class:`~pyrovae.inference.replicates.ReplicatedCVAE` with ``(R, n, ·)``
    ``observed`` and ``codes``: one value per replicate)."""
    condition = observed.new_zeros(observed.shape[:-1] + (0,))
    mean, sigma = model.mean_and_scale(condition, codes)
    return torch.distributions.Normal(mean, sigma).log_prob(observed).sum(-1).mean(-1)


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

    def fit(self, train: Dataset, validation: Dataset | None = None) -> LiBIResult:
        """Run the ``rounds`` of LiBI and keep the best (the one-replicate case of :func:`fit_libi`); a loss that
        turns non-finite raises :class:`~pyrovae.errors.TrainingDiverged` (the model keeps its best round's
        weights, or its last finite ones when no round finished)."""
        result = fit_libi([self], [train], None if validation is None else [validation])[0]
        if result.status == "nan":
            raise TrainingDiverged(f"LiBI reached a non-finite loss in round {len(result.history)}")
        return result


def _inference_settings(s: LiBISettings) -> TrainSettings:
    return TrainSettings(K=s.step2_steps, lr=s.lr, max_steps=s.step2_steps, tol=0.0, trainable=("encoder",),
                         convergence="last-step", checkpoint_every=10**9)


def fit_libi(libis: Sequence[LiBI], trains: Sequence[Dataset],
             validations: Sequence[Dataset] | None = None) -> list[LiBIResult]:
    """Run ``R`` LiBI fits (one architecture, one :class:`LiBISettings` up to its ``seed``, training sets
    of one size) as one batched program: step 1 trains the replicates' stacked θ and h on their own Eq. 44
    losses (:class:`CodeFit`, on the training engine: Adam is element-wise, so each replicate takes its own
    steps), step 2 trains their encoders as replicates of one :class:`~pyrovae.inference.trainer.Trainer`,
    and each replicate keeps its own best round. Replicate ``r`` computes, up to float rounding, what it
    computes alone: its step-2 streams are seeded from its own ``seed`` (round ``k``: the ``k``-th draw of a
    generator seeded ``seed``), its validation draws by ``seed + k``. A replicate whose step-1 or step-2 loss
    turns non-finite leaves the batch with status ``nan`` and its best round so far (the engine's NaN
    policy); the others go on."""
    libis = list(libis)
    if not libis or len(trains) != len(libis) or (validations is not None and len(validations) != len(libis)):
        raise ConfigError(f"{len(libis)} LiBI fits need as many training (and validation) sets")
    s = libis[0].settings
    if any(replace(lib.settings, seed=0) != replace(s, seed=0) for lib in libis):
        raise ConfigError("a batch of LiBI fits shares one LiBISettings apart from the seed")
    if len({len(t) for t in trains}) > 1:
        raise ConfigError("a batch of LiBI fits needs training sets of one size")
    dtype = next(libis[0].model.parameters()).dtype
    observed = torch.stack([t.observed.to(dtype) for t in trains])
    vals = [(v if v is not None else t).observed.to(dtype)
            for v, t in zip(validations or [None] * len(libis), trains)]
    round_seeds = []
    for lib in libis:
        g = torch.Generator().manual_seed(int(lib.settings.seed))
        round_seeds.append([int(torch.randint(0, 2**62, (), generator=g)) for _ in range(s.rounds)])
    best: list[tuple[float, int, dict | None]] = [(-math.inf, -1, None)] * len(libis)
    histories: list[list[dict]] = [[] for _ in libis]
    alive = list(range(len(libis)))
    for k in range(s.rounds):
        if not alive:
            break
        step1 = CodeFit([libis[r] for r in alive], observed[alive]).run()
        alive, step1 = [r for r, rows in zip(alive, step1) if rows is not None], [rows for rows in step1 if rows is not None]
        step2 = _inference_step([libis[r] for r in alive], observed[alive], [round_seeds[r][k] for r in alive])
        for r, rows, loss in zip(alive, step1, step2):
            if loss is None:
                continue
            lib = libis[r]
            with torch.no_grad():
                ll = float(vae_log_likelihood(lib.model, vals[r].new_zeros(vals[r].shape[0], 0), vals[r],
                                              num_samples=s.val_samples, seed=lib.settings.seed + k).mean())
            histories[r].append({"round": k, **rows, "neg_elbo": loss, "val_log_lik": ll})
            if ll > best[r][0] or best[r][2] is None:
                best[r] = (ll, k, copy.deepcopy(lib.model.state_dict()))
            lib.code_net.load_state_dict(lib.model.encoder.state_dict())  # step 3
        alive = [r for r, loss in zip(alive, step2) if loss is not None]
    results = []
    for r, (lib, (ll, k, state), history) in enumerate(zip(libis, best, histories)):
        if state is not None:
            lib.model.load_state_dict(state)
        results.append(LiBIResult(lib.model, k, ll, history, asdict(lib.settings), "done" if r in alive else "nan"))
    return results


def _with_encoder(model, code_net):
    """A copy of ``model`` whose encoder *is* ``code_net`` (the same module): stacked like the models, so
    that step 1 runs every replicate's h as one batched network, and written back into ``code_net``."""
    shadow = copy.deepcopy(model)
    shadow.encoder = code_net
    return shadow


class CodeFit(ReplicateEngine):
    """LiBI's step 1 (Eq. 44) for ``R`` fits on the training engine: each fit's model with its code network h as
    the encoder (:func:`_with_encoder`), stacked; the engine's Adam moves θ (every parameter outside the encoder
    that requires a gradient) and h (the code network's location, not its log-variance head) on each replicate's
    own loss, for ``step1_steps`` steps as one block. :meth:`run` writes each finished replicate's θ into its
    model and h into its code network and returns its code NLL and penalties; a replicate whose loss or gradient
    turns non-finite is left as it was before step 1 and returns ``None``."""

    def __init__(self, libis: Sequence[LiBI], observed: torch.Tensor):
        self.libis, self.observed = list(libis), observed
        self.settings = self.libis[0].settings
        self.shadows = [_with_encoder(lib.model, lib.code_net) for lib in self.libis]
        super().__init__(self.shadows, [0] * len(self.libis), observed.device, lr=self.settings.lr,
                         checkpoint_every=10**9)  # step 1 draws nothing: streams seeded 0
        self.start()

    def _stack(self, models, streams) -> ReplicatedCVAE:
        return ReplicatedCVAE.stack(models, streams)

    def _trainable(self, stack: ReplicatedCVAE) -> list[torch.nn.Parameter]:
        return [p for name, p in stack.stacked("param").items()
                if p.requires_grad and not name.startswith("encoder.log_var.")]

    def _capped(self) -> bool:
        return self.state.step >= self.settings.step1_steps

    def _progress_units(self) -> tuple[int, int]:
        return self.state.step, self.settings.step1_steps

    def _terms(self, stack: ReplicatedCVAE, observed: torch.Tensor):
        """The code NLL ``(R,)`` and the penalties' parts of ``stack`` on ``observed`` ``(R, n, D)``."""
        s = self.settings
        codes = stack.encode(observed.new_zeros(observed.shape[:-1] + (0,)), observed)[0]
        return -code_log_likelihood(stack, observed, codes), libi_penalty(codes, s.eps_hz, s.eps_sigma, s.eps_mu,
                                                                           parts=True)

    def _block(self, start: float) -> None:
        observed = self.observed[self.active]

        def losses() -> torch.Tensor:
            nll, parts = self._terms(self.stack, observed)
            return nll + parts["total"]

        for _ in range(self.settings.step1_steps):
            self.state.step += 1
            if not bool(torch.isfinite(self.step(losses)).any()):
                break
        self.state.block += 1
        with torch.no_grad():  # each replicate's code NLL and penalties after step 1, on the stack it trained in
            nll, parts = self._terms(self.stack, observed)
        for i, r in enumerate(self.active):
            if bool(self._diverged[i]):
                self._finish(i, "nan")  # its model and h stay as they were before step 1
                continue
            self.stack.write_to(i, self.shadows[r])  # h: the shadow's encoder is the code network itself
            theta = {k: v for k, v in self.shadows[r].state_dict().items() if not k.startswith("encoder.")}
            self.libis[r].model.load_state_dict(theta, strict=False)
            self.replicas[r].metrics = {"code_nll": float(nll[i]),
                                        **{f"penalty_{key}": float(v[i]) for key, v in parts.items()}}

    def _result(self, r: int, resumed: bool) -> dict | None:
        return None if self.replicas[r].status == "nan" else self.replicas[r].metrics


def inference_trainer(libis: Sequence[LiBI], observed: torch.Tensor, seeds: Sequence[int]) -> Trainer:
    """Step 2's engine for ``R`` fits: the ELBO (Eq. 45-46) on each replicate's ``observed[r]`` (``(R, n, D)``),
    the encoders alone trained (the decoders fixed), replicate ``r`` drawing from a stream seeded ``seeds[r]``."""
    condition = observed.new_zeros(observed.shape[1], 0)
    datas = [Dataset("libi-step2", condition, y) for y in observed]
    return Trainer([lib.model for lib in libis], datas, [PlainSVI() for _ in libis],
                   _inference_settings(libis[0].settings), seeds=list(seeds))


def _inference_step(libis: list[LiBI], observed: torch.Tensor, seeds: list[int]) -> list[float | None]:
    """Step 2 for every replicate at once; each replicate's final loss, ``None`` where it diverged."""
    if not libis:
        return []
    with pyro.validation_enabled(False):
        results = inference_trainer(libis, observed, seeds).run()
    return [None if result.status == "nan" else float(result.history["loss"].iloc[-1]) for result in results]
