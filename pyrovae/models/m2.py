r"""The semi-supervised "M2" VAE of Kingma et al. (2014) as a Pyro program (Yacoby, Pan & Doshi-Velez 2021, Sec. 3, App. B).

Generative model (Yacoby, Pan & Doshi-Velez 2021, Eq. 4 / 10):

.. math::
    z \sim N(0, I_d), \qquad y \sim p(y), \qquad x \mid z, y \sim N(f_\theta(z, y), \sigma_\epsilon^2 I),

with the guide :math:`q_\phi(y \mid x)\, q_\phi(z \mid x, y)`. Three kinds of label ``y``:

* ``"discrete"`` — :math:`y \in \{0..K-1\}`, :math:`p(y)` categorical; in unlabelled points the guide
  marks ``y`` for parallel enumeration, so :class:`pyro.infer.TraceEnum_ELBO` sums over it
  exactly: :math:`\mathcal U(x) = \sum_y q(y|x)\,[\log p(x|z_y,y) + \log p(y) + \log p(z_y)
  - \log q(z_y|x,y) - \log q(y|x)]` with one :math:`z_y \sim q(z|x,y)` per value (Eq. 13).
* ``"relaxed"`` — the same networks, ``y`` drawn from a relaxed one-hot (Concrete / Gumbel-softmax)
  :math:`q(y|x)` at ``temperature`` (2.2 in App. D), reparameterised. The site's log density is,
  by default (``relaxed_density="onehot"``), the categorical one evaluated at the soft one-hot,
  :math:`\sum_k y_k \log \pi_k`, in model (prior π) and guide (π = q(·|x)); as the temperature
  falls the draws become one-hot and the objective tends to the enumerated one.
  ``relaxed_density="concrete"`` uses the Concrete densities of both sides instead (a relaxed KL
  that does not converge to the categorical one). ``straight_through=True`` (Jang et al.'s
  straight-through Gumbel-softmax, :class:`pyro.distributions.RelaxedOneHotCategoricalStraightThrough`)
  hands the networks the *hard* one-hot of each draw — the decoder is then trained on the labels it is
  evaluated with — while gradients flow through the relaxed draw; the densities stay those
  ``relaxed_density`` names (Concrete: at the relaxed draw; one-hot: at the hard one, the categorical
  log-probability of the drawn class).
* ``"continuous"`` — :math:`y \in \mathbb R^q`, :math:`p(y) = N(0, I)` and a Gaussian
  :math:`q(y|x)` (App. H.2).

Two guides for the **unlabelled** points (``z_guide``):

* ``"factorised"`` (default; Yacoby, Pan & Doshi-Velez (2021), Eq. 13 and 15 as printed): :math:`q(y|x)\,q(z|x)` — the
  code ``z`` of an unlabelled point does not depend on ``y``, so :math:`q(z|x)` is one Gaussian
  even though the true :math:`p(z|x) = \sum_y p(z, y|x)` has one mode per branch. This mean-field
  family is what makes functional collapse a better ELBO optimum (Sec. 7). Labelled points use
  :math:`q(z|x, y)` (Eq. 12), a separate network.
* ``"conditional"`` (Kingma et al.'s M2): :math:`q(y|x)\,q(z|x, y)`, one network for both kinds
  of point. With ``y`` enumerated this is a mixture of ``K`` Gaussians over ``z``, expressive
  enough to fit the bimodal posterior (the "sufficiently expressive" family of Sec. 7).

The objective (Eq. 5) :math:`J = \sum_n \mathcal U(x_n) + \gamma \sum_m \mathcal L(x_m, y_m) +
\alpha \sum_m \log q(y_m|x_m)` is assembled from two calls of the same program: the unlabelled
batch (``y=None``) and the labelled batch (``y`` given, ``gamma``, ``alpha``). γ is a
``poutine.scale`` around every site of the labelled call, in model and guide. **The α term is an
extra observed site ``y_aux`` in the model**, :math:`y_m \sim q_\phi(y | x_m)`, under
``poutine.scale(alpha)`` and outside the γ scale. A model site's log density enters the ELBO with
a plus sign and has no guide partner, so this adds exactly :math:`+\alpha \log q(y_m|x_m)` under
every estimator (``Trace_ELBO``, ``TraceEnum_ELBO``, the IWAE bound below, where it sits outside
the log-sum-exp); a factor in the *guide* would need the opposite sign and Pyro's ELBOs treat
observed guide sites differently from one another. This is how Pyro's own SS-VAE example adds
its auxiliary classification loss.

The IWAE objective (Eq. 14-15) is :meth:`M2.iwae_bound`, a differentiable torch function:
Pyro's ``RenyiELBO`` refuses enumerated sites, so for discrete ``y`` the sum over ``y`` is written
out. Per particle :math:`s`, :math:`\hat p_s(x) = \sum_y p(x, z_{s,y}, y) / q(z_{s,y}|x,y)` with
:math:`z_{s,y} \sim q(z|x,y)` (conditional guide; factorised: one :math:`z_s \sim q(z|x)` for every
:math:`y`, :math:`\hat p_s(x) = \sum_y p(x, z_s, y) / q(z_s|x)`) is an unbiased estimate of :math:`p(x)` (Eq. 15 with the expectation
over :math:`y \sim q(y|x)` taken exactly — :math:`q(y|x)` cancels from the weights), and
:math:`\mathcal U_{IW} = \log \frac1S \sum_s \hat p_s(x)`. Consequence worth knowing: in the IWAE
objective with discrete ``y``, :math:`q(y|x)` is trained only by the α term.

References:
    Kingma, Rezende, Mohamed & Welling, *Semi-supervised Learning with Deep Generative Models*, 2014.
    Yacoby, Pan & Doshi-Velez (2021), Sec. 3, 7; App. B (Eq. 10-15), D.
    Maddison et al. / Jang et al., 2016 (the Concrete / Gumbel-softmax relaxation).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from typing import Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from torch import nn

from pyrovae.errors import ConfigError, DataError
from pyrovae.models.nets import MLP, GaussianEncoder, register_trainable

__all__ = ["M2", "Y_KINDS", "Z_GUIDES", "OneHotDensityRelaxed", "OneHotDensityStraightThrough", "m2_elbo_loss"]

_INSTANCES = itertools.count()

Y_KINDS = ("discrete", "relaxed", "continuous")
Z_GUIDES = ("factorised", "conditional")


def _scaled(scale: float):
    if scale == 1.0:
        return contextlib.nullcontext()
    if scale == 0.0:  # poutine.scale refuses 0
        return poutine.mask(mask=False)
    return poutine.scale(scale=scale)


class OneHotDensityRelaxed(dist.RelaxedOneHotCategorical):
    r"""Relaxed one-hot categorical whose ``log_prob(y)`` is :math:`\sum_k y_k \log \pi_k`.

    Sampling is the Concrete distribution's (reparameterised); the density is the categorical
    log-probability extended linearly to the simplex, exact at one-hot values. Used by the
    ``"relaxed"`` M2 so that its objective tends to the enumerated one as the temperature falls.
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return (value * torch.log_softmax(self.logits, -1)).sum(-1)


