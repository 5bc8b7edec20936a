r"""The trainer of the M2 model (Yacoby, Pan & Doshi-Velez 2021, Eq. 5): Adam over the models' parameters.

Every step takes one unlabelled batch and one labelled batch and minimises

.. math::
    -\frac{1}{N+M}\Big(\frac{N}{B_u}\sum_{b} \mathcal U(x_b) + \frac{M}{B_l}\Big[\gamma \sum_{b}\mathcal L(x_b, y_b)
    + \alpha \sum_b \log q(y_b|x_b)\Big]\Big),

an unbiased estimate of :math:`-J/(N+M)`, with :math:`\mathcal U, \mathcal L` the ELBO bounds of the Pyro
program (:meth:`M2.model` / :meth:`M2.guide`) or the IWAE bounds (:meth:`M2.iwae_bound`). An epoch is one
pass over the unlabelled points; labelled batches are drawn at random (the labelled set is ten times smaller).

:func:`train_m2_batch` trains R models as one batch (:mod:`pyrovae.inference.m2_replicates`: the loss
computed directly, held equal to the program's by the tests); model ``r`` draws its batches and noise from a
stream seeded ``seeds[r]``. :func:`train_m2` is its one-model case, except with ``lagging=True``.
``parameters="encoder"`` freezes the decoder (the encoder fit of the ground-truth initialisation, App. D);
:func:`m2_objective` is the full-data per-point :math:`-J/(N+M)` used to choose between restarts on
validation data.

``train_m2(..., lagging=True)`` is Lagging Inference Networks (He et al., ICLR 2019, Algorithm 1; a
baseline of Yacoby, Pan & Doshi-Velez (2021), Sec. 7, App. D, Fig. 18, Tables 3-4) for the M2 model, written out here for the
M2 trainer (:mod:`pyrovae.inference.lagging` is the same algorithm for the SigmaCVAE trainer). It trains one
model, with the direct loss of :mod:`pyrovae.inference.m2_replicates` and its batches and noise from one stream
seeded ``seed``, as :func:`train_m2_batch` draws them:

* *aggressive mode*, for every batch: encoder-only Adam steps on the guide's parameters
  (``ReplicatedM2.parameters_of("encoder")``: ``q(y|x)`` and the ``z`` encoders) — the first on the current batch,
  the rest on fresh random unlabelled + labelled batches — until the mean loss of a window of
  ``lagging_window`` steps (App. D's R) no longer falls below the previous window's (their public
  code's T = 0) or ``aggressive_inner`` steps are taken (:func:`pyrovae.inference.lagging.encoder_phase`, shared with the σ-CVAE's LIN); then one
  decoder-only step on the batch;
* after each epoch in aggressive mode, the mutual information :math:`I_q(x; z)`
  (:func:`pyrovae.metrics.information.aggregate_posterior_mutual_information`, He et al.'s
  estimator) of the unlabelled guide :math:`q(z|x)` (factorised guide, Eq. 13) on up to
  ``mi_points`` fixed unlabelled training points, with fixed draws; aggressive mode ends the first
  epoch it does not exceed its best value (their text model's rule);
* afterwards, ordinary joint steps (the two Adam optimisers both step, so their moments carry over).

Unlike He et al.'s code, gradients are not clipped (nor are they in the plain M2 trainer, so the
``lin`` and ``vae`` rows differ only in the schedule).
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from pyrovae.data.yacoby_m2 import SemiSupervisedDataset
from pyrovae.errors import ConfigError, DataError, TrainingDiverged
from pyrovae.inference.lagging import encoder_phase
from pyrovae.inference.m2_replicates import ReplicatedM2, m2_replicate_loss
from pyrovae.inference.replicates import ReplicaStreams
from pyrovae.metrics.information import aggregate_posterior_mutual_information
from pyrovae.models.m2 import M2, m2_elbo_loss
from pyrovae.optim import adam, select_replicates, step_replicates
from pyrovae.runs import data_digest, has_checkpoint, load_checkpoint, lock_run_dir, save_checkpoint
from pyrovae.validation import integer_at_least

__all__ = ["M2_OBJECTIVES", "M2TrainResult", "m2_objective", "m2_step_loss",
           "train_m2", "train_m2_batch", "unlabelled_mutual_information"]

M2_OBJECTIVES = ("elbo", "iwae")


@dataclass
class M2TrainResult:
    model: M2
    # one row per epoch: epoch, loss, seconds; with ``lagging`` also aggressive (during the epoch),
    # inner_steps (encoder-only steps in the epoch) and mi (measured after an aggressive epoch, else None)
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    status: str = "done"  # done | nan (the model keeps its last finite epoch's weights)


def m2_step_loss(model: M2, x_u: torch.Tensor, x_l: torch.Tensor, y_l: torch.Tensor, n_u: int, n_l: int,
                 objective: str = "elbo", gamma: float = 1.0, alpha: float = 0.0, particles: int = 10) -> torch.Tensor:
    """The per-point loss of one step (module docstring)."""
    if objective == "elbo":
        lu, ll = m2_elbo_loss(model, x_u), m2_elbo_loss(model, x_l, y_l, gamma, alpha)
    elif objective == "iwae":
        lu, ll = model.iwae_loss(x_u, particles=particles), model.iwae_loss(x_l, y_l, gamma, alpha, particles)
    else:
        raise ConfigError(f"unknown M2 objective {objective!r}; known: {', '.join(M2_OBJECTIVES)}")
    return (n_u / x_u.shape[0] * lu + n_l / x_l.shape[0] * ll) / (n_u + n_l)


def _split(model: M2, data: SemiSupervisedDataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x_l, y_l, x_u = data.split()
    if len(x_l) == 0 or len(x_u) == 0:
        raise DataError("M2 training needs both labelled and unlabelled points")
    return x_l, (y_l.reshape(-1) if model.discrete else y_l), x_u


def m2_objective(model: M2, data: SemiSupervisedDataset, objective: str = "elbo", gamma: float = 1.0,
                 alpha: float = 0.0, particles: int = 10, draws: int = 3, seed: int = 0) -> float:
    """Per-point :math:`-J/(N+M)` of Eq. 5 on all of ``data`` (ELBO or IWAE bounds), averaged over
    ``draws`` Monte Carlo evaluations with a fixed seed; lower is better."""
    x_l, y_l, x_u = _split(model, data)
    torch.manual_seed(int(seed))
    vals = [m2_step_loss(model, x_u, x_l, y_l, len(x_u), len(x_l), objective, gamma, alpha, particles).item()
            for _ in range(int(draws))]
    return sum(vals) / len(vals)


def _check_options(objective, epochs, batch_size, lr, gamma, alpha, particles, parameters, replicates: int = 1) -> None:
    if objective not in M2_OBJECTIVES:
        raise ConfigError(f"unknown M2 objective {objective!r}; known: {', '.join(M2_OBJECTIVES)}")
    for name, v in (("epochs", epochs), ("batch_size", batch_size), ("particles", particles)):
        integer_at_least(name, v)
    gammas, alphas = (torch.as_tensor(v, dtype=torch.float64).reshape(-1) for v in (gamma, alpha))
    if len(gammas) not in (1, replicates) or len(alphas) not in (1, replicates):
        raise ConfigError(f"gamma and alpha are one number, or one per model ({replicates}); got {len(gammas)} and "
                          f"{len(alphas)}")
    if not lr > 0 or not bool(torch.isfinite(gammas).all() and (gammas >= 0).all()) or not bool(
            torch.isfinite(alphas).all() and (alphas >= 0).all()):
        raise ConfigError(f"need lr > 0, gamma >= 0, alpha >= 0 (finite); got {lr}, {gamma}, {alpha}")
    if parameters not in ("all", "encoder"):
        raise ConfigError(f"parameters must be 'all' or 'encoder', got {parameters!r}")


def train_m2(model: M2, data: SemiSupervisedDataset, objective: str = "elbo", epochs: int = 100,
             batch_size: int = 100, lr: float = 1e-3, gamma: float = 1.0, alpha: float = 0.0,
             particles: int = 10, seed: int = 0, parameters: str = "all", lagging: bool = False,
             aggressive_inner: int = 100, lagging_window: int = 10, mi_points: int = 1000,
             lagging_threshold: float = 0.0) -> M2TrainResult:
    """Train ``model`` in place on ``data`` (App. D: Adam, lr 0.001, batches of 100, 100 epochs);
    ``parameters="encoder"`` keeps the decoder fixed; ``lagging=True`` trains with Lagging Inference
    Networks (He et al. 2019, Alg. 1; module docstring) with at most ``aggressive_inner`` encoder-only
    steps per batch, windows of ``lagging_window`` steps (App. D's R) whose mean must fall by more than
    ``lagging_threshold`` (App. D's T; 0 is He et al.'s code) and I(x; z) on ``mi_points`` unlabelled points.

    Without Lagging this is the one-model case of :func:`train_m2_batch` (batches and noise from a stream
    seeded ``seed``; torch's global generator is not touched); a loss or gradient that turns non-finite raises
    :class:`TrainingDiverged`."""
    _check_options(objective, epochs, batch_size, lr, gamma, alpha, particles, parameters)
    if not lagging:
        result = train_m2_batch([model], data, objective, epochs, batch_size, lr, gamma, alpha, particles, [seed],
                                parameters)[0]
        if result.status == "nan":
            raise TrainingDiverged(f"M2 loss became non-finite in epoch {len(result.history) + 1}")
        return result
    for name, v in (("aggressive_inner", aggressive_inner), ("lagging_window", lagging_window)):
        integer_at_least(name, v)
    integer_at_least("mi_points", mi_points, 2)
    if not (math.isfinite(lagging_threshold) and lagging_threshold >= 0):
        raise ConfigError(f"the Lagging threshold T must be finite and >= 0, got {lagging_threshold!r}")
    if parameters != "all":
        raise ConfigError("Lagging Inference trains encoder and decoder; it needs parameters='all'")
    if model.z_guide != "factorised":
        raise ConfigError("Lagging Inference's I(x; z) is measured on the factorised q(z|x); "
                          f"this model's unlabelled guide is {model.z_guide!r}")
    x_l, y_l, x_u = _split(model, data)
    device = next(model.parameters()).device
    return _lagging_loop(model, x_u.to(device), x_l.to(device), y_l.to(device), objective, epochs, batch_size, lr,
                         gamma, alpha, particles, seed,
                         int(aggressive_inner), int(lagging_window), int(mi_points), float(lagging_threshold))


def train_m2_batch(models: Sequence[M2], data: SemiSupervisedDataset | Sequence[SemiSupervisedDataset],
                   objective: str = "elbo", epochs: int = 100, batch_size: int = 100, lr: float = 1e-3,
                   gamma: float | Sequence[float] = 1.0, alpha: float | Sequence[float] = 0.0, particles: int = 10,
                   seeds: Sequence[int] = (0,), parameters: str = "all", run_dir: str | Path | None = None,
                   checkpoint_every: int = 10) -> list[M2TrainResult]:
    """Train ``R`` M2 models of one architecture (restarts, data-set versions, γ / α grid cells) in place,
    as one batch (:mod:`pyrovae.inference.m2_replicates`), each as :func:`train_m2` trains one.

    ``data`` is shared or one data set per model (same numbers of labelled and unlabelled points);
    ``gamma`` and ``alpha`` a number or one per model. Model ``r`` draws its mini-batches (an epoch is
    one shuffled pass over the unlabelled points, each batch with a random labelled batch) and its
    noise from a stream seeded ``seeds[r]``, so its result does not depend on the others in the batch.
    A model whose loss or gradient turns non-finite stops with status ``nan`` and keeps the weights
    of its last finite epoch; the others go on. With ``run_dir`` (locked while the batch trains) the batch keeps a
    checkpoint there every ``checkpoint_every`` epochs and at the end; a rerun resumes from it and ends as the
    uninterrupted run would, on the CPU, or trains on to a larger ``epochs``. A checkpoint of another batch (other
    options, data, seeds or starting models) or of more epochs raises :class:`~pyrovae.errors.DataError`."""
    models = list(models)
    R = len(models)
    if not R:
        raise ConfigError("need at least one M2 model to train")
    _check_options(objective, epochs, batch_size, lr, gamma, alpha, particles, parameters, R)
    datas = [data] if isinstance(data, SemiSupervisedDataset) else list(data)
    if len(datas) not in (1, R) or len(seeds) != R:
        raise ConfigError(f"{R} models need one data set or {R}, and {R} seeds; got {len(datas)} and {len(seeds)}")
    splits = [_split(models[0], d) for d in datas]
    if len({tuple(len(t) for t in split) for split in splits}) > 1:
        raise ConfigError("per-model data sets must have the same numbers of labelled and unlabelled points")
    device = next(models[0].parameters()).device
    x_l, y_l, x_u = (torch.stack([split[i] for split in splits]).to(device).expand((R,) + splits[0][i].shape)
                     for i in range(3))
    y_l = torch.stack([models[0]._check(x_l[0], y) for y in y_l])  # class indices (long) for discrete labels
    per_model = [torch.as_tensor(v, dtype=x_u.dtype, device=device).reshape(-1).expand(R) for v in (gamma, alpha)]
    stack = _stack(models, [int(s) for s in seeds], device, parameters)
    n_u, n_l, bs = x_u.shape[1], x_l.shape[1], int(batch_size)
    b_l = min(bs, n_l)
    results = [M2TrainResult(m) for m in models]
    active = list(range(R))
    optimizer = _optimizer(stack, lr)
    first_epoch, elapsed, settings = 0, 0.0, {}
    every = integer_at_least("checkpoint_every (epochs)", checkpoint_every)
    locks = contextlib.ExitStack()
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        locks.enter_context(lock_run_dir(run_dir))
        # what a checkpoint must have been trained with to be resumed here (the number of epochs may grow): the
        # options, the data, and every model's starting state (architecture, σ, p(y), initialisation), by digest
        settings = {"objective": objective, "batch_size": bs, "lr": float(lr), "particles": int(particles),
                    "parameters": parameters, "gamma": per_model[0].tolist(), "alpha": per_model[1].tolist(),
                    "data": data_digest(x_u, x_l, y_l), "seeds": [int(s) for s in seeds],
                    "models": [repr(m) + data_digest(*m.state_dict().values()) for m in models],
                    "labels": [[getattr(m, a) for a in ("y_kind", "z_guide", "temperature", "relaxed_density",
                                                        "straight_through")] for m in models]}
        if has_checkpoint(run_dir):
            stack, optimizer, active, first_epoch, elapsed = _restore(run_dir, models, results, settings, device, lr,
                                                                      int(epochs))
    start = time.perf_counter() - elapsed
    try:
        for epoch in range(first_epoch, int(epochs)):
            if not active:
                break
            orders = torch.stack([torch.randperm(n_u, generator=g, device=device) for g in stack.streams.generators])
            diverged = torch.zeros(len(active), dtype=torch.bool, device=device)
            total = torch.zeros(len(active), dtype=x_u.dtype, device=device)
            steps = 0
            for i in range(0, n_u, bs):
                iu = orders[:, i:i + bs]
                il = torch.stack([torch.randint(n_l, (b_l,), generator=g, device=device) for g in stack.streams.generators])
                keep = torch.as_tensor(active, device=device)
                stack.zero_grad(set_to_none=True)
                losses = m2_replicate_loss(stack, x_u[keep.unsqueeze(1), iu], x_l[keep.unsqueeze(1), il],
                                           y_l[keep.unsqueeze(1), il], n_u, n_l, objective, per_model[0][keep],
                                           per_model[1][keep], particles)
                diverged |= ~step_replicates(losses, optimizer)
                total += losses.detach()
                steps += 1
            seconds = time.perf_counter() - start
            diverged, totals = diverged.tolist(), total.tolist()
            for j, r in enumerate(active):
                if diverged[j]:
                    results[r].status = "nan"
                    continue
                stack.write_to(j, models[r])
                results[r].history.append({"epoch": epoch + 1, "loss": totals[j] / steps, "seconds": seconds})
            if any(diverged):
                keep = [j for j in range(len(active)) if not diverged[j]]
                active = [active[j] for j in keep]
                if keep:
                    stack, optimizer = _narrow(stack, optimizer, keep)
            if run_dir is not None and ((epoch + 1) % every == 0 or epoch + 1 == int(epochs) or not active):
                _save(run_dir, stack, optimizer, models, results, active, epoch + 1, time.perf_counter() - start, settings)
    finally:
        locks.close()
    seconds = time.perf_counter() - start
    for result in results:
        result.seconds = seconds
    return results


def _stack(models: Sequence[M2], seeds: list[int], device, parameters: str) -> ReplicatedM2:
    stack = ReplicatedM2.stack(models, ReplicaStreams(seeds, device))
    if parameters == "encoder":
        for p in stack.parameters_of("decoder"):
            p.requires_grad_(False)
    return stack


def _save(run_dir, stack, optimizer, models, results, active, epoch: int, elapsed: float, settings: dict) -> None:
    """The batch after ``epoch`` epochs: every model's weights, the stack of those still training, Adam's
    state, their streams, the histories and statuses (tensors and JSON; :func:`pyrovae.runs.save_checkpoint`)."""
    tensors = {"models": {str(r): m.state_dict() for r, m in enumerate(models)}}
    if active:
        tensors |= {"stack": stack.state_dict(), "optim": optimizer.state_dict(), "streams": stack.streams.state()}
    save_checkpoint(run_dir, tensors, {"step": epoch, "epoch": epoch, "elapsed": elapsed, "active": active, "settings": settings,
                                       "results": [{"history": r.history, "status": r.status} for r in results]})


def _restore(run_dir, models, results, settings: dict, device, lr: float, epochs: int):
    """Inverse of :func:`_save`: the models, histories and statuses in place; returns the stack of the models
    still training, its Adam, their indices, the epochs done and the seconds spent. A checkpoint of a batch with
    other settings (objective, batches, lr, S, γ, α, data, seeds, starting models) or of more epochs is refused."""
    tensors, meta = load_checkpoint(run_dir, map_location=device)
    if meta.get("settings") != settings or len(meta.get("results", [])) != len(models):
        raise DataError(f"{run_dir}/checkpoint holds a batch trained with other settings, data, seeds or starting "
                        "models; train into a new directory")
    if int(meta["epoch"]) > epochs:
        raise DataError(f"{run_dir}/checkpoint holds {meta['epoch']} epochs, more than the {epochs} asked for; "
                        "train into a new directory")
    seeds, parameters = settings["seeds"], settings["parameters"]
    for r, model in enumerate(models):
        model.load_state_dict(tensors["models"][str(r)])
    for result, saved in zip(results, meta["results"]):
        result.history, result.status = list(saved["history"]), saved["status"]
    active = [int(r) for r in meta["active"]]
    stack, optimizer = None, None
    if active:
        stack = _stack([models[r] for r in active], [seeds[r] for r in active], device, parameters)
        stack.load_state_dict(tensors["stack"])
        stack.streams.load_state(tensors["streams"])
        optimizer = _optimizer(stack, lr, tensors["optim"])
    return stack, optimizer, active, int(meta["epoch"]), float(meta["elapsed"])


def _optimizer(stack: ReplicatedM2, lr: float, state: dict | None = None) -> torch.optim.Optimizer:
    """Adam over the stack's trainable parameters, from ``state`` when given."""
    optimizer = adam([p for p in stack.parameters() if p.requires_grad], lr)
    if state is not None:
        optimizer.load_state_dict(state)
    return optimizer


def _narrow(stack: ReplicatedM2, optimizer: torch.optim.Optimizer, keep: list[int]):
    """The stack and Adam state of the replicates ``keep`` only."""
    state = select_replicates(optimizer.state_dict(), torch.as_tensor(keep, device=stack.device))
    stack = stack.select(keep)
    return stack, _optimizer(stack, optimizer.defaults["lr"], state)


def unlabelled_mutual_information(model: M2, observed: torch.Tensor, seed: int = 0) -> float:
    """He et al.'s aggregate-posterior :math:`I_q(x; z)` of the factorised unlabelled guide
    :math:`q(z|x)` (Yacoby, Pan & Doshi-Velez 2021, Eq. 13) on the points ``x``, one draw per point with a fixed ``seed``."""
    if model.z_guide != "factorised":
        raise ConfigError(f"I(x; z) needs the factorised q(z|x); the model's guide is {model.z_guide!r}")
    with torch.no_grad():
        loc, scale = model.encode_z_unlabelled(observed, None)
        return float(aggregate_posterior_mutual_information(loc, scale, seed=seed))


def _lagging_loop(model, x_u, x_l, y_l, objective, epochs, batch_size, lr, gamma, alpha, particles, seed,
                  aggressive_inner, window, mi_points, threshold) -> M2TrainResult:
    """Lagging Inference Networks for M2 (module docstring), on a one-model :class:`ReplicatedM2` whose
    stream (seeded ``seed``) gives the batches and the noise, as :func:`train_m2_batch` draws them."""
    device = x_u.device
    stack = ReplicatedM2.stack([model], ReplicaStreams([int(seed)], device))
    gen = stack.streams.generators[0]
    enc_opt, dec_opt = adam(stack.parameters_of("encoder"), lr), adam(stack.parameters_of("decoder"), lr)
    n_u, n_l, bs = len(x_u), len(x_l), int(batch_size)
    b_l = min(bs, n_l)
    x_mi = x_u[:mi_points]
    y_l = model._check(x_l, y_l)

    def step(iu, il, optimizers, epoch) -> float:
        stack.zero_grad(set_to_none=True)
        loss = m2_replicate_loss(stack, x_u[iu][None], x_l[il][None], y_l[il][None], n_u, n_l, objective, gamma,
                                 alpha, particles)
        if not bool(torch.isfinite(loss).all()):
            stack.write_to(0, model)  # the model keeps its last finite step's weights
            raise TrainingDiverged(f"M2 loss became {loss.item()} in epoch {epoch}")
        loss.sum().backward()
        for opt in optimizers:
            opt.step()
        return loss.item()

    def encoder_step(k: int, first: tuple, epoch: int) -> float:
        """Encoder-only step ``k`` of a batch: on the current batch ``first`` (k = 0), then on fresh ones."""
        if k == 0:
            return step(*first, [enc_opt], epoch)
        iu = torch.randint(n_u, (bs,), generator=gen, device=device)
        return step(iu, torch.randint(n_l, (b_l,), generator=gen, device=device), [enc_opt], epoch)

    result = M2TrainResult(model)
    aggressive, best_mi = True, -math.inf
    start = time.perf_counter()
    for epoch in range(int(epochs)):
        order = torch.randperm(n_u, generator=gen, device=device)
        total, steps, inner = 0.0, 0, 0
        was_aggressive = aggressive
        for i in range(0, n_u, bs):
            iu, il = order[i:i + bs], torch.randint(n_l, (b_l,), generator=gen, device=device)
            if aggressive:
                inner += encoder_phase(functools.partial(encoder_step, first=(iu, il), epoch=epoch),
                                       aggressive_inner, window, threshold)
                total += step(iu, il, [dec_opt], epoch)
            else:
                total += step(iu, il, [enc_opt, dec_opt], epoch)
            steps += 1
        mi = None
        if aggressive:
            stack.write_to(0, model)
            mi = unlabelled_mutual_information(model, x_mi)
            if mi > best_mi:
                best_mi = mi
            else:
                aggressive = False
        result.history.append({"epoch": epoch + 1, "loss": total / steps, "seconds": time.perf_counter() - start,
                               "aggressive": was_aggressive, "inner_steps": inner, "mi": mi})
    stack.write_to(0, model)
    result.seconds = time.perf_counter() - start
    return result
