r"""Pyro NUTS on the posteriors of a fixed decoder, read back through ``az.from_pyro``.

The target becomes a Pyro program (:func:`latent_model`): inside a ``point`` plate,
:math:`z_n \sim N(0, I_d)` and the observed :math:`y_n \sim N(f_\theta(x_n, z_n), \sigma^2_\theta)`,
the frozen decoder of a trained model (Liu & Wang 2025, Eq. 1). Its posterior is
:math:`\prod_n p_\theta(z_n \mid x_n, y_n)`, sampled jointly over all :math:`N \times d`
latents by Pyro's NUTS (Hoffman & Gelman 2014), one chain after another (multi-process chains
are fragile). Everything is read through public interfaces: the draws from
``MCMC.get_samples``, divergences and acceptance rates from ``MCMC.diagnostics()``, the adapted
step size from ``NUTS.step_size``, and, with ArviZ 0.x, the ``InferenceData`` of each chain from
``az.from_pyro`` (posterior, ``diverging``, the pointwise log-likelihood through Pyro's
``Predictive``, observed data), concatenated over chains. ArviZ 1.x has no ``from_pyro``; there
the same groups are written by :func:`~pyrovae.posterior.arviz_adapter.to_arviz` from the draws.

Pyro's NUTS does not publish per-draw energies or acceptance probabilities, so a NUTS file has
no ``energy`` and ``az.plot_energy`` needs the batched HMC.

References:
    Hoffman & Gelman, *The No-U-Turn Sampler*, JMLR 2014.
    Kumar, Carroll, Hartikainen & Martin, *ArviZ*, JOSS 2019 (``from_pyro``).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from pyrovae.posterior.initial import check_counts, initial_latents
from pyrovae.posterior.samples import PosteriorSamples
from pyrovae.posterior.target import LatentTarget

__all__ = ["latent_model", "nuts_posterior"]


def latent_model(target: LatentTarget) -> Callable[[], None]:
    r"""The target as a Pyro program with sites ``z`` (latent, ``(N, d)``) and ``y`` (observed).

    With a decoder mean and scale, ``y`` is an observed ``Normal(mean(z), scale(z))`` site, so
    Pyro and ArviZ see the pointwise likelihood; a bare log-likelihood becomes a
    ``pyro.factor`` (no observed site, no ``log_likelihood`` from ``from_pyro``).
    """
    import pyro
    import pyro.distributions as dist

    n, d = target.num_points, target.latent_dim
    kw = dict(dtype=target.dtype, device=target.device)
    gaussian = target.decoder_mean is not None and target.decoder_scale is not None and target.observed is not None

    def model() -> None:
        with pyro.plate("point", n, dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros(d, **kw), torch.ones(d, **kw)).to_event(1))
            if gaussian:
                mean = target.decoder_mean(z)
                pyro.sample("y", dist.Normal(mean, target.decoder_scale(z).expand_as(mean)).to_event(1), obs=target.observed)
            else:
                pyro.factor("log_lik", target.log_lik(z))

    return model


def _from_pyro(mcmc, target: LatentTarget) -> Any:
    """``az.from_pyro`` of one chain with our names; ``None`` under ArviZ 1.x (no ``from_pyro``)."""
    from pyrovae.posterior.arviz_adapter import arviz_major_version, coords_of, DIMS

    if arviz_major_version() >= 1:  # pragma: no cover - ArviZ 1.x is not installed here
        return None
    import arviz as az

    return az.from_pyro(mcmc, coords=coords_of(target.points, target.latent_dim, target.observed), dims=DIMS)


def nuts_posterior(
    target: LatentTarget,
    num_samples: int = 500,
    warmup_steps: int = 500,
    num_chains: int = 2,
    init: str | torch.Tensor = "encoder",
    init_jitter: float = 1.0,
    seed: int = 0,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    full_mass: bool = False,
) -> PosteriorSamples:
    r"""Pyro NUTS on :func:`latent_model`, chains run one after another and stacked.

    Each chain starts from :func:`~pyrovae.posterior.initial.initial_latents` and adapts its own
    step size and diagonal mass matrix. The global RNG is left as it was (chains run under
    ``torch.random.fork_rng`` with seeds ``seed + chain``). Statistics are joint over all points
    (one trajectory moves every :math:`z_n`), shape ``(chain, draw)``: ``diverging``, ``lp``
    (:math:`\sum_n \log p(y_n, z_n)`) and ``step_size`` (the adapted step, fixed after warm-up);
    ``info["acceptance_rate"]`` holds each chain's mean acceptance; ``info["wall_s"]`` and
    ``info["cpu_s"]`` time the chains' ``MCMC.run`` (warm-up and sampling), not the conversion.
    """
    from pyro.infer.mcmc import MCMC, NUTS

    check_counts(num_samples, warmup_steps, num_chains)
    devices = [target.device] if target.device.type == "cuda" else []
    gen = torch.Generator(device=target.device).manual_seed(int(seed))
    starts = initial_latents(target, num_chains, init, init_jitter, gen)
    model = latent_model(target)

    draws, diverging, steps, accept, per_chain = [], [], [], [], []
    wall = cpu = 0.0
    for chain in range(num_chains):
        with torch.random.fork_rng(devices=devices):
            t0, c0 = time.perf_counter(), time.process_time()
            torch.manual_seed(int(seed) + chain)
            kernel = NUTS(
                model,
                target_accept_prob=target_accept_prob,
                max_tree_depth=max_tree_depth,
                adapt_step_size=True,
                adapt_mass_matrix=True,
                full_mass=full_mass,
            )
            mcmc = MCMC(
                kernel,
                num_samples=num_samples,
                warmup_steps=warmup_steps,
                num_chains=1,
                initial_params={"z": starts[chain]},
                disable_progbar=True,
            )
            mcmc.run()
            wall, cpu = wall + time.perf_counter() - t0, cpu + time.process_time() - c0
            per_chain.append(_from_pyro(mcmc, target))  # traces the model: inside the forked RNG
        draws.append(mcmc.get_samples(group_by_chain=True)["z"][0].detach())
        diag = mcmc.diagnostics()
        div = torch.zeros(num_samples, dtype=torch.bool)
        div[list(diag["divergences"]["chain 0"])] = True
        diverging.append(div)
        accept.append(float(diag["acceptance rate"]["chain 0"]))
        steps.append(float(kernel.step_size))
    z = torch.stack(draws).to(target.device)  # (C, D, N, d)
    with torch.no_grad():
        lp = target.log_joint(z).sum(-1)
    stats = {
        "diverging": torch.stack(diverging).to(target.device),
        "lp": lp,
        "step_size": torch.tensor(steps, dtype=target.dtype, device=target.device)[:, None].expand(num_chains, num_samples),
    }
    info = {
        "sampler": "pyro NUTS (joint over points, chains sequential)",
        "num_chains": num_chains,
        "num_samples": num_samples,
        "warmup_steps": warmup_steps,
        "init": init if isinstance(init, str) else "tensor",
        "seed": int(seed),
        "target_accept_prob": target_accept_prob,
        "max_tree_depth": max_tree_depth,
        "acceptance_rate": accept,
        "wall_s": wall,
        "cpu_s": cpu,
        "device": str(target.device),
    }
    inference_data = None
    if all(part is not None for part in per_chain):
        import arviz as az

        inference_data = per_chain[0] if num_chains == 1 else az.concat(*per_chain, dim="chain")
    return PosteriorSamples({"z": z}, stats, "nuts", list(target.points), info, inference_data)
