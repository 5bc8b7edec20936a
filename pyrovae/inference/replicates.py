r"""R copies of one σ-CVAE trained as one batched Pyro program.

The papers' protocols train many small models: repetitions with other seeds, restarts, grid
cells. Trained one after another each costs a full step of Python and tiny matrix products;
stacked, the R copies' weights get a leading *replicate* dimension
(:func:`torch.func.stack_module_state`); the package's plain networks run as one batched product
per layer (:mod:`pyrovae.models.stacked_nets`), any other module under :func:`torch.vmap`. The
generative model and the guide are one Pyro program with a ``replicates`` plate outside the
``data`` plate (:meth:`ReplicatedCVAE.model`, :meth:`ReplicatedCVAE.guide`); training computes
that program's loss per replicate directly from the networks' outputs (:func:`replicate_loss`,
held equal to Pyro's ELBOs on the program by the tests). The summed loss gives each copy exactly
its own gradient (the copies share no parameter), and Adam is element-wise, so each copy follows
the path it would follow alone.

Each replicate draws its noise — the guide's ε, mini-batch indices, the evaluation's ε, the
calibration's φ — from its own :class:`torch.Generator` (:class:`ReplicaStreams`), so its
numbers do not depend on R or on which other replicates share the batch.

A single model is the case R = 1 (a network left to ``vmap`` is then called directly).
"""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Self, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import nn

from pyrovae.errors import ConfigError
from pyrovae.models.cvae import SigmaCVAE, kl_to_standard_normal
from pyrovae.models.stacked_nets import architecture, stacked_forward

__all__ = ["ReplicaStreams", "ReplicatedCVAE", "StackedModels", "latent_log_ratio", "normal_log_prob", "replicate_loss"]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
#: numbers per layer (replicates × points × the widest layer) in one chunk of the per-block evaluation
#: (:meth:`ReplicatedCVAE.terms`) of a batch on the CPU. Fifty replicates × 5,000 points × 50 units run
#: from memory in one pass and from cache in chunks: 2.5× faster (benchmarks/block_evaluation.py); a
#: batch that fits (30 × 1,000 × 16) stays one pass, where chunks only add calls. The per-point
#: numbers are those of one pass up to float rounding; a single run and a GPU batch are one pass.
_EVAL_NUMBERS = 2**20


def normal_log_prob(value: torch.Tensor, loc: torch.Tensor | float, scale: torch.Tensor) -> torch.Tensor:
    r""":math:`\log N(\text{value}; \text{loc}, \text{scale}^2)` summed over the last dimension (a diagonal Gaussian)."""
    return (-0.5 * ((value - loc) / scale).pow(2) - scale.log() - _LOG_SQRT_2PI).sum(-1)


