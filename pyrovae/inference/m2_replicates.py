r"""R copies of one M2 model (Kingma et al. 2014; Yacoby, Pan & Doshi-Velez 2021, Eq. 5) trained as one batch.

The semi-supervised protocols of Yacoby, Pan & Doshi-Velez (2021), App. D, train many small M2 models:
5 + 5 restarts per method, an α × γ × S grid, several data-set versions. :class:`ReplicatedM2`
stacks R models of one architecture (weights with a leading replicate dimension,
:func:`torch.func.stack_module_state`; the package's plain networks run as one batched product per
layer, :mod:`pyrovae.models.stacked_nets`) and :func:`m2_replicate_loss` computes each replicate's
loss of Eq. 5 directly from the networks' outputs:

* **ELBO** — the loss of :func:`pyrovae.models.m2.m2_elbo_loss` (Pyro's ``TraceEnum_ELBO`` on
  :meth:`M2.model` / :meth:`M2.guide` for an unlabelled discrete ``y``, summed exactly over ``y``;
  ``Trace_ELBO`` otherwise), one particle, every label kind and both unlabelled guides;
* **IWAE** — the bounds of :meth:`pyrovae.models.m2.M2.iwae_bound` (Eq. 14-15).

Each replicate draws its noise (the guide's ε, the relaxed ``y``'s uniforms, mini-batch indices)
from its own generator (:class:`~pyrovae.inference.replicates.ReplicaStreams`), in the order and
shapes in which the Pyro program (ELBO) and :meth:`M2.iwae_bound` (IWAE) draw theirs from torch's
global generator. So one replicate seeded ``s`` computes what the Pyro program computes after
``torch.manual_seed(s)`` — the tests hold value and gradient equal — and a replicate's numbers do
not depend on the other replicates of the batch. γ and α may differ per replicate (grid cells).
"""

from __future__ import annotations

import math
from typing import Sequence

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions.relaxed_straight_through import QuantizeCategorical
from torch import nn
from torch.distributions.utils import clamp_probs

from pyrovae.errors import ConfigError
from pyrovae.inference.replicates import ReplicaStreams, StackedModels, latent_log_ratio, normal_log_prob
from pyrovae.models.m2 import M2
from pyrovae.models.stacked_nets import architecture, stacked_forward

__all__ = ["ReplicatedM2", "m2_replicate_loss"]

_NETWORKS = ("decoder", "z_encoder", "z_encoder_x", "y_encoder")