class OneHotDensityStraightThrough(dist.RelaxedOneHotCategoricalStraightThrough):
    r"""Straight-through relaxed one-hot categorical whose ``log_prob(y)`` is :math:`\sum_k y_k \log \pi_k` at
    the hard one-hot draw (the categorical log-probability of the drawn class)."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return (value * torch.log_softmax(self.logits, -1)).sum(-1)


def m2_elbo_loss(model: "M2", observed: torch.Tensor, y: torch.Tensor | None = None, gamma: float = 1.0,
                 alpha: float = 0.0, particles: int = 1) -> torch.Tensor:
    """Minus one batch's share of Eq. 5 with ELBO bounds, differentiable in ``model``'s parameters:
    ``-Σ U(x)`` for ``y=None``, ``-(γ Σ L(x, y) + α Σ log q(y|x))`` otherwise. Unlabelled discrete
    batches go through ``TraceEnum_ELBO`` (exact sum over ``y``), everything else through
    ``Trace_ELBO`` (nothing to enumerate there)."""
    enum = model.y_kind == "discrete" and y is None
    key = (enum, int(particles))
    elbo = _ELBO_CACHE.get(key)
    if elbo is None:
        if int(particles) != particles or particles < 1:
            raise ConfigError(f"the number of particles must be a positive integer, got {particles}")
        common = dict(num_particles=int(particles), vectorize_particles=particles > 1, max_plate_nesting=1)
        elbo = _ELBO_CACHE[key] = (pyro.infer.TraceEnum_ELBO if enum else pyro.infer.Trace_ELBO)(**common)
    return elbo.differentiable_loss(model.model, model.guide, observed, y, gamma, alpha)


_ELBO_CACHE: dict[tuple[bool, int], pyro.infer.ELBO] = {}


class M2(nn.Module):
    r"""Kingma et al.'s M2 model with a fixed observation noise :math:`\sigma_\epsilon`.

    Args:
        observed_dim: dimension of the data ``x`` (Kingma et al.'s symbol for what M2 models).
        y_kind: ``"discrete"``, ``"relaxed"`` or ``"continuous"`` (module docstring).
        num_classes: ``K`` for discrete / relaxed labels.
        label_dim: label dimension for continuous labels.
        latent_dim: ``d``.
        widths: hidden widths of every network (App. D: three layers of 50, leaky ReLU).
        sigma: the fixed observation standard deviation :math:`\sigma_\epsilon` (App. D fixes it to
            the truth's; 0.1 for the semi-circles).
        prior_probs: :math:`p(y)` for discrete labels (uniform by default).
        temperature: of the relaxed variant (2.2 as App. D).
        relaxed_density: ``"onehot"`` or ``"concrete"`` (module docstring).
        straight_through: relaxed draws as hard one-hots with relaxed gradients (module docstring).
        z_guide: ``"factorised"`` (paper, Eq. 13: :math:`q(z|x)` for unlabelled points) or
            ``"conditional"`` (Kingma et al.: :math:`q(z|x, y)` everywhere); module docstring.
    """

    def __init__(
        self,
        observed_dim: int,
        y_kind: str = "discrete",
        num_classes: int = 2,
        label_dim: int = 1,
        latent_dim: int = 1,
        widths: Sequence[int] = (50, 50, 50),
        sigma: float = 0.1,
        prior_probs: Sequence[float] | None = None,
        temperature: float = 2.2,
        relaxed_density: str = "onehot",
        activation: str = "leaky_relu",
        z_guide: str = "factorised",
        straight_through: bool = False,
    ):
        super().__init__()
        if y_kind not in Y_KINDS:
            raise ConfigError(f"unknown label kind {y_kind!r}; known: {', '.join(Y_KINDS)}")
        if observed_dim < 1 or latent_dim < 1 or num_classes < 2 or label_dim < 1:
            raise ConfigError(f"need observed_dim, latent_dim, label_dim >= 1 and num_classes >= 2; got "
                              f"{observed_dim}, {latent_dim}, {label_dim}, {num_classes}")
        if not sigma > 0 or not math.isfinite(sigma):
            raise ConfigError(f"sigma must be positive and finite, got {sigma}")
        if not temperature > 0:
            raise ConfigError(f"the temperature must be positive, got {temperature}")
        if z_guide not in Z_GUIDES:
            raise ConfigError(f"unknown z guide {z_guide!r}; known: {', '.join(Z_GUIDES)}")
        if relaxed_density not in ("onehot", "concrete"):
            raise ConfigError(f"relaxed_density must be 'onehot' or 'concrete', got {relaxed_density!r}")
        self.observed_dim, self.latent_dim, self.y_kind = int(observed_dim), int(latent_dim), y_kind
        self.num_classes = int(num_classes)
        self.label_dim = int(label_dim) if y_kind == "continuous" else self.num_classes  # width of the y input
        if not isinstance(straight_through, bool):
            raise ConfigError(f"straight_through must be True or False, got {straight_through!r}")
        self.temperature, self.relaxed_density = float(temperature), relaxed_density
        self.straight_through = straight_through
        self.z_guide = z_guide
        widths = list(widths)
        self.decoder = MLP(self.latent_dim + self.label_dim, widths, self.observed_dim, activation)
        self.z_encoder = GaussianEncoder(self.observed_dim + self.label_dim, widths, self.latent_dim, activation)
        if z_guide == "factorised":  # q(z | x) of the unlabelled points (Eq. 13)
            self.z_encoder_x = GaussianEncoder(self.observed_dim, widths, self.latent_dim, activation)
        if y_kind == "continuous":
            self.y_encoder: nn.Module = GaussianEncoder(self.observed_dim, widths, self.label_dim, activation)
        else:
            self.y_encoder = MLP(self.observed_dim, widths, self.num_classes, activation)
        self.register_buffer("sigma", torch.tensor(float(sigma)))
        self.pyro_name = f"m2_{next(_INSTANCES)}"  # its own name in Pyro's parameter store
        if prior_probs is None:
            probs = torch.full((self.num_classes,), 1.0 / self.num_classes)
        else:
            probs = torch.as_tensor(prior_probs, dtype=torch.get_default_dtype())
            if probs.shape != (self.num_classes,) or (probs <= 0).any() or abs(float(probs.sum()) - 1) > 1e-6:
                raise ConfigError(f"prior_probs must be {self.num_classes} positive numbers summing to 1")
        self.register_buffer("prior_probs", probs)

    # -- networks -----------------------------------------------------------------
    @property
    def discrete(self) -> bool:
        return self.y_kind != "continuous"

    def y_features(self, y: torch.Tensor) -> torch.Tensor:
        """What the networks read for ``y``: one-hot for class indices (long), the value itself
        for one-hots / relaxed draws / continuous labels."""
        if self.discrete and not torch.is_floating_point(y):
            return F.one_hot(y, self.num_classes).to(self.sigma.dtype)
        return y

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r""":math:`f_\theta(z, y)`; ``z`` (..., d) and ``y`` features broadcast against each other."""
        yf = self.y_features(y)
        shape = torch.broadcast_shapes(z.shape[:-1], yf.shape[:-1])
        return self.decoder(torch.cat([z.expand(shape + z.shape[-1:]), yf.expand(shape + yf.shape[-1:])], -1))

    def encode_z(self, observed: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Location and scale of ``q(z | x, y)``."""
        yf = self.y_features(y)
        shape = torch.broadcast_shapes(observed.shape[:-1], yf.shape[:-1])
        return self.z_encoder(torch.cat([observed.expand(shape + observed.shape[-1:]), yf.expand(shape + yf.shape[-1:])], -1))

    def encode_z_unlabelled(self, observed: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Location and scale of the unlabelled guide's ``z``: ``q(z | x)`` (factorised; ``y`` unused)
        or ``q(z | x, y)`` (conditional)."""
        if self.z_guide == "factorised":
            return self.z_encoder_x(observed)
        return self.encode_z(observed, y)

    def y_logits(self, observed: torch.Tensor) -> torch.Tensor:
        """Logits of ``q(y | x)`` (discrete kinds)."""
        return self.y_encoder(observed)

    def q_y(self, observed: torch.Tensor) -> dist.Distribution:
        """``q(y | x)`` as a distribution over class indices (discrete) or ``R^q`` (continuous)."""
        if self.discrete:
            return dist.Categorical(logits=self.y_logits(observed))
        loc, scale = self.y_encoder(observed)
        return dist.Normal(loc, scale).to_event(1)

    def p_y(self) -> dist.Distribution:
        if self.discrete:
            return dist.Categorical(probs=self.prior_probs)
        zero = self.sigma.new_zeros(self.label_dim)
        return dist.Normal(zero, torch.ones_like(zero)).to_event(1)

    def _check(self, observed: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor | None:
        if observed.dim() != 2 or observed.shape[-1] != self.observed_dim:
            raise DataError(f"the observed data must have shape (n, {self.observed_dim}), got {tuple(observed.shape)}")
        if y is None:
            return None
        if self.discrete:
            y = y.reshape(-1) if y.dim() == 2 and y.shape[-1] == 1 else y
            if y.shape != observed.shape[:1]:
                raise DataError(f"discrete labels must have shape (n,) or (n, 1), got {tuple(y.shape)}")
            if torch.is_floating_point(y):
                if not torch.equal(y, y.round()):
                    raise DataError("discrete labels must be integers")
                y = y.long()
            if (y < 0).any() or (y >= self.num_classes).any():
                raise DataError(f"discrete labels must lie in 0..{self.num_classes - 1}")
            return y
        y = y.reshape(-1, 1) if y.dim() == 1 else y
        if y.shape != (observed.shape[0], self.label_dim):
            raise DataError(f"continuous labels must have shape (n, {self.label_dim}), got {tuple(y.shape)}")
        return y

    def _relaxed(self, probs: torch.Tensor | None = None, logits: torch.Tensor | None = None) -> dist.Distribution:
        """The relaxed one-hot distribution of the ``"relaxed"`` variant at the model's temperature,
        with the log density ``relaxed_density`` names (module docstring)."""
        cls = {(False, "onehot"): OneHotDensityRelaxed, (False, "concrete"): dist.RelaxedOneHotCategorical,
               (True, "onehot"): OneHotDensityStraightThrough,
               (True, "concrete"): dist.RelaxedOneHotCategoricalStraightThrough}[(self.straight_through,
                                                                                   self.relaxed_density)]
        return cls(torch.tensor(self.temperature, dtype=self.sigma.dtype), probs=probs, logits=logits)

    # -- Pyro program -------------------------------------------------------------
    def _prior_site(self, labelled: bool):
        """The distribution of the model's ``y`` site."""
        if self.y_kind == "relaxed" and not labelled:
            return self._relaxed(probs=self.prior_probs)
        if self.y_kind == "relaxed":  # labelled relaxed points carry exact one-hots
            return dist.OneHotCategorical(probs=self.prior_probs)
        return self.p_y()

    def __setstate__(self, state: dict) -> None:
        """A copy (``copy.deepcopy``) is another model: it gets its own parameter-store name."""
        super().__setstate__(state)
        self.pyro_name = f"m2_{next(_INSTANCES)}"

    # model and guide register their networks with pyro.module, so that plain pyro.infer.SVI (with
    # TraceEnum_ELBO for a discrete y) finds them in the parameter store, each model under its own name
    def model(self, observed: torch.Tensor, y: torch.Tensor | None = None, gamma: float = 1.0, alpha: float = 0.0):
        register_trainable(f"{self.pyro_name}.decoder", self.decoder)
        register_trainable(f"{self.pyro_name}.y_encoder", self.y_encoder)  # the α term's q(y | x)
        y = self._check(observed, y)
        labelled = y is not None
        if self.y_kind == "relaxed" and labelled:
            y = F.one_hot(y, self.num_classes).to(observed.dtype)
        n = observed.shape[0]
        zero = observed.new_zeros(n, self.latent_dim)
        with pyro.plate("data", n, dim=-1):
            with _scaled(gamma if labelled else 1.0):
                z = pyro.sample("z", dist.Normal(zero, torch.ones_like(zero)).to_event(1))
                y_site = pyro.sample("y", self._prior_site(labelled).expand([n]), obs=y)
                loc = self.decode(z, y_site)
                pyro.sample("x", dist.Normal(loc, self.sigma).to_event(1), obs=observed)
            if labelled and alpha != 0.0:  # the discriminative term of Eq. 5 (module docstring)
                with _scaled(alpha):
                    q = self.q_y(observed)
                    if self.y_kind == "relaxed":
                        q = dist.OneHotCategorical(logits=self.y_logits(observed))
                    pyro.sample("y_aux", q, obs=y)

    def guide(self, observed: torch.Tensor, y: torch.Tensor | None = None, gamma: float = 1.0, alpha: float = 0.0):
        for part in ("z_encoder", "z_encoder_x", "y_encoder"):
            if hasattr(self, part):
                register_trainable(f"{self.pyro_name}.{part}", getattr(self, part))
        y = self._check(observed, y)
        labelled = y is not None
        if self.y_kind == "relaxed" and labelled:
            y = F.one_hot(y, self.num_classes).to(observed.dtype)
        with pyro.plate("data", observed.shape[0], dim=-1):
            with _scaled(gamma if labelled else 1.0):
                if not labelled:
                    if self.y_kind == "discrete":
                        y = pyro.sample("y", self.q_y(observed), infer={"enumerate": "parallel"})
                    elif self.y_kind == "relaxed":
                        y = pyro.sample("y", self._relaxed(logits=self.y_logits(observed)))
                    else:
                        y = pyro.sample("y", self.q_y(observed))
                    loc, scale = self.encode_z_unlabelled(observed, y)
                else:
                    loc, scale = self.encode_z(observed, y)
                pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    # -- IWAE (Eq. 14-15), written out ----------------------------------------------
    def log_joint_terms(self, observed: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(x|z,y) + \log p(y) + \log p(z)` for class indices / continuous ``y`` (broadcast)."""
        log_px = dist.Normal(self.decode(z, y), self.sigma).log_prob(observed).sum(-1)
        log_pz = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
        return log_px + self.p_y().log_prob(y) + log_pz

    def iwae_bound(self, observed: torch.Tensor, y: torch.Tensor | None = None, particles: int = 10) -> torch.Tensor:
        r"""Per-point IWAE bound with ``S = particles``: Eq. 14 (labelled) or Eq. 15 (unlabelled).

        Unlabelled, ``y`` is handled three ways. Discrete: each weight is replaced by its expectation
        over :math:`y_s \sim q(y|x)`, the exact sum :math:`\sum_y p(x, z_s, y) / q(z_s|x)` (tighter by
        Jensen, and free of :math:`q(y|x)`). Relaxed: Eq. 15 as printed, with :math:`y_s` drawn from the
        relaxed :math:`q(y|x)` at the model's temperature and the weight
        :math:`p(x|z_s,y_s)\,p(y_s)\,p(z_s) / (q(y_s|x)\,q(z_s|x))` under the relaxed densities of the
        ELBO (module docstring), so :math:`q(y|x)` is trained by the bound. Continuous: :math:`y_s`
        drawn from :math:`q(y|x)`. Differentiable; reparameterised draws."""
        if int(particles) != particles or particles < 1:
            raise ConfigError(f"the number of particles must be a positive integer, got {particles}")
        S = int(particles)
        y = self._check(observed, y)
        if y is not None:  # Eq. 14
            loc, scale = self.encode_z(observed, y)
            z = loc + scale * torch.randn((S,) + loc.shape, dtype=loc.dtype)
            log_w = self.log_joint_terms(observed, y, z) - dist.Normal(loc, scale).log_prob(z).sum(-1)
            return torch.logsumexp(log_w, 0) - math.log(S)
        if self.y_kind == "relaxed":  # Eq. 15 as printed, y_s from the relaxed q(y|x)
            q_y = self._relaxed(logits=self.y_logits(observed))
            yv = q_y.rsample((S,))  # (S, n, K)
            loc, scale = self.encode_z_unlabelled(observed, yv)
            z = loc + scale * torch.randn(yv.shape[:-1] + loc.shape[-1:], dtype=loc.dtype)  # (S, n, d)
            log_px = dist.Normal(self.decode(z, yv), self.sigma).log_prob(observed).sum(-1)
            log_pz = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
            log_py = self._relaxed(probs=self.prior_probs).log_prob(yv)
            log_w = log_px + log_pz + log_py - q_y.log_prob(yv) - dist.Normal(loc, scale).log_prob(z).sum(-1)
            return torch.logsumexp(log_w, 0) - math.log(S)
        if self.discrete:  # Eq. 15, the expectation over y taken exactly
            ys = torch.arange(self.num_classes).view(-1, 1)  # (K, 1) against (n,)
            if self.z_guide == "factorised":  # one z_s ~ q(z|x) shared by every y
                loc, scale = self.encode_z_unlabelled(observed, ys)  # (n, d)
                z = (loc + scale * torch.randn((S,) + loc.shape, dtype=loc.dtype)).unsqueeze(1)  # (S, 1, n, d)
                log_w = self.log_joint_terms(observed, ys, z) - dist.Normal(loc, scale).log_prob(z).sum(-1)  # (S, K, n)
                return torch.logsumexp(torch.logsumexp(log_w, 1), 0) - math.log(S)
            loc, scale = self.encode_z(observed, ys)  # (K, n, d)
            z = loc + scale * torch.randn((S,) + loc.shape, dtype=loc.dtype)  # (S, K, n, d)
            log_w = self.log_joint_terms(observed, ys, z) - dist.Normal(loc, scale).log_prob(z).sum(-1)  # (S, K, n)
            return torch.logsumexp(log_w.reshape(-1, observed.shape[0]), 0) - math.log(S)
        qy = self.q_y(observed)  # Eq. 15, continuous y
        yv = qy.rsample((S,))  # (S, n, q)
        loc, scale = self.encode_z_unlabelled(observed, yv)  # (S, n, d) or, factorised, (n, d)
        z = loc + scale * torch.randn(yv.shape[:-1] + loc.shape[-1:], dtype=loc.dtype)  # (S, n, d)
        log_w = self.log_joint_terms(observed, yv, z) - dist.Normal(loc, scale).log_prob(z).sum(-1) - qy.log_prob(yv)
        return torch.logsumexp(log_w, 0) - math.log(S)

    def iwae_loss(self, observed: torch.Tensor, y: torch.Tensor | None = None, gamma: float = 1.0, alpha: float = 0.0,
                  particles: int = 10) -> torch.Tensor:
        """Minus the batch's share of Eq. 5 with IWAE bounds: ``-Σ bound`` (unlabelled) or
        ``-(γ Σ bound + α Σ log q(y|x))`` (labelled)."""
        bound = self.iwae_bound(observed, y, particles).sum()
        if y is None:
            return -bound
        loss = -gamma * bound
        if alpha != 0.0:
            loss = loss - alpha * self.q_y(observed).log_prob(self._check(observed, y)).sum()
        return loss

    # -- inspection -----------------------------------------------------------------
    @torch.no_grad()
    def sample(self, num_samples: int, y: torch.Tensor | float | int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` draws from the model: ``y ~ p(y)``, or fixed to ``y`` (a class index or a value)
        for draws of ``p_θ(x | y)``."""
        if y is None:
            yv = self.p_y().sample((num_samples,))
        elif self.discrete:
            yv = torch.full((num_samples,), int(y), dtype=torch.long)
        else:
            yv = torch.as_tensor(y, dtype=self.sigma.dtype).expand(num_samples, self.label_dim).clone()
        z = torch.randn(num_samples, self.latent_dim, dtype=self.sigma.dtype)
        mean = self.decode(z, yv)
        return mean + self.sigma * torch.randn_like(mean), yv
