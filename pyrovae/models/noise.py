r"""Observation models: how the decoder scale :math:`\sigma` is produced.

One model class, several noise choices. Each object maps the decoder mean to a
scale broadcastable against it and says whether an algorithm may set it.

* :class:`FixedNoise` — a constant, never changed (a fixed-σ CVAE, Appendix H of Liu & Wang (2025)).
* :class:`CalibratedNoise` — a buffer set from outside: the analytic update
  :math:`\sigma^2 = \mathbb{E}_D\mathbb{E}_q\|y-\mu\|^2/q` (Liu & Wang 2025 Eq. 10, Rybkin et al. 2021)
  and the calibration :math:`\sigma \leftarrow |1+\varphi|\sigma` (Eq. 15).
* :class:`LearnedNoise` — a positive scalar learned by gradient with θ and φ (LS-VAE).
* :class:`LearnedVectorNoise` — one positive σ per output dimension, learned, constant in z.
* :class:`NetworkNoise` — σ(x, z) per output from a small network of the decoder's input
  (Berger & Sebag's LV-VAE, Berger & Sebag (2020) Eq. 11).
* :class:`ScheduledNoise` — a σ fixed within each block and set per block from a recorded
  trajectory (Berger & Sebag 2020 App. A.2: an F-VAE replaying LS-VAE's σ); :func:`fstar_noise` builds
  the F*-VAE's :class:`FixedNoise` at a finished run's final σ.

``scale(mean, inputs=None)`` gets the decoder mean and the decoder's input ``[x, z]``
(what :meth:`SigmaCVAE.decoder_input` returns); only :class:`NetworkNoise` uses the input.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pyrovae.errors import ConfigError, DataError
from pyrovae.registry import Registry
from pyrovae.validation import integer_at_least

__all__ = [
    "ObservationNoise",
    "FixedNoise",
    "CalibratedNoise",
    "LearnedNoise",
    "LearnedVectorNoise",
    "NetworkNoise",
    "ScheduledNoise",
    "fstar_noise",
    "make_noise",
]


def _check_sigma(sigma: float) -> float:
    sigma = float(sigma)
    if not math.isfinite(sigma) or sigma <= 0:
        raise ConfigError(f"sigma must be a positive number, got {sigma}")
    return sigma


class ObservationNoise(nn.Module):
    """Base class. ``settable`` says whether an algorithm may overwrite σ."""

    settable = False
    learned = False

    def scale(self, mean: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder σ, broadcastable against ``mean``; ``inputs`` is the decoder's input."""
        raise NotImplementedError

    def forward(self, mean: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`scale` without side effects (what the batched replicates call under ``vmap``)."""
        return self.scale(mean, inputs)

    def remember(self, log_sigma: float) -> None:
        """Record the mean log σ of an evaluation, for :attr:`sigma` of a σ that varies (no-op here)."""

    @property
    def sigma(self) -> float:
        """A scalar summary of the scale, for histories and tables."""
        raise NotImplementedError


class FixedNoise(ObservationNoise):
    def __init__(self, sigma: float):
        super().__init__()
        self.register_buffer("value", torch.tensor(_check_sigma(sigma)))

    def scale(self, mean: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        return self.value

    @property
    def sigma(self) -> float:
        return float(self.value)


class CalibratedNoise(FixedNoise):
    """A scalar σ held as a buffer and set from outside by an algorithm."""

    settable = True

    def set_sigma(self, sigma: float | torch.Tensor) -> None:
        value = torch.as_tensor(sigma, dtype=self.value.dtype, device=self.value.device)
        if not torch.isfinite(value) or value <= 0:
            raise FloatingPointError(f"refusing to set sigma to {float(value)}")
        self.value.copy_(value)


class LearnedNoise(ObservationNoise):
    """A positive scalar σ = exp(log σ), learned jointly by gradient."""

    learned = True

    def __init__(self, sigma: float):
        super().__init__()
        self.log_sigma = nn.Parameter(torch.tensor(math.log(_check_sigma(sigma))))

    def scale(self, mean: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        return self.log_sigma.exp()

    @property
    def sigma(self) -> float:
        return float(self.log_sigma.detach().exp())


class LearnedVectorNoise(ObservationNoise):
    r"""One positive σ_j = exp(log σ_j) per output dimension, learned by gradient, constant in z.

    The decoder is :math:`N(\mu(x, z), \mathrm{diag}(\sigma_1^2, \dots, \sigma_q^2))`. The scalar
    summary :attr:`sigma` is the geometric mean :math:`(\prod_j \sigma_j)^{1/q}`, the σ whose
    :math:`q\log\sigma` equals the likelihood's :math:`\sum_j \log\sigma_j`.
    """

    learned = True

    def __init__(self, sigma: float, dim: int):
        super().__init__()
        dim = integer_at_least("the output dimension", dim)
        self.log_sigma = nn.Parameter(torch.full((dim,), math.log(_check_sigma(sigma))))

    def scale(self, mean: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        if mean.shape[-1] != self.log_sigma.shape[0]:
            raise ConfigError(f"this observation model has {self.log_sigma.shape[0]} outputs; the decoder mean has {mean.shape[-1]}")
        return self.log_sigma.exp()

    @property
    def sigma(self) -> float:
        return float(self.log_sigma.detach().mean().exp())

    @property
    def sigmas(self) -> torch.Tensor:
        """The per-output σ_j (detached)."""
        return self.log_sigma.detach().exp()


class NetworkNoise(ObservationNoise):
    r"""σ(x, z) per output dimension from a small network of the decoder's input (LV-VAE).

    Berger & Sebag's Eq. (11): :math:`-\log p_\theta(x|z) = \sum_i \frac{(x_i-\mu_i(z))^2}{2\sigma_i(z)^2}
    + \log\sigma_i(z)` (+ const). Here :math:`\sigma(u) = \sigma_{\min} + \exp(g(u))` with ``g`` an MLP
    of ``u = [x, z]`` (the tensor the decoder mean is computed from), whose last layer starts at zero
    weights and bias :math:`\log(\sigma_0 - \sigma_{\min})`: at initialisation σ ≡ σ₀ (like LS-VAE's
    σ = 1). The floor :math:`\sigma_{\min}` keeps the likelihood bounded.

    The paper's σ(z) is a second output head of the decoder network; a separate small network of
    the same input has the same expressive power for σ and needs no change to the decoder.
    :attr:`sigma` is the geometric mean of σ over the last batch it was evaluated on (σ₀ before).

    References:
        Berger & Sebag, "Variational Auto-Encoders: Not All Failures Are Equal" (Berger & Sebag 2020), Eq. (11).
    """

    learned = True

    def __init__(self, in_dim: int, out_dim: int, sigma: float = 1.0, widths=(64, 64), activation: str = "tanh",
                 sigma_min: float = 1e-4):
        super().__init__()
        from pyrovae.models.nets import MLP  # nets imports nothing from here; local import keeps the module light

        sigma = _check_sigma(sigma)
        sigma_min = float(sigma_min)
        if not (math.isfinite(sigma_min) and 0 <= sigma_min < sigma):
            raise ConfigError(f"sigma_min must be in [0, sigma0 = {sigma}), got {sigma_min}")
        self.in_dim, self.out_dim = integer_at_least("in_dim", in_dim), integer_at_least("out_dim", out_dim)
        self.sigma_min = sigma_min
        self.net = MLP(self.in_dim, list(widths), self.out_dim, activation)
        last = self.net[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(math.log(sigma - sigma_min))
        self._log_summary = torch.tensor(math.log(sigma))

    def scale(self, mean: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        sigma = self.forward(mean, inputs)
        self.remember(sigma.detach().log().mean())
        return sigma

    def remember(self, log_sigma) -> None:
        self._log_summary = torch.as_tensor(log_sigma).detach()

    def forward(self, mean: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        if inputs is None:
            raise ConfigError("NetworkNoise computes sigma from the decoder's input: call scale(mean, inputs)")
        if inputs.shape[-1] != self.in_dim:
            raise ConfigError(f"NetworkNoise expects inputs with {self.in_dim} columns, got {inputs.shape[-1]}")
        if mean.shape[-1] != self.out_dim:
            raise ConfigError(f"NetworkNoise has {self.out_dim} outputs; the decoder mean has {mean.shape[-1]}")
        return self.net(inputs).exp() + self.sigma_min

    @property
    def sigma(self) -> float:
        return float(self._log_summary.exp())


class ScheduledNoise(CalibratedNoise):
    r"""A σ fixed during each block and read from a recorded per-block schedule (Berger & Sebag 2020, App. A.2).

    ``schedule[b]`` is σ during block b (``schedule[0]`` at construction); past its end the last
    value is kept. :class:`~pyrovae.inference.algorithms.ReplaySigma` moves it on after every
    block. The schedule is a buffer, so checkpoints carry it. Build one from a finished run's
    history with :meth:`from_history`.
    """

    def __init__(self, schedule):
        values = torch.as_tensor(schedule, dtype=torch.get_default_dtype()).reshape(-1)
        if values.numel() < 1:
            raise ConfigError("a sigma schedule needs at least one value")
        if not bool(torch.isfinite(values).all()) or bool((values <= 0).any()):
            raise ConfigError("every sigma in a schedule must be finite and > 0")
        super().__init__(float(values[0]))
        self.register_buffer("schedule", values.clone())

    def __len__(self) -> int:
        return int(self.schedule.shape[0])

    def at_block(self, block: int) -> float:
        """Set σ to the schedule's value for ``block`` (the last value past its end); return it."""
        if int(block) < 0:
            raise ConfigError(f"block must be >= 0, got {block}")
        value = self.schedule[min(int(block), len(self) - 1)]
        self.value.copy_(value)
        return float(value)

    @classmethod
    def from_history(cls, history, sigma0: float = 1.0) -> "ScheduledNoise":
        r"""The schedule that replays a run's σ: ``[σ₀, σ after block 0, σ after block 1, …]``.

        ``history`` is a trainer history (a DataFrame or mapping with a ``sigma`` column, one row per
        block) or a sequence of per-block σ. Replayed by :class:`ReplaySigma`, block b trains with the
        recorded run's σ at the start of its block b, and the replay's own history shows the same σ
        column as the recording.
        """
        sigmas = history["sigma"] if _has_column(history, "sigma") else history
        return cls([_check_sigma(sigma0)] + [float(s) for s in sigmas])


def _has_column(obj, name: str) -> bool:
    """True for a table (DataFrame, dict) with a column ``name``; False for sequences and other objects."""
    keys = getattr(obj, "columns", None)
    if keys is None and isinstance(obj, dict):
        keys = obj.keys()
    return keys is not None and name in keys


def fstar_noise(source) -> FixedNoise:
    r"""F*-VAE's observation model: :class:`FixedNoise` at a finished LS-VAE run's final σ (Berger & Sebag 2020, §4.1).

    ``source`` is a number, a trained model or observation model (its ``sigma``), a training
    result (``metrics["sigma"]``) or a history table (the last row's ``sigma``); for a run directory
    pass :func:`pyrovae.runs.final_sigma` of it (models read no files).
    """
    if isinstance(source, (int, float)) and not isinstance(source, bool):
        return FixedNoise(source)
    if isinstance(source, torch.Tensor) and source.numel() == 1:
        return FixedNoise(float(source))
    metrics = getattr(source, "metrics", None)
    if isinstance(metrics, dict) and "sigma" in metrics:
        return FixedNoise(metrics["sigma"])
    if _has_column(source, "sigma"):
        sigmas = list(source["sigma"])
        if not sigmas:
            raise DataError("the history is empty: no final sigma to fix")
        return FixedNoise(float(sigmas[-1]))
    if hasattr(source, "sigma"):
        return FixedNoise(source.sigma)
    raise ConfigError(f"cannot read a final sigma from {type(source).__name__}")


#: the observation models by name (``--noise``)
NOISES: Registry[type[ObservationNoise]] = Registry("observation model")
for _name, _cls in (("fixed", FixedNoise), ("calibrated", CalibratedNoise), ("learned", LearnedNoise),
                    ("learned-vector", LearnedVectorNoise), ("network", NetworkNoise)):
    NOISES.register(_name)(_cls)


def make_noise(kind: str, sigma0: float, *, observed_dim: int | None = None, in_dim: int | None = None) -> ObservationNoise:
    """The observation model ``kind`` starting at ``sigma0``; the per-output kinds need ``observed_dim``
    (and ``network`` the decoder's input width ``in_dim``)."""
    cls = NOISES[kind]
    if kind == "learned-vector":
        if observed_dim is None:
            raise ConfigError("observation model 'learned-vector' needs observed_dim")
        return cls(sigma0, observed_dim)
    if kind == "network":
        if observed_dim is None or in_dim is None:
            raise ConfigError("observation model 'network' needs observed_dim and in_dim")
        return cls(in_dim, observed_dim, sigma0)
    return cls(sigma0)