class ReplicatedM2(StackedModels):
    """``R`` M2 models of one architecture as stacked tensors (replicate first; :class:`StackedModels`), with
    their networks as batched functions; :meth:`write_to` copies replicate ``r`` back into an :class:`M2`."""

    def __init__(self, template: M2, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                 streams: ReplicaStreams):
        super().__init__(template, params, buffers, streams)
        self.y_kind, self.z_guide = template.y_kind, template.z_guide
        self.num_classes, self.latent_dim = template.num_classes, template.latent_dim
        self._forward = {part: stacked_forward(getattr(template, part), part + ".")
                         for part in _NETWORKS if hasattr(template, part)}

    @staticmethod
    def check_architecture(models: Sequence[M2]) -> None:
        first = models[0]
        settings = ("y_kind", "num_classes", "label_dim", "z_guide", "temperature", "relaxed_density", "straight_through")
        for m in models[1:]:
            if any(getattr(m, s) != getattr(first, s) for s in settings) or architecture(m) != architecture(first):
                raise ConfigError("M2 replicates trained as one batch must share one architecture (layers, "
                                  "activations, dtypes) and label kind")

    def parameters_of(self, part: str) -> list[nn.Parameter]:
        """The stacked parameters of ``part``: ``decoder``, or ``encoder`` (every network of the guide:
        ``q(y|x)`` and the ``z`` encoders)."""
        if part not in ("encoder", "decoder"):
            raise ConfigError(f"an M2 part is 'encoder' or 'decoder', got {part!r}")
        return [p for name, p in self.stacked("param").items() if (name.split(".")[0] == "decoder") == (part == "decoder")]

    # -- the networks, batched ---------------------------------------------------------
    def _net(self, part: str, inputs: torch.Tensor):
        """Network ``part`` of every replicate on ``inputs`` ``(R, ..., in)``."""
        rows = inputs.reshape(self.replicates, -1, inputs.shape[-1])
        forward = self._forward[part]
        if forward is not None:
            out = forward(self.stacked("param"), rows)
        else:  # a network stacked_forward does not know: vmap over the replicates
            module = getattr(self._template[0], part)
            params = {k[len(part) + 1:]: v for k, v in self.stacked("param").items() if k.startswith(part + ".")}
            out = torch.vmap(lambda p, a: torch.func.functional_call(module, p, (a,)))(params, rows)
        if isinstance(out, tuple):
            return tuple(o.reshape(inputs.shape[:-1] + o.shape[-1:]) for o in out)
        return out.reshape(inputs.shape[:-1] + out.shape[-1:])

    @staticmethod
    def _cat(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        shape = torch.broadcast_shapes(a.shape[:-1], b.shape[:-1])
        return torch.cat([a.expand(shape + a.shape[-1:]), b.expand(shape + b.shape[-1:])], -1)

    def features(self, y: torch.Tensor) -> torch.Tensor:
        """What the networks read for ``y`` (:meth:`M2.y_features`): one-hot for class indices."""
        if self.y_kind != "continuous" and not torch.is_floating_point(y):
            return F.one_hot(y, self.num_classes).to(self.stacked("buffer")["sigma"].dtype)
        return y

    def decode(self, z: torch.Tensor, yf: torch.Tensor) -> torch.Tensor:
        return self._net("decoder", self._cat(z, yf))

    def encode_z(self, x: torch.Tensor, yf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._net("z_encoder", self._cat(x, yf))

    def encode_z_unlabelled(self, x: torch.Tensor, yf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._net("z_encoder_x", x) if self.z_guide == "factorised" else self.encode_z(x, yf)

    def noise_sd(self, dims: int) -> torch.Tensor:
        """Each replicate's σ, shaped to broadcast against ``(R, ...)`` with ``dims`` dimensions."""
        return self.stacked("buffer")["sigma"].reshape((-1,) + (1,) * (dims - 1))

    def prior_log_probs(self, dims: int) -> torch.Tensor:
        """``log p(y)`` for each class, ``(R, 1, ..., K)`` with ``dims`` dimensions."""
        probs = self.stacked("buffer")["prior_probs"]
        return probs.log().reshape(probs.shape[:1] + (1,) * (dims - 2) + probs.shape[1:])

    def log_lik(self, x: torch.Tensor, z: torch.Tensor, yf: torch.Tensor) -> torch.Tensor:
        """``log p(x | z, y)``, summed over x's dimensions."""
        mean = self.decode(z, yf)
        return normal_log_prob(x, mean, self.noise_sd(mean.dim()))

    def relaxed(self, logits: torch.Tensor) -> dist.Distribution:
        """The relaxed one-hot distribution of the template (:meth:`M2._relaxed`) at ``logits`` (pure: no draws)."""
        return self._template[0]._relaxed(logits=logits)

    def relaxed_draw(self, logits: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        """A relaxed one-hot draw at ``logits`` from ``uniforms`` (torch's Concrete sampler, Maddison et al.;
        straight-through: its hard one-hot, as Pyro's ``RelaxedOneHotCategoricalStraightThrough``)."""
        gumbels = -((-(clamp_probs(uniforms).log())).log())
        scores = (logits + gumbels) / self._template[0].temperature
        soft = (scores - scores.logsumexp(-1, keepdim=True)).exp()
        if self._template[0].straight_through:
            return QuantizeCategorical.apply(clamp_probs(soft))
        return soft

    # -- draws from the replicate streams ----------------------------------------------------
    def normal(self, *shape: int, dtype: torch.dtype) -> torch.Tensor:
        """``(R, *shape)`` standard normal draws, replicate ``r``'s from its own stream."""
        return self.streams.normal((self.replicates,) + shape, dim=0, dtype=dtype)

    def uniform(self, *shape: int, dtype: torch.dtype) -> torch.Tensor:
        """``(R, *shape)`` uniform draws on [0, 1), replicate ``r``'s from its own stream."""
        return torch.stack([torch.rand(shape, generator=g, dtype=dtype, device=self.streams.device)
                            for g in self.streams.generators])

    # -- the bounds, per replicate and point ------------------------------------------------
    def unlabelled_elbo(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\mathcal U(x)` of :meth:`M2.guide` / :meth:`M2.model` with one particle, ``(R, n)``
        (draws as the guide makes them: the relaxed or continuous ``y``, then ``z``)."""
        n, dtype = x.shape[1], x.dtype
        if self.y_kind == "discrete":
            log_q = torch.log_softmax(self._net("y_encoder", x), -1)  # (R, n, K)
            classes = torch.eye(self.num_classes, dtype=dtype, device=x.device).unsqueeze(1)  # (K, 1, K)
            if self.z_guide == "factorised":  # one z ~ q(z|x), every y
                loc, scale = self._net("z_encoder_x", x)
                eps = self.normal(n, self.latent_dim, dtype=dtype)
                z = loc + scale * eps
                latent = latent_log_ratio(z, eps, scale).unsqueeze(1)  # (R, 1, n)
                log_lik = self.log_lik(x.unsqueeze(1), z.unsqueeze(1), classes)  # (R, K, n)
            else:  # z_y ~ q(z|x, y) for each y
                loc, scale = self.encode_z(x.unsqueeze(1), classes)  # (R, K, n, d)
                eps = self.normal(self.num_classes, n, self.latent_dim, dtype=dtype)
                z = loc + scale * eps
                latent = latent_log_ratio(z, eps, scale)  # (R, K, n)
                log_lik = self.log_lik(x.unsqueeze(1), z, classes)
            per_class = log_lik + latent + (self.prior_log_probs(3) - log_q).transpose(1, 2)  # (R, K, n)
            return (log_q.exp().transpose(1, 2) * per_class).sum(1)
        if self.y_kind == "relaxed":
            logits = self._net("y_encoder", x)
            y = self.relaxed_draw(logits, self.uniform(n, self.num_classes, dtype=dtype))
            prior = self._template[0]._relaxed(probs=self.stacked("buffer")["prior_probs"].unsqueeze(1))
            log_y = prior.log_prob(y) - self.relaxed(logits).log_prob(y)
        else:
            y_loc, y_scale = self._net("y_encoder", x)
            y_eps = self.normal(n, y_loc.shape[-1], dtype=dtype)
            y = y_loc + y_scale * y_eps
            log_y = latent_log_ratio(y, y_eps, y_scale)
        loc, scale = self.encode_z_unlabelled(x, y)
        eps = self.normal(n, self.latent_dim, dtype=dtype)
        z = loc + scale * eps
        return self.log_lik(x, z, y) + log_y + latent_log_ratio(z, eps, scale)

    def labelled_elbo(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r""":math:`\mathcal L(x, y)` with one particle, ``(R, n)``."""
        yf = self.features(y)
        loc, scale = self.encode_z(x, yf)
        eps = self.normal(x.shape[1], self.latent_dim, dtype=x.dtype)
        z = loc + scale * eps
        latent = latent_log_ratio(z, eps, scale)
        return self.log_lik(x, z, yf) + self.label_log_prior(y) + latent

    def label_log_prior(self, y: torch.Tensor) -> torch.Tensor:
        """``log p(y)`` of given labels (class indices or continuous values), ``(R, n)``."""
        if self.y_kind == "continuous":
            return normal_log_prob(y, 0.0, torch.ones_like(y))
        return self.prior_log_probs(3).expand(y.shape + (self.num_classes,)).gather(-1, y.unsqueeze(-1)).squeeze(-1)

    def label_log_q(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``log q(y | x)`` of given labels, ``(R, n)`` (the α term of Eq. 5)."""
        if self.y_kind == "continuous":
            loc, scale = self._net("y_encoder", x)
            return normal_log_prob(y, loc, scale)
        return torch.log_softmax(self._net("y_encoder", x), -1).gather(-1, y.unsqueeze(-1)).squeeze(-1)

    def iwae_bound(self, x: torch.Tensor, y: torch.Tensor | None, particles: int) -> torch.Tensor:
        r""":meth:`M2.iwae_bound` of every replicate, ``(R, n)``: Eq. 14 (labelled) or Eq. 15 (unlabelled)."""
        S, n, dtype = int(particles), x.shape[1], x.dtype
        if y is not None:  # Eq. 14
            yf = self.features(y)
            loc, scale = (t.unsqueeze(1) for t in self.encode_z(x, yf))  # (R, 1, n, d)
            eps = self.normal(S, n, self.latent_dim, dtype=dtype)  # (R, S, n, d)
            z = loc + scale * eps
            log_w = (self.log_lik(x.unsqueeze(1), z, yf.unsqueeze(1)) + self.label_log_prior(y).unsqueeze(1)
                     + latent_log_ratio(z, eps, scale))
            return torch.logsumexp(log_w, 1) - math.log(S)
        if self.y_kind == "discrete":  # the expectation over y taken exactly
            classes = torch.eye(self.num_classes, dtype=dtype, device=x.device).unsqueeze(1)  # (K, 1, K)
            log_py = self.prior_log_probs(4).transpose(-1, -2)  # (R, 1, K, 1)
            if self.z_guide == "factorised":  # one z_s ~ q(z|x) shared by every y
                loc, scale = self._net("z_encoder_x", x)  # (R, n, d)
                eps = self.normal(S, n, self.latent_dim, dtype=dtype)  # (R, S, n, d)
                z = loc.unsqueeze(1) + scale.unsqueeze(1) * eps
                latent = latent_log_ratio(z, eps, scale.unsqueeze(1))
                log_lik = self.log_lik(x.unsqueeze(1).unsqueeze(1), z.unsqueeze(2), classes)  # (R, S, K, n)
                log_w = log_lik + log_py + latent.unsqueeze(2)
                return torch.logsumexp(torch.logsumexp(log_w, 2), 1) - math.log(S)
            loc, scale = self.encode_z(x.unsqueeze(1), classes)  # (R, K, n, d)
            eps = self.normal(S, self.num_classes, n, self.latent_dim, dtype=dtype)  # (R, S, K, n, d)
            z = loc.unsqueeze(1) + scale.unsqueeze(1) * eps
            latent = latent_log_ratio(z, eps, scale.unsqueeze(1))
            log_w = self.log_lik(x.unsqueeze(1).unsqueeze(1), z, classes) + log_py + latent  # (R, S, K, n)
            return torch.logsumexp(log_w.reshape(self.replicates, -1, n), 1) - math.log(S)
        if self.y_kind == "relaxed":  # Eq. 15 as printed, y_s from the relaxed q(y|x)
            logits = self._net("y_encoder", x).unsqueeze(1)  # (R, 1, n, K)
            y = self.relaxed_draw(logits, self.uniform(S, n, self.num_classes, dtype=dtype))  # (R, S, n, K)
            prior = self._template[0]._relaxed(probs=self.stacked("buffer")["prior_probs"].reshape(
                self.replicates, 1, 1, self.num_classes))
            log_y = prior.log_prob(y) - self.relaxed(logits).log_prob(y)
        else:  # continuous y_s ~ q(y|x)
            y_loc, y_scale = (t.unsqueeze(1) for t in self._net("y_encoder", x))
            y_eps = self.normal(S, n, y_loc.shape[-1], dtype=dtype)
            y = y_loc + y_scale * y_eps
            log_y = latent_log_ratio(y, y_eps, y_scale)
        loc, scale = self.encode_z_unlabelled(x.unsqueeze(1), y)  # (R, 1, n, d) or (R, S, n, d)
        eps = self.normal(S, n, self.latent_dim, dtype=dtype)
        z = loc + scale * eps
        log_w = (self.log_lik(x.unsqueeze(1), z, y) + log_y + latent_log_ratio(z, eps, scale))
        return torch.logsumexp(log_w, 1) - math.log(S)


def m2_replicate_loss(stack: ReplicatedM2, x_u: torch.Tensor, x_l: torch.Tensor, y_l: torch.Tensor, n_u: int, n_l: int,
                      objective: str = "elbo", gamma: torch.Tensor | float = 1.0, alpha: torch.Tensor | float = 0.0,
                      particles: int = 10) -> torch.Tensor:
    r"""Each replicate's per-point loss of one step, ``(R,)``: the estimate of :math:`-J/(N+M)` of
    :func:`pyrovae.inference.m2_training.m2_step_loss` from an unlabelled batch ``x_u`` ``(R, B_u, D)``
    and a labelled batch ``x_l``, ``y_l`` ``(R, B_l, ·)``, with γ and α scalars or one per replicate.
    Draws: the unlabelled batch's, then the labelled batch's (as ``m2_step_loss``)."""
    gamma = torch.as_tensor(gamma, dtype=x_u.dtype, device=x_u.device).reshape(-1)
    alpha = torch.as_tensor(alpha, dtype=x_u.dtype, device=x_u.device).reshape(-1)
    if objective == "elbo":
        unlabelled, labelled = stack.unlabelled_elbo(x_u), stack.labelled_elbo(x_l, y_l)
    elif objective == "iwae":
        unlabelled, labelled = stack.iwae_bound(x_u, None, particles), stack.iwae_bound(x_l, y_l, particles)
    else:
        raise ConfigError(f"unknown M2 objective {objective!r}; known: elbo, iwae")
    zero = torch.zeros((), dtype=x_u.dtype, device=x_u.device)
    # a weight of 0 drops its term (as Pyro's mask and the program's skipped α site do), whatever the term's value
    labelled = torch.where(gamma != 0, gamma * labelled.sum(-1), zero)
    if bool((alpha != 0).any()):
        labelled = labelled + torch.where(alpha != 0, alpha * stack.label_log_q(x_l, y_l).sum(-1), zero)
    return -(n_u / x_u.shape[1] * unlabelled.sum(-1) + n_l / x_l.shape[1] * labelled) / (n_u + n_l)
