r"""Observation models: how the decoder scale :math:`\sigma` is produced.

One model class, several noise choices. Each object maps the decoder mean to a
scale broadcastable against it and says whether an algorithm may set it.

* :class:`FixedNoise` — a constant, never changed (a fixed-σ CVAE, Appendix H of Liu & Wang (2025)).
* :class:`CalibratedNoise` — a buffer set from outside: the analytic update
  :math:`\sigma^2 = \mathbb{E}_D\mathbb{E}_q\|y-\mu\|^2/q` (Liu & Wang 2025 Eq. 10, Rybkin et al. 2021)
  and the calibration :math:`\sigma \leftarrow |1+\varphi|\sigma` (Eq. 15).
* :class:`LearnedNoise` — a positive scalar learned by gradient with θ and φ (LS-VAE).
* :class:`LearnedVectorNoise` — one positive σ per output dimension, learned, constant in z.
* :class:`HeadNoise` — σ(x, z) per output from a second output layer of the decoder, on the
  decoder's last hidden features (Berger & Sebag's LV-VAE as the paper builds it, Berger & Sebag (2020) Eq. 11).
* :class:`NetworkNoise` — σ(x, z) per output from a separate small network of the decoder's input
  (an LV-VAE whose σ shares nothing with the mean).
* :class:`ScheduledNoise` — a σ fixed within each block and set per block from a recorded
  trajectory (Berger & Sebag 2020 App. A.2: an F-VAE replaying LS-VAE's σ); :func:`fstar_noise` builds
  the F*-VAE's :class:`FixedNoise` at a finished run's final σ.

``scale(mean, inputs=None)`` gets the decoder mean and what the observation model reads at that
point, :meth:`SigmaCVAE.noise_input`: the decoder's input ``[x, z]`` (only :class:`NetworkNoise` uses
it), or, for an observation model with ``reads_features`` (:class:`HeadNoise`), the decoder's last
hidden features.
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
    "HeadNoise",
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
    """Base class. ``settable`` says whether an algorithm may overwrite σ; ``learned`` whether σ moves
    by gradient; ``per_point`` whether σ varies with the point (x, z); ``reads_features`` whether
    ``inputs`` must be the decoder's last hidden features instead of its input; ``reads_decoder``
    whether σ is computed from the decoder's own weights (then R replicates' σ cannot be computed
    apart from their decoders: :mod:`pyrovae.inference.replicates` calls the whole model)."""

    settable = False
    learned = False
    per_point = False
    reads_features = False
    reads_decoder = False

    def scale(self, mean: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder σ, broadcastable against ``mean``; ``inputs`` is what
        :meth:`~pyrovae.models.cvae.SigmaCVAE.noise_input` gives at the same point."""
        raise NotImplementedError

    def forward(self, mean: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`scale` without side effects (what the batched replicates call under ``vmap``)."""
        return self.scale(mean, inputs)

    def stacked_scale(self, state: dict[str, torch.Tensor], mean: torch.Tensor) -> torch.Tensor | None:
        """σ of R replicates of this observation model at once, ``(R,)`` or ``(R, q)``, from ``state``: their
        parameters and buffers by name, each with a leading replicate dimension. Where σ is a function of
        that state alone this is one tensor operation (the batched replicates' fast path); None where it is
        not, and the batch calls the module (its ``forward``) per replicate. A subclass that overrides
        :meth:`scale` or :meth:`forward` and not this method gets None (:meth:`_fast_path_for`), so its own σ
        is what trains."""
        return None

    def _fast_path_for(self, owner: type) -> bool:
        """Whether ``owner``'s :meth:`stacked_scale` computes this module's σ: its :meth:`scale` and
        :meth:`forward` are still ``owner``'s."""
        return type(self).scale is owner.scale and type(self).forward is owner.forward

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

    def stacked_scale(self, state: dict[str, torch.Tensor], mean: torch.Tensor) -> torch.Tensor | None:
        return state["value"] if self._fast_path_for(FixedNoise) else None

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

    def stacked_scale(self, state: dict[str, torch.Tensor], mean: torch.Tensor) -> torch.Tensor | None:
        return state["log_sigma"].exp() if self._fast_path_for(LearnedNoise) else None

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
        return self._sigmas(self.log_sigma, mean)

    def stacked_scale(self, state: dict[str, torch.Tensor], mean: torch.Tensor) -> torch.Tensor | None:
        return self._sigmas(state["log_sigma"], mean) if self._fast_path_for(LearnedVectorNoise) else None

    @staticmethod
    def _sigmas(log_sigma: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        if mean.shape[-1] != log_sigma.shape[-1]:
            raise ConfigError(f"this observation model has {log_sigma.shape[-1]} outputs; the decoder mean has "
                              f"{mean.shape[-1]}")
        return log_sigma.exp()

    @property
    def sigma(self) -> float:
        return float(self.log_sigma.detach().mean().exp())

    @property
    def sigmas(self) -> torch.Tensor:
        """The per-output σ_j (detached)."""
        return self.log_sigma.detach().exp()


class _PointwiseNoise(ObservationNoise):
    r"""σ per output and per point, :math:`\sigma = \sigma_{\min} + \exp(g)` with ``g`` the output of a
    linear layer that starts at zero weights and bias :math:`\log(\sigma_0 - \sigma_{\min})`: at
    initialisation σ ≡ σ₀ (like LS-VAE's σ = 1). The floor :math:`\sigma_{\min}` keeps the likelihood
    bounded. :attr:`sigma` is the geometric mean of σ over the last batch it was evaluated on (σ₀ before).
    Subclasses say what ``g`` reads."""

    learned = True
    per_point = True

    def __init__(self, out_dim: int, sigma: float, sigma_min: float):
        super().__init__()
        sigma = _check_sigma(sigma)
        sigma_min = float(sigma_min)
        if not (math.isfinite(sigma_min) and 0 <= sigma_min < sigma):
            raise ConfigError(f"sigma_min must be in [0, sigma0 = {sigma}), got {sigma_min}")
        self.out_dim = integer_at_least("out_dim", out_dim)
        self.sigma0, self.sigma_min = sigma, sigma_min
        self._log_summary = torch.tensor(math.log(sigma))

    def _start_at_sigma0(self, last: nn.Linear) -> None:
        """Zero weights and bias log(σ₀ − σ_min) on ``last``: σ ≡ σ₀ whatever it reads."""
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(math.log(self.sigma0 - self.sigma_min))

    def _check(self, mean: torch.Tensor, inputs: torch.Tensor | None, in_dim: int, what: str) -> None:
        name = type(self).__name__
        if inputs is None:
            raise ConfigError(f"{name} computes sigma from {what}: call scale(mean, model.noise_input(x, z))")
        if inputs.shape[-1] != in_dim:
            raise ConfigError(f"{name} reads {what} with {in_dim} columns, got {inputs.shape[-1]}")
        if mean.shape[-1] != self.out_dim:
            raise ConfigError(f"{name} has {self.out_dim} outputs; the decoder mean has {mean.shape[-1]}")

    def scale(self, mean: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        sigma = self.forward(mean, inputs)
        self.remember(sigma.detach().log().mean())
        return sigma

    def remember(self, log_sigma) -> None:
        self._log_summary = torch.as_tensor(log_sigma).detach()

    @property
    def sigma(self) -> float:
        return float(self._log_summary.exp())


class HeadNoise(_PointwiseNoise):
    r"""σ(x, z) per output as a second output head of the decoder (Berger & Sebag's LV-VAE).

    Berger & Sebag's §3.3, Eq. (11): :math:`-\log p_\theta(x|z) = \sum_i \frac{(x_i-\mu_i(z))^2}{2\sigma_i(z)^2}
    + \log\sigma_i(z)` (+ const), "with σ a D-dimensional vector computed by the decoder akin μ"; their
    App. B: the LV-VAE's decoder has "twice as much output channels", a pair (μ, log σ) per output.
    Here the decoder's last hidden features ``h`` (shared: the trunk of the decoder) feed both its mean
    layer and this layer, :math:`\sigma = \sigma_{\min} + \exp(W h + b)`, so the σ term of the loss
    trains the trunk too. ``reads_features``: the model hands :meth:`scale` ``h``, not ``[x, z]``
    (:meth:`~pyrovae.models.cvae.SigmaCVAE.noise_input`); the decoder must be a sequence of layers
    ending in its linear mean layer (an :class:`~pyrovae.models.nets.MLP` or
    :class:`~pyrovae.models.nets.ResMLP`), whose input width is ``features_dim``.

    References:
        Berger & Sebag, "Variational Auto-Encoders: Not All Failures Are Equal" (Berger & Sebag 2020), Eq. (11),
        §4.1 ("as an output of the decoder network"), App. B.
    """

    reads_features = True

    def __init__(self, features_dim: int, out_dim: int, sigma: float = 1.0, sigma_min: float = 1e-4):
        super().__init__(out_dim, sigma, sigma_min)
        self.features_dim = integer_at_least("features_dim", features_dim)
        self.head = nn.Linear(self.features_dim, self.out_dim)
        self._start_at_sigma0(self.head)

    def forward(self, mean: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        self._check(mean, inputs, self.features_dim, "the decoder's last hidden features")
        return self.head(inputs).exp() + self.sigma_min


class NetworkNoise(_PointwiseNoise):
    r"""σ(x, z) per output from a separate small network of the decoder's input (an LV-VAE variant).

    The likelihood is Berger & Sebag's Eq. (11) as for :class:`HeadNoise`, but
    :math:`\sigma(u) = \sigma_{\min} + \exp(g(u))` with ``g`` an MLP of ``u = [x, z]`` (the tensor the
    decoder mean is computed from) that shares no weight with the decoder. It is kept for the runs
    saved with it (``--noise network``) and as the contrast to the paper's head: the same input, the
    same likelihood, but the σ term of the loss cannot move the mean's features.

    References:
        Berger & Sebag, "Variational Auto-Encoders: Not All Failures Are Equal" (Berger & Sebag 2020), Eq. (11).
    """

    def __init__(self, in_dim: int, out_dim: int, sigma: float = 1.0, widths=(64, 64), activation: str = "tanh",
                 sigma_min: float = 1e-4):
        super().__init__(out_dim, sigma, sigma_min)
        from pyrovae.models.nets import MLP  # nets imports nothing from here; local import keeps the module light

        self.in_dim = integer_at_least("in_dim", in_dim)
        self.net = MLP(self.in_dim, list(widths), self.out_dim, activation)
        self._start_at_sigma0(self.net[-1])

    def forward(self, mean: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        self._check(mean, inputs, self.in_dim, "the decoder's input")
        return self.net(inputs).exp() + self.sigma_min


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
                    ("learned-vector", LearnedVectorNoise), ("head", HeadNoise), ("network", NetworkNoise)):
    NOISES.register(_name)(_cls)


def make_noise(kind: str, sigma0: float, *, observed_dim: int | None = None, in_dim: int | None = None,
               features_dim: int | None = None) -> ObservationNoise:
    """The observation model ``kind`` starting at ``sigma0``; the per-output kinds need ``observed_dim``
    (``network`` also the decoder's input width ``in_dim``, ``head`` the width ``features_dim`` of the
    decoder's last hidden layer)."""
    cls = NOISES[kind]
    if kind == "learned-vector":
        if observed_dim is None:
            raise ConfigError("observation model 'learned-vector' needs observed_dim")
        return cls(sigma0, observed_dim)
    if kind == "head":
        if observed_dim is None or features_dim is None:
            raise ConfigError("observation model 'head' needs observed_dim and features_dim")
        return cls(features_dim, observed_dim, sigma0)
    if kind == "network":
        if observed_dim is None or in_dim is None:
            raise ConfigError("observation model 'network' needs observed_dim and in_dim")
        return cls(in_dim, observed_dim, sigma0)
    return cls(sigma0)