def latent_log_ratio(z: torch.Tensor, eps: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    r""":math:`\log N(z; 0, I) - \log q(z)` at the guide's own reparameterised draw :math:`z = \mathrm{loc} +
    \mathrm{scale}\,\epsilon`, summed over the last dimension: :math:`\sum (\epsilon^2 - z^2)/2 + \log\mathrm{scale}`
    (the Gaussian constants cancel). Minus the single-draw KL estimate of ``Trace_ELBO``."""
    return (0.5 * (eps.pow(2) - z.pow(2)) + scale.log()).sum(-1)


class ReplicaStreams:
    """One :class:`torch.Generator` per replicate, seeded from that replicate's seed."""

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.generators: list[torch.Generator] = []
        for seed in seeds:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(int(seed))
            self.generators.append(generator)

    def __len__(self) -> int:
        return len(self.generators)

    def normal(self, shape: Sequence[int], dim: int, dtype: torch.dtype) -> torch.Tensor:
        """Standard normal draws of ``shape``, whose dimension ``dim`` (size R) is the replicate:
        slice ``r`` along it comes from generator ``r``."""
        shape = list(shape)
        dim = dim % len(shape)
        if shape[dim] != len(self):
            raise ConfigError(f"noise of shape {tuple(shape)} has {shape[dim]} replicates at dim {dim}, not {len(self)}")
        per = shape[:dim] + shape[dim + 1:]
        draws = [torch.randn(per, generator=g, dtype=dtype, device=self.device) for g in self.generators]
        return torch.stack(draws, dim=dim)

    def batch_indices(self, n: int, size: int) -> torch.Tensor:
        """``(R, size)`` indices of a random mini-batch of ``size`` of ``n`` points per replicate (the first
        ``size`` of a shuffle: the same draws)."""
        return self.permutations(n)[:, :size]

    def permutations(self, n: int) -> torch.Tensor:
        """``(R, n)``: a random order of ``n`` points per replicate (an epoch's shuffle)."""
        return torch.stack([torch.randperm(n, generator=g, device=self.device) for g in self.generators])

    def randint(self, n: int, size: int) -> torch.Tensor:
        """``(R, size)`` indices drawn uniformly from ``n`` points with replacement, per replicate."""
        return torch.stack([torch.randint(n, (size,), generator=g, device=self.device) for g in self.generators])

    @contextlib.contextmanager
    def only(self, mask: torch.Tensor | None):
        """Within this context only the replicates where ``mask`` ``(R,)`` is True draw from their streams; the
        others draw from a throw-away generator, so their streams stay where they were (a masked step discards
        what those draws feed). ``None``: every replicate draws."""
        if mask is None:
            yield
            return
        own = self.generators
        spare = torch.Generator(device=self.device)
        self.generators = [g if live else spare for g, live in zip(own, mask.tolist())]
        try:
            yield
        finally:
            self.generators = own

    def select(self, keep: Sequence[int]) -> "ReplicaStreams":
        """The streams of the replicates ``keep`` (the same generator objects, not copies)."""
        out = ReplicaStreams([], self.device)
        out.generators = [self.generators[i] for i in keep]
        return out

    def state(self) -> list[torch.Tensor]:
        return [g.get_state() for g in self.generators]

    def load_state(self, states: Sequence[torch.Tensor]) -> None:
        if len(states) != len(self):
            raise ConfigError(f"{len(states)} generator states for {len(self)} replicates")
        for g, s in zip(self.generators, states):
            g.set_state(s.cpu())


class _StreamNormal(dist.Normal):
    r"""The guide's ``Normal(loc, scale)`` whose ``rsample`` takes ε from the replicate streams.

    At its own draw :math:`z = \mathrm{loc} + \mathrm{scale}\cdot\epsilon`, ``log_prob(z)`` is
    :math:`-\epsilon^2/2 - \log\mathrm{scale} - \log\sqrt{2\pi}`: torch's value up to its rounding
    and the same gradient in loc and scale, with a smaller backward graph. Any other value takes
    torch's formula. The replicate dimension sits at ``-2`` of the batch shape (the
    ``replicates`` plate), so at ``-3`` of a draw.
    """

    def __init__(self, loc, scale, streams: ReplicaStreams, validate_args=None):
        super().__init__(loc, scale, validate_args=validate_args)
        self.streams = streams
        self._draw: tuple[torch.Tensor, torch.Tensor] | None = None

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(_StreamNormal, _instance)
        new = super().expand(batch_shape, _instance=new)
        new.streams, new._draw = self.streams, None
        return new

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        eps = self.streams.normal(shape, dim=-3, dtype=self.loc.dtype)
        value = self.loc + eps * self.scale
        self._draw = (value, eps)
        return value

    def log_prob(self, value):
        draw = self._draw
        if draw is None or value is not draw[0]:
            return super().log_prob(value)
        return -(draw[1] ** 2) / 2 - self.scale.log() - _LOG_SQRT_2PI


class StackedModels(nn.Module):
    """``R`` models of one architecture as stacked tensors, replicate first (:func:`torch.func.stack_module_state`):
    what :class:`ReplicatedCVAE` and :class:`~pyrovae.inference.m2_replicates.ReplicatedM2` share. The stack owns
    fresh leaf tensors (a parameter the models froze stays frozen); :meth:`write_to` copies replicate ``r`` back
    into a model; the architecture is kept as a copy of the first model on the meta device, not as a submodule."""

    def __init__(self, template: nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                 streams: ReplicaStreams):
        super().__init__()
        self.replicates = len(streams)
        self.streams = streams
        self._template = [template]  # a list: not a submodule
        self._names = {"param": sorted(params), "buffer": sorted(buffers)}
        for name in self._names["param"]:
            self.register_parameter(_flat(name), nn.Parameter(params[name].detach().clone(),
                                                              requires_grad=params[name].requires_grad))
        for name in self._names["buffer"]:
            self.register_buffer(_flat(name), buffers[name].detach().clone())
        # name -> tensor, looked up once: a stack never swaps its tensors (select builds a new stack)
        self._stacked = {kind: {name: (self.get_parameter if kind == "param" else self.get_buffer)(_flat(name))
                                for name in names} for kind, names in self._names.items()}

    @staticmethod
    def check_architecture(models: Sequence[nn.Module]) -> None:
        """Refuse models that cannot share one stack (each subclass says what must agree)."""
        raise NotImplementedError

    @classmethod
    def stack(cls, models: Sequence[nn.Module], streams: ReplicaStreams) -> Self:
        """Stack ``models`` (one architecture), replicate ``r`` drawing from ``streams`` ``r``."""
        models = list(models)
        if not models:
            raise ConfigError("need at least one model")
        if len(streams) != len(models):
            raise ConfigError(f"{len(streams)} random streams for {len(models)} replicates")
        cls.check_architecture(models)
        params, buffers = torch.func.stack_module_state(models)
        return cls(copy.deepcopy(models[0]).to("meta"), params, buffers, streams)

    def select(self, keep: Sequence[int]) -> Self:
        """A new stack of replicates ``keep`` only (fresh leaf tensors, the same streams)."""
        index = torch.as_tensor(list(keep), dtype=torch.long, device=self.device)
        params = {k: v.detach().index_select(0, index).requires_grad_(v.requires_grad)
                  for k, v in self.stacked("param").items()}
        buffers = {k: v.index_select(0, index) for k, v in self.stacked("buffer").items()}
        return type(self)(self._template[0], params, buffers, self.streams.select(keep))

    @property
    def device(self) -> torch.device:
        return next(iter(self.parameters())).device

    def stacked(self, kind: str = "param") -> dict[str, torch.Tensor]:
        """Module name (as in one model's state dict) → stacked tensor."""
        return self._stacked[kind]

    @torch.no_grad()
    def write_to(self, r: int, model: nn.Module) -> None:
        """Copy replicate ``r``'s parameters and buffers into ``model``."""
        state = {name: t[r] for kind in ("param", "buffer") for name, t in self.stacked(kind).items()}
        model.load_state_dict(state, strict=True)


class ReplicatedCVAE(StackedModels):
    r"""``R`` σ-CVAEs of one architecture as one batched Pyro program.

    Parameters and buffers are those of the replicates' models stacked along a new leading
    dimension (:func:`torch.func.stack_module_state`, see :meth:`stack`); :meth:`write_to`
    copies replicate ``r`` back into its own :class:`~pyrovae.models.cvae.SigmaCVAE`. Data
    ``x`` (n, p) and ``y`` (n, q) are shared by all replicates; ``(R, n, ·)`` gives each its own.

    The Pyro program (Liu & Wang, Eq. 1 and 6, per replicate):
    ``z ~ N(0, I)``, ``y | x, z ~ N(μ_θr(x, z), σ_r²)``; guide ``q_φr(z | x, y)``; β per
    replicate through ``poutine.scale`` on ``z`` in both (β = 0 by masking).
    """

    def __init__(self, template: SigmaCVAE, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                 streams: ReplicaStreams):
        super().__init__(template, params, buffers, streams)
        self.latent_dim, self.observed_dim, self.condition_dim = template.latent_dim, template.observed_dim, template.condition_dim
        # encoder and decoder mean as one batched product per layer where the networks allow it
        # (pyrovae.models.stacked_nets); otherwise the modules run under vmap, and so does the whole
        # model when σ reads the decoder's features or weights, or a subclass computes the mean its own way
        self._encoder = stacked_forward(template.encoder, "encoder.")
        own_decoding = all(getattr(type(template), name) is getattr(SigmaCVAE, name)
                           for name in ("forward", "_mean_and_noise_input"))
        self._decoder = stacked_forward(template.decoder, "decoder.") if own_decoding and not (
            template.noise.reads_features or template.noise.reads_decoder) else None
        # the observation model's stacked state, for its stacked_scale (the same tensors as the stack's)
        self._noise_state = {**self._state_of("noise", "param"), **self._state_of("noise", "buffer")}
        # the widest layer (units in or out of a weight matrix), which sizes the evaluation's chunks
        self._widest = max(max(t.shape[-2:]) for t in params.values() if t.dim() >= 3)

    @staticmethod
    def check_architecture(models: Sequence[SigmaCVAE]) -> None:
        first = architecture(models[0])
        if any(architecture(m) != first for m in models[1:]):
            raise ConfigError("replicates trained as one batch must share one architecture (layers, activations, "
                              "dtypes) and observation model")

    def parameters_of(self, part: str) -> list[nn.Parameter]:
        """The stacked parameters of ``part``: ``encoder``, ``decoder`` or ``noise``."""
        return [p for name, p in self.stacked("param").items() if name.split(".")[0] == part]

    @torch.no_grad()
    def read_noise_from(self, r: int, model: SigmaCVAE) -> None:
        """Copy ``model``'s observation-model buffers into replicate ``r`` (σ set by an algorithm)."""
        own = dict(model.named_buffers())
        for name, t in self.stacked("buffer").items():
            if name.startswith("noise."):
                t[r].copy_(own[name])

    # -- batched networks -------------------------------------------------------------
    def _state_of(self, part: str, kind: str) -> dict[str, torch.Tensor]:
        """The stacked ``kind`` (``param`` / ``buffer``) tensors of ``part`` (``""``: the whole model), named as in
        that part's own state dict."""
        prefix = part + "." if part else ""
        return {name[len(prefix):]: t for name, t in self.stacked(kind).items() if name.startswith(prefix)}

    def _call(self, part: str, *args: torch.Tensor, batched: Sequence[bool]) -> object:
        """``part(*args)`` of every replicate (``part = ""``: the model's own ``forward``);
        ``batched[i]`` says whether ``args[i]`` has a leading replicate dimension (else it is shared)."""
        module = getattr(self._template[0], part) if part else self._template[0]
        params, buffers = self._state_of(part, "param"), self._state_of(part, "buffer")

        def call(p, b, *a):
            return torch.func.functional_call(module, (p, b), a, tie_weights=False)

        if self.replicates == 1:  # no vmap: the plain module on replicate 0's views
            out = call({k: v[0] for k, v in params.items()}, {k: v[0] for k, v in buffers.items()},
                       *[a[0] if is_b else a for a, is_b in zip(args, batched)])
            return tuple(o.unsqueeze(0) for o in out) if isinstance(out, tuple) else out.unsqueeze(0)
        in_dims = (0, 0, *[0 if is_b else None for is_b in batched])
        return torch.vmap(call, in_dims=in_dims)(params, buffers, *args)

    def encode(self, condition: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Location and scale of every replicate's ``q(z | x, y)``, each ``(R, n, d)``."""
        if observed.dim() == 2:  # shared data: every replicate reads the same points
            observed = observed.expand((self.replicates,) + observed.shape)
        inputs = torch.cat([condition.expand(observed.shape[:-1] + condition.shape[-1:]), observed], dim=-1)
        if self._encoder is not None:
            return self._encoder(self.stacked("param"), inputs)
        return self._call("encoder", inputs, batched=[True])

    def mean_and_scale(self, condition: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder mean and σ for ``z`` of shape ``(..., R, n, d)`` (replicate at -3); σ broadcasts
        against the mean."""
        zr = z.movedim(-3, 0)  # (R, ..., n, d)
        if condition.dim() == 3:  # (R, n, p): one data set per replicate, broadcast over particle dims
            condition = condition.reshape(condition.shape[:1] + (1,) * (zr.dim() - 3) + condition.shape[1:])
        inputs = torch.cat([condition.expand(zr.shape[:-1] + condition.shape[-1:]), zr], dim=-1)
        if self._decoder is not None:
            flat = inputs.reshape(self.replicates, -1, inputs.shape[-1])  # particle dims into the rows
            mean = self._decoder(self.stacked("param"), flat).reshape(inputs.shape[:-1] + (-1,))
            scale = self._template[0].noise.stacked_scale(self._noise_state, mean)
            if scale is None:  # σ depends on the point: the observation model per replicate
                scale = self._call("noise", mean, inputs, batched=[True, True])
        else:  # one call: the observation model reads the decoder's features
            mean, scale = self._call("", inputs, batched=[True])
        while scale.dim() < mean.dim():  # a scalar (R,) or per-output (R, q) σ
            scale = scale.unsqueeze(1)
        return mean.movedim(0, -3), scale.movedim(0, -3)

    # -- the Pyro program ---------------------------------------------------------------
    def _plates(self, n: int):
        return pyro.plate("replicates", self.replicates, dim=-2), pyro.plate("data", n, dim=-1)

    def model(self, condition: torch.Tensor, observed: torch.Tensor, beta: torch.Tensor | None = None) -> torch.Tensor:
        n = observed.shape[-2]
        reps, data = self._plates(n)
        zero = torch.zeros((), dtype=observed.dtype, device=observed.device)
        with reps, data:
            with _scaled(beta):
                z = pyro.sample("z", dist.Normal(zero, zero + 1).expand([self.latent_dim]).to_event(1))
            mean, scale = self.mean_and_scale(condition, z)
            return pyro.sample("y", dist.Normal(mean, scale).to_event(1), obs=observed)

    def guide(self, condition: torch.Tensor, observed: torch.Tensor, beta: torch.Tensor | None = None) -> torch.Tensor:
        reps, data = self._plates(observed.shape[-2])
        with reps, data:
            loc, scale = self.encode(condition, observed)
            with _scaled(beta):
                return pyro.sample("z", _StreamNormal(loc, scale, self.streams).to_event(1))

    # -- evaluation -------------------------------------------------------------------
    @torch.no_grad()
    def terms(self, condition: torch.Tensor, observed: torch.Tensor) -> dict[str, torch.Tensor]:
        r"""Per-replicate, per-point terms with one reparameterised z each (as
        :meth:`SigmaCVAE.terms`): ``recon``, analytic ``kl`` and ``sq_err``, each ``(R, n)``, and
        ``log_sigma`` (R,): the mean of log σ over the points and outputs (log σ itself for a
        scalar σ). A batch on the CPU runs the networks over chunks of the points (``_EVAL_NUMBERS``);
        the draws are made for all points at once, as a single pass would."""
        n = observed.shape[-2]
        chunked = self.replicates > 1 and self.device.type == "cpu"
        size = max(1, _EVAL_NUMBERS // (self.replicates * self._widest)) if chunked else n
        chunks = [slice(i, i + size) for i in range(0, n, size)]
        coded = [self.encode(condition[..., rows, :], observed[..., rows, :]) for rows in chunks]
        loc, scale = (torch.cat([c[k] for c in coded], dim=-2) for k in (0, 1))
        eps = self.streams.normal(loc.shape, dim=-3, dtype=loc.dtype)  # every point's draw at once, as unchunked
        z = loc + scale * eps
        decoded = [self.mean_and_scale(condition[..., rows, :], z[..., rows, :]) for rows in chunks]
        mean = torch.cat([d[0] for d in decoded], dim=-2)
        per_point = all(d[1].shape[-2] == d[0].shape[-2] for d in decoded)  # σ(z), else one σ for all points
        sigma = torch.cat([d[1] for d in decoded], dim=-2) if per_point else decoded[0][1]
        yb = observed if observed.dim() == 3 else observed.expand(mean.shape)
        recon = -dist.Normal(mean, sigma).log_prob(yb).sum(-1)
        kl = kl_to_standard_normal(loc, scale)
        log_sigma = sigma.log().expand(mean.shape).mean(dim=(-2, -1))
        return {"recon": recon, "kl": kl, "sq_err": (yb - mean).pow(2).sum(-1), "log_sigma": log_sigma}


def _flat(name: str) -> str:
    return name.replace(".", "__")


def _scaled(beta: torch.Tensor | None):
    """β per replicate on the latent site: a ``(R, 1)`` scale, with β = 0 masked out."""
    handlers = contextlib.ExitStack()
    if beta is None or bool((beta == 1).all()):
        return handlers
    beta = beta.reshape(-1, 1)
    positive = beta > 0
    if not bool(positive.all()):  # poutine.scale refuses 0: drop those replicates' term by masking
        handlers.enter_context(poutine.mask(mask=positive))
        beta = torch.where(positive, beta, torch.ones_like(beta))
    handlers.enter_context(poutine.scale(scale=beta))
    return handlers


def replicate_loss(stack: ReplicatedCVAE, condition: torch.Tensor, observed: torch.Tensor, beta: torch.Tensor | None,
                   estimator: str = "trace", particles: int = 1) -> torch.Tensor:
    r"""The negative ELBO of each replicate, summed over its points: a ``(R,)`` tensor.

    The loss of the batched Pyro program (:meth:`ReplicatedCVAE.model`, :meth:`ReplicatedCVAE.guide`)
    computed directly from the networks' outputs, reduced per replicate, with the guide's draws
    :math:`z = \mathrm{loc} + \mathrm{scale}\cdot\epsilon` taken from the replicate streams as the
    program takes them (tests hold the sum equal to Pyro's ``Trace_ELBO`` and ``TraceMeanField_ELBO``
    on that program, same draws). With :math:`\log w = \log p(y \mid x, z) + \beta\,[\log p(z) - \log q(z)]`:

    * ``trace`` — :math:`-\frac1S\sum_s \log w_s` (``Trace_ELBO``);
    * ``meanfield`` — the same with the analytic :math:`\beta\,\mathrm{KL}(q \| p)` for ``z``
      (``TraceMeanField_ELBO``);
    * ``iwae`` — per point :math:`-\log\frac1S\sum_s w_s` (``RenyiELBO(alpha=0)``, Burda et al. 2016).

    β is per replicate; β = 0 drops the latent terms (Pyro's mask). ``particles`` > 1 draw
    ``(S, R, n, d)`` noise, the replicate at dim -3. Tracing the program through Pyro's poutines
    costs about 2.5 ms per step on the CPU, a fifth of a single run's step at n = 5,000
    (benchmarks/svi_overhead.py), which is why training does not.
    """
    loc, scale = stack.encode(condition, observed)  # (R, n, d)
    shape = ((particles,) if particles > 1 else ()) + tuple(loc.shape)
    eps = stack.streams.normal(shape, dim=-3, dtype=loc.dtype)
    z = loc + scale * eps
    mean, sigma = stack.mean_and_scale(condition, z)
    log_lik = normal_log_prob(observed, mean, sigma)  # (S?, R, n)
    if estimator == "meanfield":
        kl = kl_to_standard_normal(loc, scale)
    else:  # log q(z) - log p(z) at the draw
        kl = -latent_log_ratio(z, eps, scale)
    if beta is not None:
        beta = beta.reshape(-1, 1)
        kl = torch.where(beta > 0, beta * kl, torch.zeros_like(kl))
    log_w = log_lik - kl
    if estimator == "iwae":
        if particles > 1:
            log_w = torch.logsumexp(log_w, dim=0) - math.log(particles)
        return -log_w.sum(-1)
    if particles > 1:
        log_w = log_w.mean(0)
    return -log_w.sum(-1)
