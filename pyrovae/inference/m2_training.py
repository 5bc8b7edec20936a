r"""The trainer of the M2 model (Yacoby, Pan & Doshi-Velez 2021, Eq. 5): Adam over the models' parameters.

Every step takes one unlabelled batch and one labelled batch and minimises

.. math::
    -\frac{1}{N+M}\Big(\frac{N}{B_u}\sum_{b} \mathcal U(x_b) + \frac{M}{B_l}\Big[\gamma \sum_{b}\mathcal L(x_b, y_b)
    + \alpha \sum_b \log q(y_b|x_b)\Big]\Big),

an unbiased estimate of :math:`-J/(N+M)`, with :math:`\mathcal U, \mathcal L` the ELBO bounds of the Pyro
program (:meth:`M2.model` / :meth:`M2.guide`) or the IWAE bounds (:meth:`M2.iwae_bound`). An epoch is one
pass over the unlabelled points; labelled batches are drawn at random (the labelled set is ten times smaller).

:class:`M2Trainer` trains R models as one batch on the training engine (:mod:`pyrovae.inference.engine`:
its loop, Adam, NaN policy, checkpoints and progress; a block here is one epoch), with the loss computed
directly (:mod:`pyrovae.inference.m2_replicates`, held equal to the program's by the tests); model ``r``
draws its batches and noise from a stream seeded ``seeds[r]``. :func:`train_m2_batch` and :func:`train_m2`
(one model) call it. ``parameters="encoder"`` freezes the decoder (the encoder fit of the ground-truth
initialisation, App. D); :func:`m2_objective` is the full-data per-point :math:`-J/(N+M)` used to choose
between restarts on validation data.

``train_m2(..., lagging=True)`` is Lagging Inference Networks (He et al., ICLR 2019, Algorithm 1; a
baseline of Yacoby, Pan & Doshi-Velez (2021), Sec. 7, App. D, Fig. 18, Tables 3-4) for the M2 model: the
plug-in :class:`M2Lagging` of :class:`M2Trainer` (:mod:`pyrovae.inference.lagging` is the same algorithm
for the σ-CVAE's trainer). Its models train as one batch, each with its own mode, inner loops and I(x; z),
with its batches and noise from its own stream as an ordinary epoch draws them; a model whose inner loop
has ended, or that is past aggressive mode, sits the others' steps out (the engine's masked steps: its
weights, Adam moments and stream stay as they were), so each model of a batch is its run alone:

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

Each model's mode and best I(x; z), and both optimisers (the engine's plug-in optimisers, narrowed as models
leave the batch), are in the engine's checkpoints, so it resumes like any run.

Unlike He et al.'s code, gradients are not clipped (nor are they in the plain M2 trainer, so the
``lin`` and ``vae`` rows differ only in the schedule).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from pyrovae.data.yacoby_m2 import SemiSupervisedDataset
from pyrovae.errors import ConfigError, DataError, TrainingDiverged
from pyrovae.inference.engine import ReplicateEngine
from pyrovae.inference.lagging import decoder_or_joint_step, encoder_phase
from pyrovae.inference.m2_replicates import ReplicatedM2, m2_replicate_loss
from pyrovae.inference.replicates import ReplicaStreams
from pyrovae.metrics.information import aggregate_posterior_mutual_information
from pyrovae.models.m2 import M2, m2_elbo_loss
from pyrovae.runs import data_digest, lock_run_dir
from pyrovae.validation import integer_at_least

__all__ = ["M2_OBJECTIVES", "M2Lagging", "M2TrainResult", "M2Trainer", "m2_objective", "m2_step_loss",
           "starting_digests", "train_m2", "train_m2_batch", "unlabelled_mutual_information"]

M2_OBJECTIVES = ("elbo", "iwae")


@dataclass
class M2TrainResult:
    model: M2
    # one row per epoch: epoch, loss, seconds; with ``lagging`` also aggressive (during the epoch),
    # inner_steps (encoder-only steps in the epoch) and mi (measured after an aggressive epoch, else None)
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    status: str = "done"  # done | nan (the model keeps its last finite epoch's weights)
    resumed: bool = False  # trained on from a checkpoint


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
             lagging_threshold: float = 0.0, run_dir: str | Path | None = None, checkpoint_every: int = 10,
             progress: bool = False) -> M2TrainResult:
    """Train ``model`` in place on ``data`` (App. D: Adam, lr 0.001, batches of 100, 100 epochs);
    ``parameters="encoder"`` keeps the decoder fixed; ``lagging=True`` trains with Lagging Inference
    Networks (He et al. 2019, Alg. 1; module docstring) with at most ``aggressive_inner`` encoder-only
    steps per batch, windows of ``lagging_window`` steps (App. D's R) whose mean must fall by more than
    ``lagging_threshold`` (App. D's T; 0 is He et al.'s code) and I(x; z) on ``mi_points`` unlabelled points.

    The one-model case of :class:`M2Trainer` (batches and noise from a stream seeded ``seed``; torch's global
    generator is not touched; with ``run_dir``, a checkpoint there every ``checkpoint_every`` epochs, from which a
    rerun resumes); a loss or gradient that turns non-finite raises :class:`TrainingDiverged` (the model keeps
    the weights of its last finite epoch)."""
    plugin = M2Lagging(aggressive_inner, lagging_window, mi_points, lagging_threshold) if lagging else None
    result = M2Trainer([model], data, objective, epochs, batch_size, lr, gamma, alpha, particles, [seed], parameters,
                       run_dir=run_dir, checkpoint_every=checkpoint_every, lagging=plugin, progress=progress).run()[0]
    if result.status == "nan":
        raise TrainingDiverged(f"M2 loss became non-finite in epoch {len(result.history) + 1}")
    return result


def train_m2_batch(models: Sequence[M2], data: SemiSupervisedDataset | Sequence[SemiSupervisedDataset],
                   objective: str = "elbo", epochs: int = 100, batch_size: int = 100, lr: float = 1e-3,
                   gamma: float | Sequence[float] = 1.0, alpha: float | Sequence[float] = 0.0, particles: int = 10,
                   seeds: Sequence[int] = (0,), parameters: str = "all", lagging: bool = False,
                   aggressive_inner: int = 100, lagging_window: int = 10, mi_points: int = 1000,
                   lagging_threshold: float = 0.0, run_dir: str | Path | None = None, checkpoint_every: int = 10,
                   progress: bool = False) -> list[M2TrainResult]:
    """Train ``R`` M2 models of one architecture (restarts, data-set versions, γ / α grid cells) in place,
    as one batch (:class:`M2Trainer`), each as :func:`train_m2` trains one (``lagging`` and its settings as
    there); ``run_dir`` is locked while the batch trains. Returns one :class:`M2TrainResult` per model."""
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
    plugin = M2Lagging(aggressive_inner, lagging_window, mi_points, lagging_threshold) if lagging else None
    with lock_run_dir(run_dir) if run_dir is not None else contextlib.nullcontext():
        return M2Trainer(models, data, objective, epochs, batch_size, lr, gamma, alpha, particles, seeds, parameters,
                         run_dir=run_dir, checkpoint_every=checkpoint_every, lagging=plugin, progress=progress).run()


@dataclass
class M2Lagging:
    """Lagging Inference Networks for M2 (module docstring) as a plug-in of :class:`M2Trainer`: its settings
    and each model's state (mode, best I(x; z)), one entry per model of the batch (:meth:`start`)."""

    max_inner: int = 100
    window: int = 10
    mi_points: int = 1000
    threshold: float = 0.0
    aggressive: list[bool] = field(default_factory=list)
    best_mi: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("max_inner", "window"):
            setattr(self, name, integer_at_least(f"Lagging's {name}", getattr(self, name)))
        self.mi_points = integer_at_least("mi_points", self.mi_points, 2)
        if not (math.isfinite(self.threshold) and self.threshold >= 0):
            raise ConfigError(f"the Lagging threshold T must be finite and >= 0, got {self.threshold!r}")

    def start(self, models: int) -> None:
        """Every one of ``models`` models in aggressive mode, with no I(x; z) measured yet."""
        self.aggressive, self.best_mi = [True] * models, [-math.inf] * models

    def end_epoch(self, r: int, mi: float) -> None:
        """Model ``r``'s I(x; z) after an aggressive epoch: aggressive mode ends the first epoch it does not exceed
        the model's best."""
        if mi > self.best_mi[r]:
            self.best_mi[r] = mi
        else:
            self.aggressive[r] = False

    def state_dict(self) -> dict:
        return {"aggressive": list(self.aggressive),
                "best_mi": [v if math.isfinite(v) else None for v in self.best_mi]}

    def load_state_dict(self, state: dict) -> None:
        self.aggressive = [bool(v) for v in state["aggressive"]]
        self.best_mi = [-math.inf if v is None else float(v) for v in state["best_mi"]]


class M2Trainer(ReplicateEngine):
    """``R`` M2 models of one architecture on the training engine (:mod:`pyrovae.inference.engine`); a block is
    one epoch.

    ``data`` is shared or one data set per model (same numbers of labelled and unlabelled points); ``gamma``
    and ``alpha`` a number or one per model. Model ``r`` draws its mini-batches (an epoch is one shuffled pass
    over the unlabelled points, each batch with a random labelled batch) and its noise from a stream seeded
    ``seeds[r]``, so its result does not depend on the others in the batch. A model whose loss or gradient
    turns non-finite stops with status ``nan`` and keeps the weights of its last finite epoch; the others go
    on. With ``run_dir`` the batch keeps a checkpoint there every ``checkpoint_every`` epochs and at the end; a
    rerun resumes from it and ends as the uninterrupted run would, on the CPU, or trains on to a larger
    ``epochs``. A checkpoint of another batch (other options, data, seeds or starting models) or of more epochs
    raises :class:`~pyrovae.errors.DataError`. ``lagging`` trains every model with Lagging Inference Networks."""

    progress_label = "M2 epochs"

    def __init__(self, models: Sequence[M2], data: SemiSupervisedDataset | Sequence[SemiSupervisedDataset],
                 objective: str = "elbo", epochs: int = 100, batch_size: int = 100, lr: float = 1e-3,
                 gamma: float | Sequence[float] = 1.0, alpha: float | Sequence[float] = 0.0, particles: int = 10,
                 seeds: Sequence[int] = (0,), parameters: str = "all", run_dir: str | Path | None = None,
                 checkpoint_every: int = 10, lagging: M2Lagging | None = None, progress: bool = False):
        models = list(models)
        R = len(models)
        if not R:
            raise ConfigError("need at least one M2 model to train")
        _check_options(objective, epochs, batch_size, lr, gamma, alpha, particles, parameters, R)
        datas = [data] if isinstance(data, SemiSupervisedDataset) else list(data)
        if len(datas) not in (1, R) or len(seeds) != R:
            raise ConfigError(f"{R} models need one data set or {R}, and {R} seeds; got {len(datas)} and {len(seeds)}")
        if lagging is not None and (models[0].z_guide != "factorised" or parameters != "all"):
            raise ConfigError("Lagging Inference trains encoder and decoder (parameters='all') and measures I(x; z) on "
                              f"the factorised q(z|x); got parameters={parameters!r} and the guide {models[0].z_guide!r}")
        splits = [_split(models[0], d) for d in datas]
        if len({tuple(len(t) for t in split) for split in splits}) > 1:
            raise ConfigError("per-model data sets must have the same numbers of labelled and unlabelled points")
        device = next(models[0].parameters()).device
        self.x_l, y_l, self.x_u = (torch.stack([split[i] for split in splits]).to(device).expand((R,) + splits[0][i].shape)
                                   for i in range(3))
        self.y_l = torch.stack([models[0]._check(self.x_l[0], y) for y in y_l])  # class indices (long) for discrete labels
        self.gamma, self.alpha = (torch.as_tensor(v, dtype=self.x_u.dtype, device=device).reshape(-1).expand(R)
                                  for v in (gamma, alpha))
        self.objective, self.epochs, self.batch_size, self.particles = objective, int(epochs), int(batch_size), int(particles)
        self.parameters, self.lagging = parameters, lagging
        if lagging is not None:
            lagging.start(R)
        every = integer_at_least("checkpoint_every (epochs)", checkpoint_every)
        super().__init__(models, seeds, device, lr=lr, checkpoint_every=every, run_dir=run_dir, progress=progress)
        # what a checkpoint must have been trained with to be resumed here (the number of epochs may grow): the
        # options, the data, and every model's starting state (architecture, σ, p(y), initialisation), by digest
        self.fingerprint = {} if run_dir is None else {
            "objective": objective, "batch_size": self.batch_size, "lr": float(lr), "particles": self.particles,
            "parameters": parameters, "gamma": self.gamma.tolist(), "alpha": self.alpha.tolist(),
            "data": data_digest(self.x_u, self.x_l, self.y_l), "seeds": self.seeds,
            "models": starting_digests(models),
            "labels": [[getattr(m, a) for a in ("y_kind", "z_guide", "temperature", "relaxed_density", "straight_through")]
                       for m in models],
            "lagging": None if lagging is None else [lagging.max_inner, lagging.window, lagging.mi_points, lagging.threshold]}
        self.start()

    # -- the engine's hooks ---------------------------------------------------------------
    def _stack(self, models: Sequence[M2], streams: ReplicaStreams) -> ReplicatedM2:
        stack = ReplicatedM2.stack(models, streams)
        if self.parameters == "encoder":
            for p in stack.parameters_of("decoder"):
                p.requires_grad_(False)
        return stack

    def _on_activate(self) -> None:
        self._rows = torch.as_tensor(self.active, device=self.stack.device).unsqueeze(1)
        if self.lagging is not None:
            self.encoder_optim = self.plugin_optimizer("lagging-encoder", self.stack.parameters_of("encoder"))
            self.decoder_optim = self.plugin_optimizer("lagging-decoder", self.stack.parameters_of("decoder"))

    def _capped(self) -> bool:
        return self.state.block >= self.epochs

    def _progress_units(self) -> tuple[int, int]:
        return self.state.block, self.epochs

    def _meta_state(self) -> dict:
        return {"settings": self.fingerprint, "lagging": None if self.lagging is None else self.lagging.state_dict()}

    def _check_checkpoint(self, meta: dict) -> None:
        if meta.get("settings") != self.fingerprint:
            raise DataError(f"{self.run_dir}/checkpoint holds a batch trained with other settings, data, seeds or "
                            "starting models; train into a new directory")
        if int(meta["block"]) > self.epochs:
            raise DataError(f"{self.run_dir}/checkpoint holds {meta['block']} epochs, more than the {self.epochs} "
                            "asked for; train into a new directory")
        if self.lagging is not None and not isinstance(meta["lagging"]["aggressive"], list):
            raise DataError(f"{self.run_dir}/checkpoint was written by an older version of M2's Lagging Inference "
                            "Networks (one model, its own optimisers); train into a new directory")

    def _load_state(self, tensors: dict, meta: dict) -> None:
        if self.lagging is not None:
            self.lagging.load_state_dict(meta["lagging"])

    def _result(self, r: int, resumed: bool) -> M2TrainResult:
        rep = self.replicas[r]
        return M2TrainResult(self.models[r], list(rep.rows), self.state.elapsed, "nan" if rep.status == "nan" else "done",
                             resumed)

    # -- one epoch ------------------------------------------------------------------------
    def _loss(self, iu: torch.Tensor, il: torch.Tensor) -> torch.Tensor:
        """The step losses ``(R,)`` of the replicates still training on their unlabelled batches ``iu`` and
        labelled batches ``il`` (indices, one row per replicate)."""
        rows, keep = self._rows, self._rows.squeeze(1)
        return m2_replicate_loss(self.stack, self.x_u[rows, iu], self.x_l[rows, il], self.y_l[rows, il],
                                 self.x_u.shape[1], self.x_l.shape[1], self.objective, self.gamma[keep],
                                 self.alpha[keep], self.particles)

    def _block(self, start: float) -> None:
        s = self.state
        if self.lagging is None:
            total, steps = self._epoch()
        else:
            was_aggressive = [self.lagging.aggressive[r] for r in self.active]
            total, steps, inner = self._lagging_epoch()
        s.block += 1
        s.step += steps
        diverged = self._diverged.tolist()
        totals = total.tolist()
        for j, r in enumerate(self.active):
            if diverged[j]:
                self._finish(j, "nan")  # the model keeps its last finite epoch's weights
                continue
            self.stack.write_to(j, self.models[r])
            extra = {}
            if self.lagging is not None:
                extra = {"aggressive": was_aggressive[j], "inner_steps": inner[j], "mi": None}
                if was_aggressive[j]:
                    extra["mi"] = unlabelled_mutual_information(self.models[r], self.x_u[r, :self.lagging.mi_points])
                    self.lagging.end_epoch(r, extra["mi"])
            s.elapsed = time.perf_counter() - start  # the epoch's I(x; z) counts in its time
            self.replicas[r].rows.append({"epoch": s.block, "loss": totals[j] / steps, "seconds": s.elapsed} | extra)
        s.elapsed = time.perf_counter() - start

    def _epoch(self) -> tuple[torch.Tensor, int]:
        """One pass over the unlabelled points in batches, each with a random labelled batch, per replicate from
        its own stream; returns the summed step losses and the number of steps."""
        streams = self.stack.streams
        n_u, n_l, bs = self.x_u.shape[1], self.x_l.shape[1], self.batch_size
        orders = streams.permutations(n_u)
        total = torch.zeros(len(self.active), dtype=self.x_u.dtype, device=self.stack.device)
        steps = 0
        for i in range(0, n_u, bs):
            iu = orders[:, i:i + bs]
            il = streams.randint(n_l, min(bs, n_l))
            total += self.step(lambda: self._loss(iu, il))
            steps += 1
        return total, steps

    def _lagging_epoch(self) -> tuple[torch.Tensor, int, list[int]]:
        """One epoch of Lagging Inference Networks (module docstring) of every model still training; returns the
        summed step losses, the number of steps and each model's number of encoder-only steps."""
        streams, device = self.stack.streams, self.stack.device
        n_u, n_l, bs = self.x_u.shape[1], self.x_l.shape[1], self.batch_size
        b_l = min(bs, n_l)
        lag = self.lagging
        aggressive = [lag.aggressive[r] for r in self.active]
        mask = torch.tensor(aggressive, device=device)

        def encoder_step(k: int, running: list[bool], first: tuple) -> torch.Tensor:
            """Encoder-only step ``k`` of a batch for the models ``running``: on the current batch ``first``
            (k = 0), then on fresh ones."""
            live = torch.tensor(running, device=device)
            if k == 0:
                iu, il = first
            else:
                with streams.only(live):
                    iu, il = streams.randint(n_u, bs), streams.randint(n_l, b_l)
            return self.step(lambda: self._loss(iu, il), self.encoder_optim, mask=live)

        orders = streams.permutations(n_u)
        total = torch.zeros(len(self.active), dtype=self.x_u.dtype, device=device)
        steps, inner = 0, [0] * len(self.active)
        for i in range(0, n_u, bs):
            iu, il = orders[:, i:i + bs], streams.randint(n_l, b_l)
            if any(aggressive):
                first = (iu, il)
                looping = [a and not d for a, d in zip(aggressive, self._diverged.tolist())]  # not a diverged model
                taken = encoder_phase(lambda k, running: encoder_step(k, running, first), looping, lag.max_inner,
                                      lag.window, lag.threshold)
                inner = [a + b for a, b in zip(inner, taken)]
            batch_step = lambda optimizers, only: self.step(lambda: self._loss(iu, il), optimizers, mask=only)
            total += decoder_or_joint_step(batch_step, mask, self.encoder_optim, self.decoder_optim)
            steps += 1
            if bool(self._diverged.all()):
                break
        return total, steps, inner


def starting_digests(models: Sequence[M2]) -> list[str]:
    """What identifies each model's starting state in a batch's checkpoint: its architecture and its weights."""
    return [repr(m) + data_digest(*m.state_dict().values()) for m in models]


def unlabelled_mutual_information(model: M2, observed: torch.Tensor, seed: int = 0) -> float:
    """He et al.'s aggregate-posterior :math:`I_q(x; z)` of the factorised unlabelled guide
    :math:`q(z|x)` (Yacoby, Pan & Doshi-Velez 2021, Eq. 13) on the points ``x``, one draw per point with a fixed ``seed``."""
    if model.z_guide != "factorised":
        raise ConfigError(f"I(x; z) needs the factorised q(z|x); the model's guide is {model.z_guide!r}")
    with torch.no_grad():
        loc, scale = model.encode_z_unlabelled(observed, None)
        return float(aggregate_posterior_mutual_information(loc, scale, seed=seed))
