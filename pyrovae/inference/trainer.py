"""The σ-CVAE family on the training engine: blocks of ``K`` SVI steps, then the algorithm's move.

The engine (:mod:`pyrovae.inference.engine`) owns the loop, the optimiser (Adam, Liu & Wang's lr = 0.005),
checkpoints and NaN handling; this trainer says what a block is and records the history; an
:class:`~pyrovae.inference.algorithms.Algorithm` decides what happens between blocks. It trains ``R``
replicates (seeds, grid cells) of one architecture as one batched Pyro program
(:mod:`pyrovae.inference.replicates`); a single run is R = 1. No global parameter store: a plain torch
optimiser over the stacked weights.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch

from pyrovae.data.base import Dataset
from pyrovae.errors import ConfigError, DataError
from pyrovae.inference.algorithms import Algorithm, BlockStats
from pyrovae.inference.engine import ReplicateEngine
from pyrovae.inference.objectives import check_objective, make_elbo
from pyrovae.inference.replicates import ReplicaStreams, ReplicatedCVAE, replicate_loss
from pyrovae.models.cvae import SigmaCVAE, require_gaussian_program
from pyrovae.runs import write_text
from pyrovae.validation import MAX_UNITS, integer_at_least, real, text

__all__ = ["TrainSettings", "TrainResult", "Trainer", "HISTORY_COLUMNS"]

CONVERGENCE = ("block-mean", "last-step")
HISTORY_COLUMNS = ["block", "step", "time", "beta", "loss", "recon", "kl", "neg_elbo", "sigma", "event", "phi"]


@dataclass
class TrainSettings:
    """Loop settings shared by every algorithm.

    ``K`` is the number of gradient steps per block (the inner steps of Liu & Wang (2025));
    ``tol`` the convergence threshold on the change of the mean per-sample loss between
    blocks; ``max_steps`` a hard cap; ``batch_size=None`` means full batch (App. F).

    ``threads`` is torch's CPU thread count while training (default 1: one thread per process is
    robust when other work shares the cores; a busy 2-core machine ran a step 50× slower with two
    threads than with one; raise it on an idle machine).

    ``trainable`` names the parts the optimiser moves (the rest stays as it is: e.g. ``("encoder",)``
    fits the inference network to a fixed decoder: Yacoby, Pan & Doshi-Velez (2021) Sec. 4, and LiBI's
    step 2 (Yacoby, Pan & Doshi-Velez 2020)).

    ``convergence`` says which loss is compared between blocks: ``"block-mean"`` (default)
    the average over the block's ``K`` steps, ``"last-step"`` the last step's loss as the
    authors' public code does. The last step's loss is a one-sample estimate whose noise
    (≈ 0.01 per point on two-moon) dwarfs the 0.001 threshold, so it often declares
    convergence while σ is still falling; averaging over the block cuts that noise by √K
    (see docs/RESULTS.md).
    """

    K: int = 25
    lr: float = 0.005
    max_steps: int = 100_000
    tol: float = 1e-3
    batch_size: int | None = None
    elbo: str = "trace"
    particles: int = 1
    checkpoint_every: int = 100
    clip_norm: float | None = None
    convergence: str = "block-mean"
    trainable: tuple[str, ...] = ("encoder", "decoder", "noise")
    threads: int = 1

    def __post_init__(self) -> None:
        self.K = integer_at_least("K (inner steps per block)", self.K)
        self.lr = real("the learning rate", self.lr, 0.0, strict=True)
        self.max_steps = integer_at_least("max_steps", self.max_steps)
        self.tol = real("the convergence tolerance", self.tol, 0.0)
        if self.batch_size is not None:
            self.batch_size = integer_at_least("batch_size", self.batch_size)
        self.particles = integer_at_least("particles", self.particles)
        self.checkpoint_every = integer_at_least("checkpoint_every (blocks)", self.checkpoint_every)
        if self.clip_norm is not None:
            self.clip_norm = real("clip_norm", self.clip_norm, 0.0, strict=True)
        self.threads = integer_at_least("threads", self.threads, 1, MAX_UNITS)
        self.trainable = tuple(self.trainable)
        if not self.trainable or not set(self.trainable) <= {"encoder", "decoder", "noise"}:
            raise ConfigError(f"trainable parts must be among encoder, decoder, noise; got {self.trainable}")
        self.convergence = text("convergence", self.convergence, CONVERGENCE, "convergence rule")


@dataclass
class TrainResult:
    model: SigmaCVAE
    history: pd.DataFrame
    metrics: dict[str, Any]
    status: str  # converged | collapsed | max_steps | nan
    run_dir: Path | None = None


class Trainer(ReplicateEngine):
    """Train one model — or ``R`` replicates of one architecture as one batched program.

    ``model`` is a :class:`~pyrovae.models.cvae.SigmaCVAE` or a sequence of them (the
    replicates); ``data`` one :class:`~pyrovae.data.base.Dataset` shared by all, or one per
    replicate (same size); ``algorithm`` one object (copied per replicate) or one per replicate.
    Replicate ``r`` draws all its noise from a generator seeded with ``seeds[r]`` (default: seeds
    drawn from torch's global generator, so ``pyro.set_rng_seed`` fixes a run), and its result
    does not depend on which other replicates share the batch (:mod:`.replicates`).

    Everything decided per run is decided per replicate: convergence (a finished replicate leaves
    the batch, the others go on), the algorithm's moves (analytic σ, calibration, β schedule),
    NaN (a diverged replicate stops with its last good block's weights; the others finish),
    history and final metrics. :meth:`run` returns a :class:`TrainResult`, or a list of them
    when ``model`` was a sequence.

    If ``run_dir`` already holds a checkpoint, :meth:`run` resumes from it and ends in the same
    state as an uninterrupted run (CPU).
    """

    def __init__(
        self,
        model: SigmaCVAE | Sequence[SigmaCVAE],
        data: Dataset | Sequence[Dataset],
        algorithm: Algorithm | Sequence[Algorithm],
        settings: TrainSettings | None = None,
        run_dir: str | Path | None = None,
        progress: bool = False,
        seeds: Sequence[int] | None = None,
    ):
        self.settings = settings or TrainSettings()
        self.single = isinstance(model, SigmaCVAE)
        self.models = [model] if self.single else list(model)
        R = len(self.models)
        if R < 1:
            raise ConfigError("need at least one model to train")
        self.algorithms = _per_replicate(algorithm, R, "algorithm")
        datas = [data] if isinstance(data, Dataset) else list(data)
        if len(datas) not in (1, R):
            raise ConfigError(f"{len(datas)} data sets for {R} replicates: give one shared data set or one per replicate")
        for m, alg in zip(self.models, self.algorithms):
            require_gaussian_program(m, "the training engine (and every σ update in it)")
            alg.check_model(m)
            check_objective(self.settings.elbo, anneals=alg.name in ("monotonic", "cyclical", "annealed"))
        for d in datas:
            if d.condition_dim != self.models[0].condition_dim or d.observed_dim != self.models[0].observed_dim:
                raise ConfigError(f"model expects {self.models[0].condition_dim} input and {self.models[0].observed_dim} response "
                                  f"columns; data has {d.condition_dim} and {d.observed_dim}")
        if len({len(d) for d in datas}) > 1:
            raise ConfigError("per-replicate data sets must have the same number of points")
        device = next(self.models[0].parameters()).device
        if device.type != "cpu" and any(getattr(d, "resample", None) is not None and not getattr(d, "any_device", False)
                                        for d in datas):
            raise ConfigError("this stream data set (fresh points every step) trains on the CPU: its sampler draws "
                              "on the CPU only (StreamDataset.any_device)")
        self.datas = [d.to(device) for d in datas]
        self.data = self.datas[0]
        make_elbo(self.settings.elbo, self.settings.particles)  # refuses an unknown name or particle count
        cfg = self.settings
        super().__init__(self.models, seeds, device, lr=cfg.lr, checkpoint_every=cfg.checkpoint_every,
                         clip_norm=cfg.clip_norm, threads=cfg.threads, run_dir=run_dir, progress=progress)
        self.start()

    # -- the engine's hooks ---------------------------------------------------------
    def _stack(self, models: Sequence[SigmaCVAE], streams: ReplicaStreams) -> ReplicatedCVAE:
        return ReplicatedCVAE.stack(models, streams)

    def _trainable(self, stack: ReplicatedCVAE) -> list[torch.nn.Parameter]:
        return [p for part in self.settings.trainable for p in stack.parameters_of(part)]

    def _on_activate(self) -> None:
        if len(self.datas) == 1:
            self.condition, self.observed = self.data.condition, self.data.observed
        else:
            self.condition = torch.stack([self.datas[r].condition for r in self.active])
            self.observed = torch.stack([self.datas[r].observed for r in self.active])
        for r in self.active:  # algorithms that build optimisers build them over the new stack
            self.algorithms[r].setup(self)

    def _capped(self) -> bool:
        return self.state.step >= self.settings.max_steps

    def _progress_units(self) -> tuple[int, int]:
        return self.state.step, self.settings.max_steps

    def _tensor_state(self) -> dict:
        return {"algorithm": {str(r): alg.tensor_state_dict() for r, alg in enumerate(self.algorithms)}}

    def _replica_state(self, r: int) -> dict:
        return {"algorithm": self.algorithms[r].state_dict()}

    def _check_checkpoint(self, meta: dict) -> None:
        if any("algorithm" not in saved for saved in meta["replicas"]):
            raise DataError(f"{self.run_dir}/checkpoint was written by another version; train into a new directory")
        for alg, saved in zip(self.algorithms, meta["replicas"]):
            alg.check_state(saved["algorithm"])

    def _load_state(self, tensors: dict, meta: dict) -> None:
        for rep in self.replicas:  # JSON keeps a NaN of the history as null
            rep.rows = [{k: (math.nan if v is None else v) for k, v in row.items()} for row in rep.rows]
        for r, alg in enumerate(self.algorithms):
            alg.load_state_dict(meta["replicas"][r]["algorithm"])
            if r in self.active:  # a finished replicate's plug-in has nothing left to step
                alg.load_tensor_state_dict(tensors["algorithm"].get(str(r), {}))

    def data_of(self, r: int) -> Dataset:
        """Replicate ``r``'s data: its own data set, or the one all replicates share."""
        return self.datas[r] if len(self.datas) > 1 else self.data

    def parameters(self, part: str) -> list[torch.nn.Parameter]:
        """The stacked parameters of ``part`` (``encoder``, ``decoder`` or ``noise``)."""
        return self.stack.parameters_of(part)

    @property
    def model(self) -> SigmaCVAE:
        """The first replicate still training (synced with the weights being trained), or, once
        all have stopped, the first replicate's final model."""
        if not self.active:
            return self.models[0]
        self.stack.write_to(0, self.models[self.active[0]])
        return self.models[self.active[0]]

    # -- one gradient step --------------------------------------------------------
    def block_steps(self) -> int:
        """Steps in the next block: ``K``, or fewer where ``max_steps`` ends the run."""
        return min(self.settings.K, self.settings.max_steps - self.state.step)

    def batch(self, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The full data, or a random mini-batch of ``batch_size`` points per replicate (from its
        own stream); a data set with a ``resample(n, generator)`` method (a stream, e.g.
        :class:`~pyrovae.data.stream.StreamDataset`) gives each replicate a fresh draw every step
        instead, from the replicate's generator. With ``mask`` ``(R,)`` only those replicates draw
        (the others' rows are placeholders for a masked :meth:`step`)."""
        with self.stack.streams.only(mask):
            return self._draw_batch()

    def _draw_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        n, b = len(self.data), self.settings.batch_size
        if getattr(self.data, "resample", None) is not None:
            sources = [self.data_of(r) for r in self.active]
            draws = [d.resample(n if b is None else b, g) for d, g in zip(sources, self.stack.streams.generators)]
            return torch.stack([condition for condition, _ in draws]), torch.stack([observed for _, observed in draws])
        if b is None or b >= n:
            return self.condition, self.observed
        idx = self.stack.streams.batch_indices(n, b)
        if self.observed.dim() == 2:
            return self.condition[idx], self.observed[idx]
        rows = torch.arange(idx.shape[0], device=idx.device).unsqueeze(1)
        return self.condition[rows, idx], self.observed[rows, idx]

    def step(self, condition: torch.Tensor, observed: torch.Tensor, beta: torch.Tensor | float | None = None,
             optimizer: torch.optim.Optimizer | None = None, clip_norm: float | None = None,
             mask: torch.Tensor | None = None) -> torch.Tensor:
        """One optimiser step of every replicate still training; returns their mean per-sample
        losses ``(R,)``, NaN for a replicate whose loss or gradient is not finite (its gradient is
        zeroed, it is stopped at the end of the block and keeps its last good block's weights; when
        no replicate is finite, nothing is applied).

        ``optimizer`` defaults to the joint Adam; an algorithm may pass its own over a subset
        of the parameters (Lagging Inference Networks' encoder-only and decoder-only steps).
        ``clip_norm`` overrides the settings' gradient clipping (each replicate's own norm). ``mask``
        ``(R,)``: only those replicates step; the others stay as they were and their returned losses are
        placeholders (:meth:`~pyrovae.inference.engine.ReplicateEngine.step`).
        """
        beta = _beta_tensor(beta, len(self.active), self.stack.device)
        losses = super().step(lambda: replicate_loss(self.stack, condition, observed, beta, self.settings.elbo,
                                                     self.settings.particles), optimizer, clip_norm, mask)
        return losses / condition.shape[-2]

    # -- the loop -----------------------------------------------------------------
    def run(self) -> TrainResult | list[TrainResult]:
        """Train until every replicate has stopped (its algorithm's decision, ``max_steps``, or NaN)."""
        results = super().run()
        return results[0] if self.single else results

    def _block(self, start: float) -> None:
        s, cfg = self.state, self.settings
        algs = [self.algorithms[r] for r in self.active]
        beta = torch.tensor([alg.beta(s.block) for alg in algs], dtype=self.observed.dtype, device=self.stack.device)
        losses = algs[0].run_block(self, beta)
        losses = torch.stack([torch.as_tensor(v, dtype=self.observed.dtype, device=beta.device).reshape(-1) for v in losses])
        block_loss = losses[-1] if cfg.convergence == "last-step" else losses.mean(0)
        terms = self.stack.terms(self.condition, self.observed)
        recon, kl = terms["recon"].mean(-1), terms["kl"].mean(-1)
        mse = terms["sq_err"].mean(-1) / self.stack.observed_dim
        good = ~self._diverged & torch.isfinite(torch.stack([block_loss, recon, kl, mse])).all(0)
        s.elapsed = time.perf_counter() - start
        values = torch.stack([block_loss, recon, kl, mse, terms["log_sigma"], beta]).tolist()
        for i, r in enumerate(self.active):
            if not bool(good[i]):
                self._finish(i, "nan")  # the model keeps its last good block's weights (synced then)
                continue
            loss, rec, k, m, log_sigma, b = (v[i] for v in values)
            rep, model, alg = self.replicas[r], self.models[r], self.algorithms[r]
            converged = rep.prev_loss is not None and abs(loss - rep.prev_loss) <= cfg.tol
            self.stack.write_to(i, model)
            model.noise.remember(log_sigma)
            decision = alg.after_block(model, BlockStats(s.block, loss, rec, k, m, converged,
                                                         self.stack.streams.generators[i]))
            self.stack.read_noise_from(i, model)
            rep.prev_loss = loss
            s.elapsed = time.perf_counter() - start  # after the decision: a final polish counts in the run's time
            rep.rows.append({"block": s.block, "step": s.step, "time": s.elapsed, "beta": b, "loss": loss,
                             "recon": rec, "kl": k, "neg_elbo": rec + k, "sigma": model.sigma,
                             "event": decision.event, "phi": decision.phi})
            if decision.stop:
                self._finish(i, decision.status)
        s.block += 1

    def _finish(self, i: int, status: str) -> None:
        """Replicate ``active[i]`` stops with ``status``; its final metrics use its own stream."""
        super()._finish(i, status)
        r = self.active[i]
        rep = self.replicas[r]
        history = pd.DataFrame(rep.rows, columns=HISTORY_COLUMNS)
        data = self.data_of(r)
        stream = self.stack.streams.generators[i]
        generator = torch.Generator(device=stream.device)  # a copy: evaluation never moves the training stream
        generator.set_state(stream.get_state())
        if status == "max_steps":
            self.algorithms[r].at_step_cap(self.models[r], generator)
        rep.metrics = final_metrics(self.models[r], data, history, generator=generator) | self.algorithms[r].report()

    def _progress_info(self) -> str:
        if len(self.models) == 1:
            rows = self.replicas[0].rows
            return f"σ={rows[-1]['sigma']:.4f} KL={rows[-1]['kl']:.3f}" if rows else ""
        return super()._progress_info()

    def _result(self, r: int, resumed: bool) -> TrainResult:
        rep = self.replicas[r]
        history = pd.DataFrame(rep.rows, columns=HISTORY_COLUMNS)
        metrics = dict(rep.metrics or {})
        metrics.update(status=rep.status, resumed=resumed, settings=asdict(self.settings),
                       algorithm=self.algorithms[r].name, stream_seed=self.seeds[r])
        if self.run_dir is not None and self.single:
            write_text(self.run_dir / "history.csv", history.to_csv(index=False))
        return TrainResult(self.models[r], history, metrics, rep.status, self.run_dir)


def _per_replicate(value, R: int, what: str) -> list:
    if isinstance(value, Algorithm):
        return [value] + [copy.deepcopy(value) for _ in range(R - 1)]
    value = list(value)
    if len(value) != R:
        raise ConfigError(f"{len(value)} {what}s for {R} replicates")
    return value


def _beta_tensor(beta, R: int, device) -> torch.Tensor | None:
    if beta is None:
        return None
    beta = torch.as_tensor(beta, device=device, dtype=torch.get_default_dtype()).reshape(-1)
    return beta.expand(R) if beta.numel() == 1 else beta


def final_metrics(model: SigmaCVAE, data: Dataset, history: pd.DataFrame, draws: int = 10,
                  generator: torch.Generator | None = None) -> dict[str, Any]:
    """Mean per-sample negative ELBO, reconstruction and KL over ``draws`` z per point (from
    ``generator``, else torch's global generator), σ and its error."""
    with torch.no_grad():
        runs = [model.terms(data.condition, data.observed, generator=generator) for _ in range(draws)]
    recon = float(torch.stack([r["recon"] for r in runs]).mean())
    kl = float(torch.stack([r["kl"] for r in runs]).mean())
    out: dict[str, Any] = {
        "sigma": model.sigma,
        "kl": kl,
        "recon": recon,
        "neg_elbo": recon + kl,
        "steps": int(history["step"].iloc[-1]) if len(history) else 0,
        "blocks": len(history),
        "calibrations": int((history["event"] == "calibrate").sum()) if len(history) else 0,
        "wall_time": float(history["time"].iloc[-1]) if len(history) else 0.0,
    }
    true_sigma = data.truth.get("sigma")
    if true_sigma is not None:
        out["true_sigma"] = float(true_sigma)
        out["sigma_sq_err"] = (model.sigma - true_sigma) ** 2
        out["sigma_rel_err"] = abs(model.sigma - true_sigma) / true_sigma if true_sigma > 0 else math.nan
    return out
